import json

import pytest

from harness.run.episode import run_episode
from harness.errors import UsageError
from harness.plan import build_plan
from harness.policy import PolicyOptions, make_policy
from harness.store.records_file import read_records
from harness.run.runner import RunSettings, open_run, run_serial
from suites.toy import ToySuite


def run(tmp_path, plan, policy, **suite_options):
    settings = RunSettings(run_dir=tmp_path / "run", suite_options=suite_options, quiet=True)
    open_run(plan, policy.describe(), settings, None, {})
    run_serial(plan, policy, settings)
    return read_records(settings.run_dir), settings


def test_serial_run_records_every_episode_in_plan_order(tmp_path):
    plan = build_plan(["toy"], tasks="0,1", episodes="0:3")
    records, settings = run(tmp_path, plan, make_policy("toy"))
    assert [r.episode_key for r in records] == plan.keys()
    assert all(r.success and r.end_reason == "success" and r.plan_id == plan.plan_id for r in records)
    assert all(r.chunks == len(r.chunk_latency_ms) and r.steps > 0 for r in records)
    manifest = json.loads((settings.run_dir / "manifest.json").read_text())
    assert manifest["plan_id"] == plan.plan_id and manifest["policy"]["name"] == "toy"
    assert {"git_sha", "packages", "hardware", "command"} <= manifest.keys()


def test_resume_runs_only_what_is_missing(tmp_path):
    plan = build_plan(["toy"], tasks="0", episodes="0:4")
    settings = RunSettings(run_dir=tmp_path / "run", quiet=True)
    policy = make_policy("toy")
    open_run(plan, policy.describe(), settings, None, {})
    def crash_after_two(record):
        if record.index == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_serial(plan, policy, settings, on_record=crash_after_two)
    assert open_run(plan, policy.describe(), settings, None, {}) == read_records(settings.run_dir)
    new = run_serial(plan, policy, settings)
    assert [r.index for r in new] == [2, 3]
    assert sorted(r.episode_key for r in read_records(settings.run_dir)) == sorted(plan.keys())


def test_resume_refuses_a_different_plan_or_policy(tmp_path):
    plan = build_plan(["toy"], tasks="0", episodes="0:2")
    settings = RunSettings(run_dir=tmp_path / "run", quiet=True)
    policy = make_policy("toy")
    open_run(plan, policy.describe(), settings, None, {})
    with pytest.raises(UsageError, match="holds plan"):
        open_run(build_plan(["toy"], tasks="1"), policy.describe(), settings, None, {})
    other = make_policy("toy", PolicyOptions(extra={"chunk": 8}))
    with pytest.raises(UsageError, match="differs in: chunk"):
        open_run(plan, other.describe(), settings, None, {})


def test_timeout_when_step_limit_is_reached():
    suite = ToySuite()
    spec = suite.episodes(3)[9]
    spec = type(spec)(**{**spec.to_dict(), "max_steps": 5})
    policy = make_policy("toy")
    record = run_episode(suite.make_env(3, policy.request), policy, spec, "p")
    assert (record.success, record.end_reason, record.steps) == (False, "timeout", 5)


def test_nan_actions_are_a_policy_error_and_never_executed(tmp_path):
    policy = make_policy("toy", PolicyOptions(extra={"fail_on_chunk": 2}))
    suite = ToySuite()
    env = suite.make_env(0, policy.request)
    record = run_episode(env, policy, suite.episodes(0)[5], "p")
    assert record.end_reason == "policy_error" and not record.success
    assert "NaN" in record.error
    assert record.steps == 4  # only the first, valid chunk was executed


def test_env_errors_are_retried_with_the_same_seed_and_recorded(tmp_path):
    plan = build_plan(["toy"], tasks="0", episodes="0:2")
    key = plan.keys()[1]
    records, _ = run(tmp_path, plan, make_policy("toy"), fail_keys=(key,))
    failed = [r for r in records if r.episode_key == key]
    assert [r.attempt for r in failed] == [1, 2, 3]
    assert all(r.end_reason == "env_error" and "injected failure" in r.error for r in failed)
    assert len({r.seed for r in failed}) == 1


def test_feedback_frames_follow_the_declared_stride():
    policy = make_policy("toy", PolicyOptions(extra={"feedback_stride": 2, "cameras": ["cam"]}))
    suite = ToySuite()
    env = suite.make_env(0, policy.request)
    record = run_episode(env, policy, suite.episodes(0)[0], "p")
    assert record.success and record.chunks >= 3
    # chunks of 4, stride 2: the reset frame, then a frame after every 2nd executed action (the
    # 4th also starts the next chunk), nothing else; 2 frames fed back after each chunk but the last
    assert env.rendered_at == [0, *range(2, record.steps + 1, 2)]
    assert policy.feedback_frames == 2 * (record.chunks - 1)
