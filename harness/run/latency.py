"""Per-chunk latency of a policy, by stage, and the records a reporter reads.

``measure_latency`` drives a policy the way an episode does (reset, then act + feedback per
chunk) on a fixed synthetic observation and reports p50/p90/mean per stage: the stages the
policy itself reports in ``ActionChunk.timings_ms`` (``video``, ``action``, ``cache``, ...)
plus ``total``, the wall time around ``act`` as the runner measures it. Policies that run on
a GPU synchronize around their stages (``policies.wam`` does), so wall times are real.

Records go to ``<run folder>/latency.jsonl``, one JSON line per (variant, suite, device,
stage). A speedup is only ever computed between records of the same device and suite:
latencies from different machines are not comparable.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from harness.errors import UsageError
from harness.policy import TEACHER, policy_device
from harness.records import LATENCY_FILE
from harness.store.records_file import read_latency_jsonl

RECORD_FIELDS = ("variant", "paper_label", "suite", "nfe_video", "nfe_action", "device",
                 "stage", "p50_ms", "p90_ms", "mean_ms", "n", "git_sha")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def synthetic_observation(request: Any, instruction: str = "pick up the object") -> dict[str, Any]:
    """An observation of the shape a policy asks for: mid-grey images of every requested
    camera at the requested size, zero state. Latency does not depend on pixel values."""
    images = {cam: np.full((request.height, request.width, 3), 127, np.uint8)
              for cam in request.cameras}
    state = {key: np.zeros(7, np.float32) for key in request.state_keys}
    return {"images": images, "state": state, "instruction": instruction}


def _spec(instruction: str):
    from harness.specs import EpisodeSpec

    return EpisodeSpec(suite="latency", task_id=0, task_name="latency", split="latency",
                       index=0, seed=0, max_steps=10**9, instruction=instruction)


def measure_latency(policy: Any, observation: dict[str, Any] | None = None, warmup: int = 3,
                    repeats: int = 20, *, feedback: bool = True,
                    instruction: str = "pick up the object") -> dict[str, Any]:
    """Chunk latency by stage: ``{"device", "n", "warmup", "stages": {stage: {"p50_ms",
    "p90_ms", "mean_ms", "n"}}, "samples": {stage: [...]}}``.

    Each chunk is ``act`` (timed: ``total``) followed, when the policy asks for feedback and
    ``feedback`` is true, by ``feedback`` with one copy of the observation per feedback
    frame, so a cache grows as in an episode (its cost shows as the policy's ``cache``
    stage of the next chunk). ``warmup`` chunks are run first and discarded."""
    if repeats < 1 or warmup < 0:
        raise UsageError(f"bad latency settings: repeats={repeats} (>= 1), warmup={warmup} (>= 0)")
    request = policy.request
    observation = observation or synthetic_observation(request, instruction)
    stride = int(getattr(request, "feedback_stride", 0) or 0)
    policy.reset(instruction, _spec(instruction))
    samples: dict[str, list[float]] = {}
    for index in range(warmup + repeats):
        start = time.perf_counter()
        chunk = policy.act(observation)
        elapsed = (time.perf_counter() - start) * 1000.0
        if index >= warmup:
            for stage, ms in (chunk.timings_ms or {}).items():
                if stage != "total":
                    samples.setdefault(stage, []).append(float(ms))
            samples.setdefault("total", []).append(elapsed)
        if feedback and stride > 0:
            n_actions = int(np.shape(chunk.actions)[0])
            frames = max(1, n_actions // stride)
            policy.feedback([observation] * frames)
    stages = {stage: {"p50_ms": percentile(values, 50), "p90_ms": percentile(values, 90),
                      "mean_ms": float(statistics.fmean(values)), "n": len(values)}
              for stage, values in samples.items()}
    return {"device": policy_device(policy), "n": repeats, "warmup": warmup, "stages": stages,
            "samples": samples}


def latency_record(measurement: dict[str, Any], *, variant: str, suite: str,
                   paper_label: str | None = None, nfe_video: int | None = None,
                   nfe_action: int | None = None, git_sha: str | None = None,
                   extra: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One record per stage of a measurement, with the fields a reporter reads."""
    if git_sha is None:
        from harness.store.manifest import git_sha as current_sha

        git_sha = current_sha()
    rows = []
    for stage, stats in sorted(measurement["stages"].items()):
        row = {"variant": variant, "paper_label": paper_label, "suite": suite,
               "nfe_video": nfe_video, "nfe_action": nfe_action,
               "device": measurement["device"], "stage": stage,
               "p50_ms": round(stats["p50_ms"], 4), "p90_ms": round(stats["p90_ms"], 4),
               "mean_ms": round(stats["mean_ms"], 4), "n": stats["n"], "git_sha": git_sha,
               "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        rows.append({**row, **(extra or {})})
    return rows


def write_latency_records(run_dir: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Append records to ``run_dir/latency.jsonl`` (each line one write, fsynced)."""
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / LATENCY_FILE
        with open(path, "a", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, separators=(",", ":"), allow_nan=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise UsageError(f"cannot write latency records to {run_dir}: {exc}") from exc
    return path


def read_latency_records(run_dir: str | Path) -> list[dict[str, Any]]:
    """All records of ``run_dir/latency.jsonl``; a torn last line is skipped."""
    return read_latency_jsonl(Path(run_dir) / LATENCY_FILE)


def speedups(rows: Iterable[dict[str, Any]], teacher: str = TEACHER, stage: str = "total",
             statistic: str = "p50_ms") -> list[dict[str, Any]]:
    """Teacher latency / variant latency for every variant measured on the same device and
    suite as the teacher (latest record of each wins). Pairs on different devices are never
    compared; a variant without a same-device teacher record gets no speedup."""
    latest: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in rows:
        if row.get("stage") != stage:
            continue
        latest[(row["variant"], row["suite"], row["device"])] = row
    out = []
    for (variant, suite, device), row in sorted(latest.items()):
        base = latest.get((teacher, suite, device))
        if base is None or variant == teacher or not row.get(statistic):
            continue
        out.append({"variant": variant, "paper_label": row.get("paper_label"), "suite": suite,
                    "device": device, "stage": stage, "teacher_ms": base[statistic],
                    "variant_ms": row[statistic],
                    "speedup": round(base[statistic] / row[statistic], 3)})
    return out


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'variant':24s} {'suite':10s} {'NFE':>7s} {'stage':7s} {'p50 ms':>10s} "
             f"{'p90 ms':>10s} {'mean ms':>10s} {'n':>4s}  device"]
    for r in rows:
        nfe = (f"{r['nfe_video']}v/{r['nfe_action']}a" if r.get("nfe_video") is not None else "-")
        lines.append(f"{r['variant']:24s} {r['suite']:10s} {nfe:>7s} {r['stage']:7s} "
                     f"{r['p50_ms']:10.2f} {r['p90_ms']:10.2f} {r['mean_ms']:10.2f} "
                     f"{r['n']:4d}  {r['device']}")
    return "\n".join(lines)


def _make(policy_name: str, options: Any) -> Any:
    from harness.policy import POLICIES, make_policy

    if policy_name in POLICIES.names():
        return make_policy(policy_name, options)
    from policies.variants import list_variants, make_variant_policy

    if policy_name in list_variants():  # before the registry hook is wired in
        return make_variant_policy(policy_name, options)
    return make_policy(policy_name, options)  # raises with the closest names


def latency_main(policy_name: str, suite: str | None = None, repeats: int = 20,
                 out_dir: str | Path | None = None, *, warmup: int = 3,
                 checkpoint: str | None = None, server: str | None = None, seed: int = 0,
                 extra: dict[str, Any] | None = None, git_sha: str | None = None,
                 quiet: bool = False) -> list[dict[str, Any]]:
    """``wam-eval latency``: measure one policy, append its records to
    ``out_dir/latency.jsonl`` (default ``results/latency``), print them and any speedup
    against a same-device teacher record in that file. Without --checkpoint/--server a
    WAM variant runs the random CPU test network (``test_network``)."""
    from harness.policy import PolicyOptions

    extra = dict(extra or {})
    variant_names: list[str] = []
    try:
        from policies.variants import list_variants, resolve

        variant_names = list_variants()
    except UsageError:
        pass
    is_variant = policy_name in variant_names
    if is_variant and not checkpoint and not server:
        extra.setdefault("test_network", True)
    if checkpoint and not Path(checkpoint).exists():
        raise UsageError(f"checkpoint {checkpoint} does not exist: pass an existing --checkpoint")
    if is_variant and suite is None:
        from policies.variants import load_variants

        suite = load_variants().default_suite
    options = PolicyOptions(seed=seed, checkpoint=checkpoint, server=server, suite=suite,
                            extra=extra)
    policy = _make(policy_name, options)
    try:
        measurement = measure_latency(policy, warmup=warmup, repeats=repeats)
        info = policy.describe() if hasattr(policy, "describe") else {}
    finally:
        policy.close()
    nfe_video, nfe_action = info.get("nfe_video"), info.get("nfe_action")
    label = info.get("paper_label")
    if is_variant and nfe_video is None:
        resolved = resolve(policy_name, suite, overrides=extra)
        nfe_video, nfe_action, label = resolved.video_steps, resolved.action_steps, resolved.label
    rows = latency_record(measurement, variant=policy_name, suite=suite or "-",
                          paper_label=label, nfe_video=nfe_video, nfe_action=nfe_action,
                          git_sha=git_sha,
                          extra={"model": info.get("model"),
                                 "paper_nfe": info.get("paper_nfe"),
                                 "warmup": warmup})
    out = Path(out_dir) if out_dir else Path("results") / "latency"
    path = write_latency_records(out, rows)
    if not quiet:
        print(format_table(rows))
        for s in speedups(read_latency_records(out)):
            if s["variant"] == policy_name and s["suite"] == (suite or "-"):
                print(f"speedup vs {TEACHER} on {s['device']}: {s['speedup']:.2f}x "
                      f"({s['teacher_ms']:.1f} ms -> {s['variant_ms']:.1f} ms, p50 total)")
        print(f"records: {path}")
    return rows
