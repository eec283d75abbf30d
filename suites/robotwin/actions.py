"""RoboTwin's action spaces: the 14-D ``qpos`` action and the 16-D ``ee`` action, which is relative
to the episode's initial end pose and composed with it as LingBot-VA's client does."""

from __future__ import annotations

import numpy as np

from harness.errors import DeterministicEnvError, UsageError
from harness.observation import ObservationRequest

ACTION_DIM = 14  # qpos
ARM_DIMS = (6, 6)
# The action spaces the suite steps: name -> action size. qpos is the default.
ACTION_SPACES = {"qpos": 14, "ee": 16}
DEFAULT_ACTION_SPACE = "qpos"
ACTION_SPACE_HELP = ("qpos (14-D: per arm 6 joints + gripper, the default) or ee (16-D: per arm xyz + "
                     "quaternion + gripper relative to the episode's initial end pose)")


def _quat_product_xyzw(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a * b of scalar-last quaternions (x, y, z, w), as scipy composes
    ``Rotation.from_quat(a) * Rotation.from_quat(b)``."""
    va, wa = a[:3], a[3]
    vb, wb = b[:3], b[3]
    return np.concatenate([wa * vb + wb * va + np.cross(va, vb), [wa * wb - va @ vb]])


def compose_ee_action(relative: np.ndarray, initial: np.ndarray) -> np.ndarray:
    """The absolute 16-D ``take_action(a, action_type='ee')`` action for a relative one, exactly as
    LingBot-VA's RoboTwin client makes it (``evaluation/robotwin/eval_polict_client_openpi.py`` at
    Robbyant/lingbot-va 5ed0eb3: ``add_eef_pose`` / ``add_init_pose`` L415-425, applied and
    renormalized at L571-582; Flash-WAM's client does the same).

    Both vectors are ``[left 7 pose, left gripper, right 7 pose, right gripper]``; ``initial`` is
    the episode's first ``get_obs()["endpose"]`` as ``left_endpose + [left_gripper] +
    right_endpose + [right_gripper]``. Per arm, with p = pose[0:3] and q = pose[3:7]:

    * position: ``p_initial + p_relative`` (added, in the world frame);
    * orientation: ``normalize(q_initial) * normalize(q_relative)`` (the initial rotation
      LEFT-multiplied), the four numbers read as scipy's scalar-last (x, y, z, w) quaternion
      (``R.from_quat``, which normalizes), then L2-normalized again;
    * gripper: the relative action's own value (absolute, not added).

    RoboTwin's ``endpose`` and ``take_action('ee')`` both lay a pose out as ``[x, y, z, qw, qx,
    qy, qz]`` (transforms3d, scalar first: ``robot.py`` ``_trans_endpose`` and
    ``_trans_from_gripper_to_endlink``). The client passes those raw four numbers through scipy's
    scalar-last reading without reordering, and so does this function: the model's relative
    actions were made in the same algebra, so its output slots are RoboTwin's (w, x, y, z). The
    relative identity is therefore ``[0, 0, 0, 1]`` in slots 3..6, and a relative action of
    ``[0, 0, 0, 0, 0, 0, 1, g]`` per arm returns the initial pose with gripper g. A quaternion of
    zero norm raises ValueError (as scipy does).
    """
    relative = np.asarray(relative, dtype=np.float64).reshape(-1)
    initial = np.asarray(initial, dtype=np.float64).reshape(-1)
    if relative.shape != (16,) or initial.shape != (16,):
        raise ValueError(f"EE actions and initial poses have 16 numbers, got {relative.shape} "
                         f"and {initial.shape}")
    out = np.empty(16)
    for arm in (slice(0, 8), slice(8, 16)):
        new, init = relative[arm], initial[arm]
        q_new, q_init = new[3:7], init[3:7]
        n_new, n_init = np.linalg.norm(q_new), np.linalg.norm(q_init)
        if not (n_new > 0 and n_init > 0 and np.isfinite(n_new) and np.isfinite(n_init)):
            raise ValueError("an EE action or initial end pose has a quaternion of zero or "
                             "non-finite norm")
        q = _quat_product_xyzw(q_init / n_init, q_new / n_new)
        out[arm] = np.concatenate([init[:3] + new[:3], q / np.linalg.norm(q), new[7:8]])
    return out


def initial_ee_pose(raw_obs: dict) -> np.ndarray:
    """``left_endpose + [left_gripper] + right_endpose + [right_gripper]`` of a RoboTwin
    ``get_obs()`` (LingBot-VA client L532-537), float64."""
    pose = raw_obs.get("endpose") or {}
    try:
        values = (list(pose["left_endpose"]) + [pose["left_gripper"]] + list(pose["right_endpose"])
                  + [pose["right_gripper"]])
    except KeyError:
        raise DeterministicEnvError("RoboTwin's observation has no endpose (needed for ee actions): enable "
                       "data_type.endpose in its task config") from None
    out = np.asarray(values, dtype=np.float64)
    if out.shape != (16,):
        raise DeterministicEnvError(f"RoboTwin's endpose has {out.size} numbers, expected 7 + 1 per arm")
    return out


def action_space_of(request: ObservationRequest) -> str:
    """The action space a request steps in ("" = qpos); a one-line UsageError if unknown."""
    space = getattr(request, "action_space", "") or DEFAULT_ACTION_SPACE
    if space not in ACTION_SPACES:
        raise UsageError(f"RoboTwin has no action space {space!r}: it steps {ACTION_SPACE_HELP}")
    return space
