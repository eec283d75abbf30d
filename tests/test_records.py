import json

import pytest

from harness.records import EpisodeRecord, latest_attempts
from harness.store.records_file import (CorruptRecords, Expected, RecordWriter, read_records,
                                        repair_records)


def make_record(key="toy/00/start/0000", attempt=1, reason="success", **kw):
    return EpisodeRecord(plan_id="p", episode_key=key, suite="toy", task_id=0, task_name="t",
                         split="start", index=0, seed=1, success=reason == "success",
                         end_reason=reason, steps=12, chunks=3, wall_s=0.5, sim_s=0.3,
                         policy_s=0.1, attempt=attempt,
                         chunk_latency_ms=[{"video": 1.5, "action": 2.0, "total": 3.6}], **kw)


def test_record_round_trip(tmp_path):
    records = [make_record(), make_record("toy/00/start/0001", reason="timeout", error="x")]
    with RecordWriter(tmp_path) as writer:
        for r in records:
            writer.append(r)
    assert read_records(tmp_path) == records


def test_torn_last_line_is_dropped_with_warning_and_repaired(tmp_path):
    with RecordWriter(tmp_path) as writer:
        writer.append(make_record())
    path = tmp_path / "episodes.jsonl"
    with open(path, "a") as f:
        f.write(json.dumps(make_record("toy/00/start/0001").to_dict())[:40])
    with pytest.warns(UserWarning, match="torn last line"):
        assert len(read_records(tmp_path, repair=True)) == 1
    with RecordWriter(tmp_path) as writer:  # appends continue on a clean line
        writer.append(make_record("toy/00/start/0002"))
    assert [r.episode_key for r in read_records(tmp_path)] == ["toy/00/start/0000", "toy/00/start/0002"]


def test_corruption_in_the_middle_is_an_error_naming_the_line_and_the_repair(tmp_path):
    path = tmp_path / "episodes.jsonl"
    path.write_text(json.dumps(make_record().to_dict()) + "\n{broken\n[1, 2]\n"
                    + json.dumps(make_record("toy/00/start/0001").to_dict()) + "\n")
    with pytest.raises(CorruptRecords, match=r"episodes.jsonl:2: not JSON .*\(and 1 more\): "
                                             r"run `wam-eval repair .*`"):
        read_records(tmp_path)


def test_repair_keeps_every_good_line_byte_for_byte(tmp_path):
    good = [json.dumps(make_record(f"toy/00/start/000{i}").to_dict()) for i in range(3)]
    path = tmp_path / "episodes.jsonl"
    path.write_text(f"{good[0]}\n{{broken\n{good[1]}\n\"a string\"\n{good[2]}\n{good[0][:30]}")
    assert repair_records(tmp_path) == (3, 3)
    assert path.read_text() == "".join(line + "\n" for line in good)
    rejected = [json.loads(line) for line in (tmp_path / "episodes.rejected.jsonl").read_text().splitlines()]
    assert [(r["line"], r["reason"].split(" (")[0]) for r in rejected] == [
        (2, "not JSON"), (4, "a JSON str, not a record"), (6, "torn last line")]
    assert rejected[0]["text"] == "{broken"
    assert len(read_records(tmp_path)) == 3


def test_records_of_another_plan_policy_or_episode_are_refused(tmp_path):
    with RecordWriter(tmp_path, policy_hash="h1") as writer:
        writer.append(make_record())
    expected = Expected("p", "h1", frozenset({"toy/00/start/0000"}))
    assert len(read_records(tmp_path, expected=expected)) == 1
    for other, message in ((Expected("q", "h1", None), "a record of plan p, not this run's q"),
                           (Expected("p", "h2", None), "a record of policy h1, not this run's h2"),
                           (Expected("p", "h1", frozenset()), "episode toy/00/start/0000 is not in this run.s plan")):
        with pytest.raises(CorruptRecords, match=f"episodes.jsonl:1: {message}"):
            read_records(tmp_path, expected=other)


def test_later_attempt_supersedes():
    first = make_record(attempt=1, reason="env_error")
    second = make_record(attempt=2, reason="success")
    assert latest_attempts([second, first])["toy/00/start/0000"].attempt == 2


def test_unknown_end_reason_is_refused():
    with pytest.raises(ValueError):
        make_record(reason="crashed")
