import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main

ROOT = Path(__file__).resolve().parent.parent


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True,
                          text=True, cwd=cwd or ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize("args, message", [
    (["run", "--suite", "libero_spatail"], "did you mean libero_spatial"),
    (["run", "--suite", "toy", "--tasks", "7"], "no task 7"),
    (["run", "--suite", "toy", "--episodes", "3:1"], "bad --episodes"),
    (["run", "--suite", "toy", "--policy", "nopp"], "did you mean noop"),
    (["run", "--suite", "toy", "--max-steps", "0"], "bad --max-steps"),
    (["run", "--suite", "toy", "--checkpoint", "/nonexistent.safetensors"], "does not exist"),
    (["report", "/nonexistent-run"], "does not exist"),
    (["run", "--suite", "toy", "--policy", "flashwam-1v1a", "--server", "ws://127.0.0.1:9",
      "--workers", "2", "--runner", "ray"], "--workers 2 needs 2 policy servers"),
    (["run", "--suite", "libero_spatial", "--protocol", "flashwam"],
     "protocol 'flashwam' defines no libero episodes"),
    (["run", "--suite", "libero_spatial", "--protocol", "lingbot"], "did you mean lingbot-va"),
    (["run", "--suite", "toy", "--workers", "0"], "bad --workers 0"),
    (["run", "--suite", "toy", "--policy", "noop", "--server", "ws://127.0.0.1:9"],
     "noop runs in process: drop --server"),
    (["run", "--suite", "toy", "--policy", "toy", "--request-timeout", "5"],
     "--request-timeout applies to --server only"),
    (["run", "--suite", "toy", "--policy", "toy", "--runner", "serial", "--address", "x:1"],
     "apply to the Ray runner"),
    (["run", "--suite", "toy", "--policy", "toy", "--runner", "serial", "--recycle-every", "5"],
     "apply to the Ray runner"),
    (["run", "--suite", "toy", "--policy", "flashwam-1v1a", "--server", "ws://127.0.0.1:9",
      "--checkpoint", str(ROOT / "pyproject.toml")], "not both"),
    (["run", "--suite", "libero_spatial", "--suite-opt", "rest=soft"],
     "takes the option rest (did you mean reset?)"),
    (["run", "--suite", "libero_spatial", "--suite-opt", "render=fast"],
     "bad --suite-opt render='fast'"),
    (["robotwin-seeds", "--suite-opt", "base_sed=3"], "takes the option base_sed (did you mean base_seed?)"),
    (["run", "--suite", "toy,libero_spatial", "--robotwin-root", "/tmp"],
     "no suite of this run (toy, libero_spatial) takes the option robotwin_root"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, message):
    result = cli(*args, "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "results").exists()


def test_unwritable_output_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if os.access(locked, os.W_OK):  # root ignores permissions; use a path under a file instead
        target = tmp_path / "a_file"
        target.write_text("")
        out = target / "run"
    else:
        out = locked / "run"
    result = cli("run", "--suite", "toy", "--policy", "toy", "--out", str(out))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--out" in lines[0], result.stderr
    assert not out.exists()


def test_run_report_export_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--suite", "toy", "--tasks", "0:2", "--episodes", "0:3", "--policy", "toy",
                 "--runner", "serial", "--out", str(out), "--quiet", "--no-report"]) == 0
    assert main(["report", str(out), "--out", str(tmp_path / "rep")]) == 0
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "| toy | 0 | reach_origin_0 | start | 3 | 3 | 3 | 3 | 1.000" in text  # split never pooled
    assert (tmp_path / "rep" / "success_by_task.png").stat().st_size > 1000
    assert main(["export", str(out)]) == 0
    import pandas as pd
    assert len(pd.read_parquet(out / "episodes.parquet")) == 6


def test_resume_a_run_folder_by_name(tmp_path):
    out = tmp_path / "run"
    assert main(["run", "--suite", "toy", "--tasks", "0", "--episodes", "0:4", "--policy", "toy",
                 "--runner", "serial", "--out", str(out), "--quiet", "--no-report"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["command"][:2] == ["wam-eval", "run"]
    episodes = out / "episodes.jsonl"
    lines = episodes.read_text().splitlines()
    episodes.write_text("\n".join(lines[:2]) + "\n")  # as if it had died after two episodes
    assert main(["run", "--resume", str(out), "--quiet", "--no-report"]) == 0
    keys = [json.loads(line)["episode_key"] for line in episodes.read_text().splitlines()]
    assert sorted(keys) == sorted(json.loads(line)["episode_key"] for line in lines)
    assert len(keys) == 4
    result = cli("run", "--resume", str(tmp_path / "missing"))
    assert result.returncode == 2 and "--resume" in result.stderr
