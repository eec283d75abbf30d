"""A LIBERO episode's fixed costs: stock robosuite against wam-eval's env.

Stock is ``stock=true``: robosuite's hard reset (model reloaded, simulator and GL context
rebuilt), one camera after the other, and its physics calls. wam-eval's default: a soft reset
where the reloaded model is proven the same, otherwise a reload that keeps the GL context; a
step's cameras rendered at once on two threads; each substep's repeated ``mj_forward``
skipped (``suites/libero_physics.py``).
Breaks one episode down into build (once per task), reset (robosuite's reset and the init
state), settle (the protocol's no-op steps, the last one rendered), physics (a step that
renders nothing) and frames (one observed step's two cameras), with two 256^2 cameras (the
openpi protocol), on libero_spatial task 4 (fixtures that LIBERO re-places at every load:
reload) and libero_object task 0 (none: soft reset).

    python -m benchmarks.bench_libero_reset [--episodes 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks.common import result
from harness.observation import ObservationRequest

MODES = {"stock": {"stock": True}, "wam-eval": {}}
TASKS = (("libero_spatial", 4), ("libero_object", 0))


def measure(suite_name: str, task: int, episodes: int, **options: str) -> dict[str, float]:
    from suites.libero import LiberoSuite

    suite = LiberoSuite(suite_name, protocol="openpi", **options)
    request = ObservationRequest(cameras=("agentview", "wrist"), height=256, width=256)
    start = time.perf_counter()
    env = suite.make_env(task, request)
    out = {"build": time.perf_counter() - start, "reset": 0.0, "settle": 0.0, "physics": 0.0,
           "frames": 0.0}
    warmup = np.array(suite.protocol.warmup_action, dtype=np.float64)
    try:
        env.reset(options={"spec": suite.episodes(task)[0]})  # the first reset after a build
        for episode in suite.episodes(task)[1:episodes + 1]:
            t0 = time.perf_counter()
            env._env.seed(episode.seed)
            env._reset_simulator()
            env._env.set_init_state(env._init_states[episode.index])
            t1 = time.perf_counter()
            for i in range(suite.protocol.warmup_steps):
                env._advance(warmup, observe=i == suite.protocol.warmup_steps - 1, record=False)
            t2 = time.perf_counter()
            for _ in range(10):
                env._advance(warmup, observe=False, record=False)
            t3 = time.perf_counter()
            for _ in range(5):
                env._advance(warmup, observe=True, record=False)
            t4 = time.perf_counter()
            out["reset"] += (t1 - t0) / episodes
            out["settle"] += (t2 - t1) / episodes
            out["physics"] += (t3 - t2) / 10 / episodes
            out["frames"] += ((t4 - t3) / 5 - (t3 - t2) / 10) / episodes
        out["reset_mode"] = env.reset_mode
    finally:
        env.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--episodes", type=int, default=3)
    args = parser.parse_args()
    print(f"{'task':18s} {'env':9s} {'reset':7s} {'build s':>8s} {'reset s':>8s} {'settle s':>9s} "
          f"{'physics s/step':>15s} {'frames s/step':>14s}")
    for suite_name, task in TASKS:
        rows = {name: measure(suite_name, task, args.episodes, **options)
                for name, options in MODES.items()}
        for name, r in rows.items():
            print(f"{suite_name + ' ' + str(task):18s} {name:9s} {r['reset_mode']:7s} "
                  f"{r['build']:8.2f} {r['reset']:8.3f} {r['settle']:9.3f} {r['physics']:15.4f} "
                  f"{r['frames']:14.4f}")
        stock, fast = rows["stock"], rows["wam-eval"]
        where = f"{suite_name} task {task}, {fast['reset_mode']} reset"
        reset = stock["reset"] / fast["reset"]
        result(f"libero_reset_{suite_name}", reset, "> 1x (faster than stock, outcomes bit-identical)",
               reset > 1, f"{where}: reset {stock['reset']:.2f} s -> {fast['reset']:.2f} s per episode; "
               f"settle {stock['settle']:.2f} -> {fast['settle']:.2f} s")
        frames = stock["frames"] / fast["frames"]
        result(f"libero_frames_{suite_name}", frames, "> 1x (faster than stock, pixels bit-identical)",
               frames > 1, f"{where}: two 256^2 frames {stock['frames']:.3f} s -> "
               f"{fast['frames']:.3f} s; physics {fast['physics']:.4f} s/step")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
