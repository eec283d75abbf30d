"""A LIBERO episode's fixed costs, hard reset against soft (the simulator and its GL context
kept between episodes of a task; ``suites.libero.LiberoEnv._reset_simulator``).

Breaks one episode down into build (once per task), reset (robosuite's reset and the init
state), settle (the protocol's no-op steps, the last one rendered), physics (a step that
renders nothing) and frames (one observed step's cameras), on libero_object task 0 (no fixture that moves between loads: its model reloads the same) with two
256^2 cameras (the openpi protocol), and prints the reset speedup.

    python -m benchmarks.bench_libero_reset [--episodes 4]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks.common import result
from harness.observation import ObservationRequest


def measure(mode: str, episodes: int) -> dict[str, float]:
    from suites.libero import LiberoSuite

    suite = LiberoSuite("libero_object", protocol="openpi", reset=mode)
    request = ObservationRequest(cameras=("agentview", "wrist"), height=256, width=256)
    start = time.perf_counter()
    env = suite.make_env(0, request)
    out = {"build": time.perf_counter() - start, "reset": 0.0, "settle": 0.0, "physics": 0.0,
           "frames": 0.0}
    warmup = np.array(suite.protocol.warmup_action, dtype=np.float64)
    try:
        for episode in suite.episodes(0)[1:episodes + 1]:  # the first reset after a build is hard
            env.reset(options={"spec": episode})
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
            for _ in range(3):
                env._advance(warmup, observe=True, record=False)
            t4 = time.perf_counter()
            out["reset"] += (t1 - t0) / episodes
            out["settle"] += (t2 - t1) / episodes
            out["physics"] += (t3 - t2) / 10 / episodes
            out["frames"] += ((t4 - t3) / 3 - (t3 - t2) / 10) / episodes
    finally:
        env.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--episodes", type=int, default=4)
    args = parser.parse_args()
    rows = {mode: measure(mode, args.episodes) for mode in ("hard", "soft")}
    print(f"{'reset':6s} {'build s':>8s} {'reset s':>8s} {'settle s':>9s} {'physics s/step':>15s} "
          f"{'frames s/step':>14s}")
    for mode, r in rows.items():
        print(f"{mode:6s} {r['build']:8.2f} {r['reset']:8.3f} {r['settle']:9.3f} "
              f"{r['physics']:15.4f} {r['frames']:14.4f}")
    speedup = rows["hard"]["reset"] / rows["soft"]["reset"]
    result("libero_soft_reset", speedup, "> 1x (soft reset faster, outcomes bit-identical)",
           speedup > 1, f"reset {rows['hard']['reset']:.2f} s -> {rows['soft']['reset']:.2f} s per "
           f"episode; settle {rows['soft']['settle']:.2f} s, two 256^2 frames "
           f"{rows['soft']['frames']:.3f} s, physics {rows['soft']['physics']:.4f} s/step")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
