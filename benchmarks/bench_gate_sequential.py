"""The adaptive regression gate's savings: episodes to a verdict, fixed vs adaptive design.

For each plan shape (RoboTwin: 50 tasks x 100 episodes per split; LIBERO: 40 tasks x 50) and
a candidate that dropped 0, 2, 5 or 10 points from a 90 % baseline, simulates paired runs
(seeded; the shared initial state decides both outcomes 80 % of the time) and prints each
design's chance to FAIL the candidate and its mean episodes to a verdict. The 0-point rows are
the false-FAIL rate, which must stay at or below alpha = 0.05.

    python -m benchmarks.bench_gate_sequential [--reps 300]
"""

from __future__ import annotations

import argparse

from benchmarks.common import result
from harness.gate.power import sequential_savings

SHAPES = {"robotwin": (50, 100), "libero": (40, 50)}
DROPS = (0.0, 0.02, 0.05, 0.10)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=300)
    parser.add_argument("--baseline", type=float, default=0.9)
    args = parser.parse_args()
    print(f"{'shape':9s} {'drop':>5s} {'P(FAIL) fixed':>14s} {'adaptive':>9s} "
          f"{'episodes fixed':>15s} {'adaptive':>9s} {'saving':>7s}")
    for shape, (tasks, episodes) in SHAPES.items():
        for drop in DROPS:
            r = sequential_savings(args.baseline, drop, tasks, episodes, reps=args.reps, seed=1)
            print(f"{shape:9s} {100 * drop:4.0f}p {r['fixed_fail_rate']:14.3f} "
                  f"{r['adaptive_fail_rate']:9.3f} {r['plan_episodes']:15.0f} "
                  f"{r['adaptive_mean_episodes']:9.0f} {r['saving']:6.1f}x", flush=True)
            if drop == 0.10:
                result(f"gate_saving_{shape}", r["saving"], ">= 4x fewer episodes at a 10-point drop",
                       r["saving"] >= 4, f"{r['adaptive_mean_episodes']:.0f} vs "
                       f"{r['plan_episodes']:.0f} episodes, P(FAIL) {r['adaptive_fail_rate']:.2f}")
            if drop == 0.0:
                result(f"gate_false_fail_{shape}", r["adaptive_fail_rate"], "<= 0.05 (alpha)",
                       r["adaptive_fail_rate"] <= 0.05, f"fixed design {r['fixed_fail_rate']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
