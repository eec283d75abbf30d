"""The regression gate on real LIBERO: the scripted oracle against a degraded copy of itself
(heavy action noise) on the same plan must be flagged on the tasks that really got worse."""

import json

import pytest

pytest.importorskip("libero")

from harness.cli import main  # noqa: E402

SELECTION = ["--suite", "libero_spatial", "--tasks", "0,1", "--episodes", "0:8"]


@pytest.mark.sim
def test_degraded_oracle_is_flagged_where_it_got_worse(tmp_path):
    base, cand = tmp_path / "oracle", tmp_path / "noisy"
    common = ["--policy", "libero_oracle", "--workers", "2", "--quiet", "--no-report", *SELECTION]
    assert main(["run", *common, "--out", str(base)]) == 0
    assert main(["run", *common, "--policy-opt", "action_noise=2.0", "--out", str(cand)]) == 0
    assert main(["compare", str(base), str(cand), "--out", str(tmp_path / "gate"),
                 "--format", "all"]) == 1
    verdict = json.loads((tmp_path / "gate" / "compare.json").read_text())
    flagged = [t for t in verdict["tasks"] if t["significant_drop"]]
    assert flagged, verdict["verdict"]
    assert all(t["cand_successes"] < t["base_successes"] for t in flagged)
    junit = (tmp_path / "gate" / "compare.junit.xml").read_text()
    assert junit.count("<failure") >= len(flagged)
    # the same plan against itself passes
    assert main(["compare", str(base), str(base)]) == 0


GATED = ["--suite", "libero_spatial", "--tasks", "0:4", "--episodes", "0:5"]


@pytest.mark.sim
def test_adaptive_gate_stops_the_degraded_oracle_early_and_passes_the_oracle(tmp_path):
    """`run --gate-against` on real LIBERO: the degraded oracle stops with FAIL before the plan
    ends; the oracle against itself runs every round and passes."""
    base = tmp_path / "oracle"
    common = ["--policy", "libero_oracle", "--workers", "2", "--quiet", "--no-report", *GATED]
    assert main(["run", *common, "--out", str(base)]) == 0
    noisy = tmp_path / "noisy"
    assert main(["run", *common, "--policy-opt", "action_noise=2.0", "--out", str(noisy),
                 "--gate-against", str(base)]) == 1
    verdict = json.loads((noisy / "gate_verdict.json").read_text())
    assert verdict["decision"] == "FAIL" and verdict["round"] < 5 and verdict["saved_episodes"] > 0
    same = tmp_path / "same"
    assert main(["run", *common, "--out", str(same), "--gate-against", str(base)]) == 0
    assert not (same / "gate_verdict.json").exists()
    assert len((same / "gate_rounds.jsonl").read_text().splitlines()) == 5
