"""What a policy sees of RoboTwin: the harness's camera and state-key names for RoboTwin's, the
check of an ObservationRequest against them, and the image resize to the requested size."""

from __future__ import annotations

import numpy as np

from harness.errors import UsageError
from harness.observation import ObservationRequest
from suites.robotwin.actions import action_space_of

CAMERAS = {"head": "head_camera", "front": "front_camera", "left_wrist": "left_camera",
           "right_wrist": "right_camera"}
CAMERAS.update({name: name for name in list(CAMERAS.values())})
WRIST_CAMERAS = ("left_camera", "right_camera")
STATE_KEYS = {"joint_pos": ("joint_action", "vector"),
              "left_arm": ("joint_action", "left_arm"), "left_gripper": ("joint_action", "left_gripper"),
              "right_arm": ("joint_action", "right_arm"), "right_gripper": ("joint_action", "right_gripper"),
              "left_endpose": ("endpose", "left_endpose"), "right_endpose": ("endpose", "right_endpose")}

OLD_STATE_KEYS = {"joint_action": "joint_pos (RoboTwin's joint_action.vector, 14-D), or left_arm, "
                                  "left_gripper, right_arm, right_gripper",
                  "endpose": "left_endpose and right_endpose (7-D each: xyz + quaternion w, x, y, z)"}


def check_request(request: ObservationRequest) -> None:
    """A one-line UsageError for what RoboTwin cannot give or step (before any simulator starts)."""
    unknown = [c for c in request.cameras if c not in CAMERAS]
    unknown_state = [k for k in request.state_keys if k not in STATE_KEYS]
    old = [k for k in unknown_state if k in OLD_STATE_KEYS]
    if old:
        raise UsageError(f"RoboTwin state key {old[0]!r} is the name of an observation group, not a "
                         f"state key: ask for {OLD_STATE_KEYS[old[0]]} (state keys are "
                         f"{', '.join(STATE_KEYS)})")
    if unknown or unknown_state:
        raise UsageError(f"RoboTwin has no observation {', '.join(unknown + unknown_state)}: cameras are "
                         f"head, front, left_wrist, right_wrist; state keys are {', '.join(STATE_KEYS)}")
    if request.privileged:
        raise UsageError("RoboTwin offers no privileged observations: drop privileged=True")
    if request.height <= 0 or request.width <= 0:
        raise UsageError(f"bad image size {request.height}x{request.width}: give positive sizes")
    action_space_of(request)


def resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize (pixel centres aligned) of an HxWx3 uint8 image; identity if same size."""
    image = np.asarray(image)
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return np.ascontiguousarray(image, dtype=np.uint8)

    def axis(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, (pos - lo).astype(np.float32)

    y0, y1, wy = axis(height, h)
    x0, x1, wx = axis(width, w)
    src = image.astype(np.float32)
    wx = wx[None, :, None]
    top = src[y0][:, x0] * (1 - wx) + src[y0][:, x1] * wx
    bottom = src[y1][:, x0] * (1 - wx) + src[y1][:, x1] * wx
    out = top * (1 - wy[:, None, None]) + bottom * wy[:, None, None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
