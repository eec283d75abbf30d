"""A tiny synthetic suite: a point on a line that must reach the origin.

It exists so that the runner, Ray, resume and reporting can be tested and benchmarked without
a simulator: episodes are deterministic, take microseconds (or ``step_sleep_s`` per step to
mimic a simulator's cost) and can be told to fail (``fail_keys``) to inject infrastructure
errors.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np

from harness.errors import EnvError
from harness.observation import ObservationRequest
from harness.specs import EpisodeSpec, TaskInfo

N_TASKS = 4
EPISODES_PER_TASK = 10
ACTION_DIM = 7


class ToyEnv:
    action_dim = ACTION_DIM

    def __init__(self, task_id: int, request: ObservationRequest, step_sleep_s: float,
                 fail_keys: frozenset[str], kill_keys: frozenset[str], marker_dir: str | None):
        self.task_id, self.request = task_id, request
        self.step_sleep_s, self.fail_keys = step_sleep_s, fail_keys
        self.kill_keys, self.marker_dir = kill_keys, marker_dir
        self.position = 0.0
        self.frames_rendered = 0
        self.steps = 0
        self.rendered_at: list[int] = []  # the step counts at which a frame was rendered
        self.closed = False

    def _observation(self, render: bool) -> dict:
        obs: dict = {"state": {"position": np.array([self.position], dtype=np.float32)},
                     "instruction": "move to the origin"}
        if render and self.request.cameras:
            self.frames_rendered += 1
            self.rendered_at.append(self.steps)
            shade = np.uint8(min(255, abs(self.position) * 100))
            obs["images"] = {c: np.full((self.request.height, self.request.width, 3), shade, np.uint8)
                             for c in self.request.cameras}
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        spec: EpisodeSpec = (options or {})["spec"]
        if spec.key in self.fail_keys:
            raise EnvError(f"injected failure for {spec.key}")
        if spec.key in self.kill_keys:
            self._kill_once(spec.key)
        # Start further away for later tasks and episodes, so step counts differ per episode.
        self.position = 1.0 + 0.5 * self.task_id + 0.1 * (spec.index % 10)
        self.frames_rendered, self.steps, self.rendered_at = 0, 0, []
        return self._observation(True), {"instruction": spec.instruction}

    def _kill_once(self, key: str) -> None:
        """Die like a segfaulting simulator (SIGKILL), once per key: a marker file remembers."""
        marker = Path(self.marker_dir or ".") / (key.replace("/", "_") + ".killed")
        if not marker.exists():
            marker.write_text("")
            os.kill(os.getpid(), signal.SIGKILL)

    def step(self, action, observe: bool = True):
        if self.step_sleep_s:
            time.sleep(self.step_sleep_s)
        self.position += float(np.clip(action[0], -1.0, 1.0)) * 0.1
        self.steps += 1
        success = abs(self.position) < 0.05
        info = {"success": success, "frames_rendered": self.frames_rendered}
        return self._observation(observe), 0.0, success, False, info

    def close(self) -> None:
        self.closed = True


class ToySuite:
    name = "toy"

    def __init__(self, step_sleep_s: float = 0.0, fail_keys: tuple[str, ...] = (),
                 kill_keys: tuple[str, ...] = (), marker_dir: str | None = None,
                 max_steps: int = 60, episodes_per_task: int = EPISODES_PER_TASK, **_ignored):
        self.episodes_per_task = int(episodes_per_task)
        self.step_sleep_s = float(step_sleep_s)
        self.fail_keys, self.kill_keys = frozenset(fail_keys), frozenset(kill_keys)
        self.marker_dir = marker_dir
        self.max_steps = max_steps

    def tasks(self) -> list[TaskInfo]:
        return [TaskInfo(suite=self.name, task_id=i, name=f"reach_origin_{i}",
                         instruction="move to the origin", max_steps=self.max_steps,
                         splits=("start",), episodes_per_split=self.episodes_per_task)
                for i in range(N_TASKS)]

    def episodes(self, task_id: int, splits: list[str] | None = None,
                 indices: list[int] | None = None) -> list[EpisodeSpec]:
        task = self.tasks()[task_id]
        return [EpisodeSpec(suite=self.name, task_id=task_id, task_name=task.name, split="start",
                            index=i, seed=1000 * task_id + i, max_steps=task.max_steps,
                            instruction=task.instruction)
                for i in range(self.episodes_per_task)]

    def make_env(self, task_id: int, request: ObservationRequest, *, video_dir: Path | None = None):
        return ToyEnv(task_id, request, self.step_sleep_s, self.fail_keys, self.kill_keys,
                      self.marker_dir)
