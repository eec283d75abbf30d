"""Regenerate all the paper's tables from 1,000,000 synthetic episode records.

The records are what ``harness.report.run_report.load_results`` gives the reporter (one frame of
episodes for all runs, one long frame of chunk latencies), built in memory:

  8 RoboTwin runs (the teacher and 7 students) x 50 tasks x 2 splits x 1000 episodes = 800,000
  2 LIBERO runs x 4 suites x 10 tasks x 2500 episodes                               = 200,000

each episode with ``steps // 32 + 1`` chunks (RoboTwin; 16 actions per chunk on LIBERO) of
three stages (video, action, total), i.e. tens of millions of chunk-stage rows.

Timed (best of ``--repeat``): aggregation (per task, per horizon, split averages, LIBERO
suites, latency by stage/device and same-device speedups) plus Tables 1, 2, 4, 7, 8 and the
latency table, each compared with the paper (z-tests) and rendered as Markdown, LaTeX and CSV
files; plus the audit of the generated tables. Target: <= 5 s.

``--jsonl`` also writes the runs as ``episodes.jsonl`` folders and times loading them
(``load_results``: pyarrow's JSON reader), which is JSON parsing, apart from the target.

    python benchmarks/bench_reporter.py [--episodes 1000000] [--repeat 3] [--plots] [--jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import result  # noqa: E402

from harness.report.paper import load_all  # noqa: E402
from harness.report.run_report import Results, run_identity  # noqa: E402
from harness.report.tables import audit_generated, build_tables, compute, write_table  # noqa: E402

ROBOTWIN_VARIANTS = [("lingbot-va", "LingBot-VA*", (25, 50), 0.92, 8100.0),
                     ("flashwam-1v2a", "Flash-WAM", (1, 2), 0.86, 430.0),
                     ("flashwam-1v1a", "Flash-WAM", (1, 1), 0.81, 350.0),
                     ("naive-joint-lcm-1v1a", "Naive Joint LCM", (1, 1), 0.36, 350.0),
                     ("dmd2-reg-1v1a", "LingBot-VA + DMD2", (1, 1), 0.50, 350.0),
                     ("videolcm-1v1a", "Video-only LCM", (1, 1), 0.74, 350.0),
                     ("videolcm-reg-1v1a", "Video-only LCM + reg.", (1, 1), 0.51, 350.0),
                     ("dmd2-joint-1v1a", "Joint DMD2", (1, 1), 0.50, 350.0)]
LIBERO_VARIANTS = [("lingbot-va", "LingBot-VA*", (20, 50), 0.98, 6000.0),
                   ("flashwam-1v2a", "Flash-WAM", (1, 2), 0.95, 440.0)]
DEVICE = "NVIDIA H100 80GB HBM3"


def _horizons() -> np.ndarray:
    from harness.report.run_report import robotwin_horizons

    from suites.robotwin.tasks import TASKS

    table = robotwin_horizons()
    return np.array([table[t.module] for t in TASKS]), [t.module for t in TASKS]


def synthetic_results(n_episodes: int = 1_000_000, seed: int = 0) -> Results:
    rng = np.random.default_rng(seed)
    horizons, modules = _horizons()
    robotwin_share = 0.8
    per_robotwin_run = int(n_episodes * robotwin_share) // len(ROBOTWIN_VARIANTS)
    per_libero_run = (n_episodes - per_robotwin_run * len(ROBOTWIN_VARIANTS)) // len(LIBERO_VARIANTS)
    frames, chunk_parts, identities = [], [], []

    def add_run(family, variant, label, nfe, base_rate, latency_ms, n):
        config = {"name": variant, "variant": variant, "paper_label": label,
                  "paper_nfe": f"{nfe[0]}v/{nfe[1]}a", "family": family, "nfe_video": nfe[0],
                  "nfe_action": nfe[1]}
        ident = run_identity({"policy": config}, f"/runs/{family}-{variant}")
        name = f"{label} {nfe[0]}v/{nfe[1]}a ({family})"
        identities.append({"run": name, **ident})
        if family == "robotwin":
            cell = np.arange(n) % 100  # task x split cell of each episode
            task_id = cell // 2
            split = np.where(cell % 2 == 0, "clean", "randomized")
            suite = np.full(n, "robotwin", dtype=object)
            task_name = np.array(modules, dtype=object)[task_id]
            horizon = horizons[task_id]
            difficulty = np.array([0.0, 0.04, 0.15, 0.30])[horizon]
            limit, actions_per_chunk = 400 + 200 * horizon, 32
        else:
            cell = np.arange(n) % 40
            task_id = cell % 10
            suite = np.array(["libero_spatial", "libero_object", "libero_goal", "libero_10"], dtype=object)[cell // 10]
            split = np.full(n, "init", dtype=object)
            task_name = np.char.add(suite.astype(str), np.char.add("_task", task_id.astype(str))).astype(object)
            horizon = np.full(n, -1)
            difficulty = np.zeros(n)
            limit, actions_per_chunk = np.full(n, 300), 16
        rate = np.clip(base_rate - difficulty + rng.normal(0, 0.05, n // 100 + 1).repeat(100)[:n], 0, 1)
        success = rng.random(n) < rate
        steps = np.where(success, (rng.random(n) * 0.6 + 0.2) * limit, limit).astype(np.int64)
        end_reason = np.where(success, "success", np.where(rng.random(n) < 0.002, "policy_error", "timeout"))
        frames.append(pd.DataFrame({
            "run": name, "suite": suite, "task_id": task_id, "task_name": task_name, "split": split,
            "success": success, "end_reason": end_reason, "steps": steps,
            "horizon": pd.Series(horizon, dtype="Int64").where(horizon > 0, pd.NA).array,
            "device": DEVICE}))
        chunks = steps // actions_per_chunk + 1
        rows = np.repeat(np.arange(n), chunks)
        total = latency_ms * rng.lognormal(0, 0.05, len(rows))
        video = total * 0.44
        action = total * 0.52
        count = len(rows)
        chunk_parts.append(pd.DataFrame({
            "run": np.full(3 * count, name, dtype=object),
            "benchmark": family, "device": DEVICE,
            "stage": np.repeat(np.array(["video", "action", "total"], dtype=object), count),
            "ms": np.concatenate([video, action, total])}))

    for variant, label, nfe, rate, ms in ROBOTWIN_VARIANTS:
        add_run("robotwin", variant, label, nfe, rate, ms, per_robotwin_run)
    for variant, label, nfe, rate, ms in LIBERO_VARIANTS:
        add_run("libero", variant, label, nfe, rate, ms, per_libero_run)
    runs = pd.DataFrame(identities)
    episodes = pd.concat(frames, ignore_index=True)
    episodes["run"] = pd.Categorical(episodes["run"], categories=list(runs["run"]))
    chunks = pd.concat(chunk_parts, ignore_index=True)
    for column in ("run", "benchmark", "device", "stage"):
        chunks[column] = chunks[column].astype("category")
    return Results(episodes=episodes, runs=runs, chunks=chunks, latency_records=pd.DataFrame())


def regenerate(results: Results, paper, out_dir: Path, plots: bool) -> dict:
    timings = {}
    start = time.perf_counter()
    aggs = compute(results)
    timings["aggregate_s"] = time.perf_counter() - start
    t0 = time.perf_counter()
    tables = build_tables(results, paper=paper, aggregates=aggs)
    timings["tables_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for table in tables.values():
        write_table(table, out_dir, ("md", "tex", "csv"))
    timings["render_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    findings = audit_generated(tables)
    timings["audit_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - start
    if plots:
        from harness.report import plots as plotting

        t0 = time.perf_counter()
        plotting.write_run_plots(aggs, results.runs, out_dir, paper=paper)
        timings["plots_s"] = time.perf_counter() - t0
    timings["tables"] = sorted(tables)
    timings["audit_findings"] = len(findings)
    return timings


def write_jsonl_runs(results: Results, root: Path) -> list[Path]:
    """The synthetic runs as run folders (episodes.jsonl + manifest.json), for --jsonl."""
    from harness.store.manifest import write_json_atomic

    dirs = []
    episodes = results.episodes
    for i, ident in results.runs.iterrows():
        frame = episodes[episodes["run"] == ident["run"]].reset_index(drop=True)
        run_dir = root / f"run{i}"
        run_dir.mkdir(parents=True)
        family = ident["family"]
        lat = results.chunks
        ms = float(lat[(lat["run"] == ident["run"]) & (lat["stage"] == "total")]["ms"].iloc[0])
        chunk = json.dumps([{"video": round(ms * .44, 3), "action": round(ms * .52, 3), "total": round(ms, 3)}])
        with open(run_dir / "episodes.jsonl", "w") as handle:
            for j, r in enumerate(frame.itertuples(index=False)):
                key = f"{r.suite}/{int(r.task_id):02d}/{r.split}/{j:07d}"
                chunks = ",".join([chunk[1:-1]] * (int(r.steps) // (32 if family == "robotwin" else 16) + 1))
                handle.write(
                    f'{{"plan_id":"bench","episode_key":"{key}","suite":"{r.suite}","task_id":{int(r.task_id)},'
                    f'"task_name":"{r.task_name}","split":"{r.split}","index":{j},"seed":{j},'
                    f'"success":{"true" if r.success else "false"},"end_reason":"{r.end_reason}",'
                    f'"steps":{int(r.steps)},"chunks":1,"wall_s":1.0,"sim_s":0.5,"policy_s":0.3,'
                    f'"policy":"{ident["variant"]}","attempt":1,"frames_rendered":0,'
                    f'"chunk_latency_ms":[{chunks}],"device":"{DEVICE}","video_path":null,"error":null,'
                    f'"worker":"","finished_at":0.0}}\n')
        write_json_atomic(run_dir / "manifest.json", {
            "run_id": run_dir.name, "plan_id": "bench", "n_episodes": len(frame),
            "policy": {"name": ident["variant"], "variant": ident["variant"], "paper_label": ident["label"],
                       "family": family, "nfe_video": int(ident["nfe_video"]), "nfe_action": int(ident["nfe_action"])}})
        dirs.append(run_dir)
    return dirs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--plots", action="store_true", help="also time the plots (PNG + SVG)")
    parser.add_argument("--jsonl", action="store_true", help="also time loading the runs from episodes.jsonl")
    parser.add_argument("--json", default=None, help="write the figures to this file")
    args = parser.parse_args()

    t0 = time.perf_counter()
    results = synthetic_results(args.episodes)
    build_s = time.perf_counter() - t0
    paper = load_all()
    print(f"{len(results.episodes):,} episodes in {len(results.runs)} runs, {len(results.chunks):,} "
          f"chunk-stage rows (synthesized in {build_s:.1f} s); {os.cpu_count()} CPUs, "
          f"{platform.processor() or platform.machine()}, pandas {pd.__version__}")
    best = None
    with tempfile.TemporaryDirectory() as tmp:
        for attempt in range(args.repeat):
            out = Path(tmp) / f"out{attempt}"
            timings = regenerate(results, paper, out, args.plots)
            print("  run {}: total {total_s:.2f} s (aggregate {aggregate_s:.2f}, tables {tables_s:.2f}, "
                  "render {render_s:.2f}, audit {audit_s:.2f}{plots})".format(
                      attempt + 1, plots=f"; then plots {timings['plots_s']:.2f}" if "plots_s" in timings else "",
                      **timings))
            if best is None or timings["total_s"] < best["total_s"]:
                best = timings
        report = {"episodes": len(results.episodes), "chunk_stage_rows": len(results.chunks), **best}
        print(f"all tables ({', '.join(best['tables'])}) from {len(results.episodes):,} records: "
              f"{best['total_s']:.2f} s (best of {args.repeat}; target <= 5 s); "
              f"generated-table audit findings: {best['audit_findings']}")
        result(f"reporter: all tables from {len(results.episodes):,} records (s)", best["total_s"],
               "<= 5 s", best["total_s"] <= 5.0, f"best of {args.repeat}; in-memory records")
        if args.jsonl:
            from harness.report.run_report import load_results

            t0 = time.perf_counter()
            dirs = write_jsonl_runs(results, Path(tmp) / "runs")
            size = sum((d / "episodes.jsonl").stat().st_size for d in dirs)
            print(f"wrote {len(dirs)} run folders, {size / 2**20:.0f} MiB of episodes.jsonl in "
                  f"{time.perf_counter() - t0:.1f} s")
            t0 = time.perf_counter()
            loaded = load_results(dirs)
            load_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            timings = regenerate(loaded, paper, Path(tmp) / "from_jsonl", False)
            print(f"from episodes.jsonl: load {load_s:.2f} s ({len(loaded.episodes):,} episodes, "
                  f"{len(loaded.chunks):,} chunk-stage rows) + tables {timings['total_s']:.2f} s")
            report.update(jsonl_mib=round(size / 2**20), load_s=load_s, tables_from_jsonl_s=timings["total_s"])
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
