"""A run folder nobody can corrupt, a run that never hangs, an exit code CI can trust.

Every case goes through the command line, as a user meets it."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from websockets.sync.server import serve

from policies import wire
from policies.server import serve_in_background
from policies.toy import ToyPolicy

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
TOY = ["run", "--suite", "toy", "--tasks", "0", "--runner", "serial", "--quiet", "--no-report"]


def cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], capture_output=True,
                          text=True, env=ENV, timeout=timeout)


def records(run_dir):
    return [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]


def test_a_second_run_on_the_same_folder_is_refused_while_the_first_writes(tmp_path):
    out = tmp_path / "run"
    slow = [*TOY, "--episodes", "0:4", "--policy", "toy", "--suite-opt", "step_sleep_s=0.02",
            "--out", out]
    first = subprocess.Popen([sys.executable, "-m", "harness", *map(str, slow)], env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not (out / "manifest.json").exists():
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.05)
    second = cli(*slow)
    assert first.wait(timeout=60) == 0
    assert second.returncode == 2
    assert f"is being written by another `wam-eval run` (PID {first.pid})" in second.stderr
    keys = [r["episode_key"] for r in records(out)]
    assert sorted(keys) == [f"toy/00/start/{i:04d}" for i in range(4)]  # one set, once each
    # the lock died with its process: the folder can be resumed now
    assert cli(*slow).returncode == 0


def test_records_of_another_plan_are_refused_and_repair_moves_them_aside(tmp_path):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    assert cli(*TOY, "--episodes", "0:2", "--policy", "toy", "--out", ours).returncode == 0
    assert cli(*TOY, "--episodes", "0:3", "--policy", "toy", "--out", theirs).returncode == 0
    # the other plan's records share episode keys with ours
    foreign = (theirs / "episodes.jsonl").read_text().splitlines()
    with open(ours / "episodes.jsonl", "a") as f:
        f.write(foreign[0] + "\n{torn in the middle\n")
    for command in ((*TOY, "--episodes", "0:2", "--policy", "toy", "--out", ours),
                    ("report", ours, "--out", tmp_path / "rep")):
        result = cli(*command)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "episodes.jsonl:3: a record of plan" in lines[0]
        assert f"run `wam-eval repair {ours}`" in lines[0]
    good = (ours / "episodes.jsonl").read_text().splitlines()[:2]
    repaired = cli("repair", ours)
    assert repaired.returncode == 0 and "kept 2 records; moved 2" in repaired.stdout
    assert (ours / "episodes.jsonl").read_text().splitlines() == good
    assert len((ours / "episodes.rejected.jsonl").read_text().splitlines()) == 2
    report = cli("report", ours, "--out", tmp_path / "rep")
    assert report.returncode == 0 and "2/2 episodes recorded" in report.stdout


def test_records_without_a_manifest_or_an_edited_manifest_are_refused(tmp_path):
    source = tmp_path / "source"
    assert cli(*TOY, "--episodes", "0:2", "--policy", "toy", "--out", source).returncode == 0
    orphan = tmp_path / "orphan"
    orphan.mkdir()
    (orphan / "episodes.jsonl").write_text((source / "episodes.jsonl").read_text())
    result = cli(*TOY, "--episodes", "0:2", "--policy", "noop", "--out", orphan)
    assert result.returncode == 2 and "holds episodes.jsonl but no manifest.json" in result.stderr
    assert sorted(p.name for p in orphan.iterdir()) == ["episodes.jsonl"]  # nothing written
    manifest = json.loads((source / "manifest.json").read_text())
    manifest["policy"]["chunk"] = 99  # edited by hand, hash left as it was
    (source / "manifest.json").write_text(json.dumps(manifest))
    for command in ((*TOY, "--episodes", "0:2", "--policy", "toy", "--out", source),
                    ("report", source, "--out", tmp_path / "rep")):
        result = cli(*command)
        assert result.returncode == 2 and "no longer matches its policy_config_hash" in result.stderr


def test_a_run_resumes_against_its_server_restarted_on_another_port(tmp_path):
    out = tmp_path / "run"
    with serve_in_background(ToyPolicy()) as first:
        assert cli(*TOY, "--episodes", "0:2", "--policy", "remote", "--server", first.url,
                   "--out", out).returncode == 0
    with serve_in_background(ToyPolicy()) as second:
        assert second.port != first.port
        result = cli(*TOY, "--episodes", "0:4", "--policy", "remote", "--server", second.url,
                     "--out", out)
        assert result.returncode == 2 and "holds plan" in result.stderr  # another plan: refused
        result = cli(*TOY, "--episodes", "0:2", "--policy", "remote", "--server", second.url,
                     "--out", out)
    assert result.returncode == 0, result.stderr
    assert "resuming" in result.stderr


def _silent_server(speaks: bool):
    """A server that accepts connections and then says nothing (or only its metadata)."""
    release = threading.Event()

    def handler(ws):
        if speaks:
            ws.send(wire.packb({}))
        release.wait(30)

    server = serve(handler, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, release, f"ws://127.0.0.1:{server.socket.getsockname()[1]}"


def test_a_hung_server_costs_one_timeout_and_stops_the_run(tmp_path):
    server, release, url = _silent_server(speaks=True)
    try:
        start = time.monotonic()
        result = cli(*TOY, "--episodes", "0:3", "--policy", "remote", "--server", url,
                     "--request-timeout", "1", "--out", tmp_path / "run")
        elapsed = time.monotonic() - start
    finally:
        release.set()
        server.shutdown()
    assert result.returncode == 1, result.stderr
    assert "did not answer the reset request within 1 s (--request-timeout)" in result.stderr
    assert "resume with the same command" in result.stderr
    lines = records(tmp_path / "run")
    assert len(lines) == 1 and lines[0]["end_reason"] == "env_error"  # one episode, one try
    assert elapsed < 30


def test_a_hung_server_stops_a_ray_run_too(tmp_path):
    servers = [_silent_server(speaks=True) for _ in range(2)]
    try:
        result = cli("run", "--suite", "toy", "--tasks", "0", "--episodes", "0:4", "--policy",
                     "remote", "--server", ",".join(url for _, _, url in servers),
                     "--request-timeout", "1", "--workers", "2", "--runner", "ray", "--quiet",
                     "--no-report", "--out", tmp_path / "run", timeout=300)
    finally:
        for server, release, _ in servers:
            release.set()
            server.shutdown()
    assert result.returncode == 1 and "--request-timeout" in result.stderr, result.stderr
    assert 1 <= len(records(tmp_path / "run")) <= 2  # one per worker at most, no retries


def test_a_server_that_never_speaks_is_not_called_unreachable(tmp_path):
    server, release, url = _silent_server(speaks=False)
    try:
        silent = cli(*TOY, "--episodes", "0:1", "--policy", "remote", "--server", url,
                     "--connect-timeout", "0.5", "--policy-opt", "connect_retries=0",
                     "--out", tmp_path / "a")
    finally:
        release.set()
        server.shutdown()
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    unreachable = cli(*TOY, "--episodes", "0:1", "--policy", "remote", "--server",
                      f"ws://127.0.0.1:{port}", "--policy-opt", "connect_retries=0",
                      "--out", tmp_path / "b")
    assert silent.returncode == 1 and "accepts connections but sent no metadata within 0.5 s" in silent.stderr
    assert unreachable.returncode == 1 and "cannot reach the policy server" in unreachable.stderr


def test_infrastructure_failures_make_the_exit_code_non_zero(tmp_path):
    failing = [*TOY, "--episodes", "0:2", "--policy", "toy", "--suite-opt",
               'fail_keys=["toy/00/start/0001"]']
    result = cli(*failing, "--out", tmp_path / "a")
    assert result.returncode == 3
    assert "scored 1 of 2 planned episodes; 1 ended in infrastructure errors" in result.stdout
    assert "--allow-incomplete" in result.stderr
    assert cli(*failing, "--out", tmp_path / "b", "--allow-incomplete").returncode == 0
    everything = cli(*TOY, "--episodes", "0:2", "--policy", "toy", "--suite-opt",
                     'fail_keys=["toy/00/start/0000", "toy/00/start/0001"]', "--out", tmp_path / "c")
    assert everything.returncode == 3 and "scored 0 of 2" in everything.stdout
    # a resume once the infrastructure is fixed retries what was not scored
    fixed = cli(*TOY, "--episodes", "0:2", "--policy", "toy", "--out", tmp_path / "a")
    assert fixed.returncode == 0 and "scored 2 of 2" in fixed.stdout


def test_a_full_disk_is_one_line_and_the_records_written_stay(tmp_path, monkeypatch, capsys):
    import errno

    from harness.store import records_file as records_module
    from harness.cli import main

    real_fsync, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) > 2:  # two records reach the disk, then it is full
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(records_module.os, "fsync", fsync)
    out = tmp_path / "run"
    code = main(["run", "--suite", "toy", "--tasks", "0", "--episodes", "0:5", "--policy", "toy",
                 "--runner", "serial", "--quiet", "--no-report", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1
    failure = [line for line in err.splitlines() if line.startswith("wam-eval: failed")]
    assert failure == [f"wam-eval: failed: cannot write {out}: No space left on device; the "
                       "records written so far are safe: free space and resume with the same "
                       "command."]
    assert "Traceback" not in err
    monkeypatch.setattr(records_module.os, "fsync", real_fsync)
    assert main(["run", "--suite", "toy", "--tasks", "0", "--episodes", "0:5", "--policy", "toy",
                 "--runner", "serial", "--quiet", "--no-report", "--out", str(out)]) == 0
    assert len({r["episode_key"] for r in records(out)}) == 5
