"""The two-stage chunk sampler around a WamModel, and the model's key-frame accounting.

One chunk = video first, then action conditioned on the denoised video latents (LingBot-VA's
two-stage inference, Flash-WAM Sec. 3.3), each stage integrated by ``schedule.integrate``.

``SamplerConfig.sampler`` picks how a distilled student is sampled: ``"paper"`` uses each
modality's consistency parametrization (Flash-WAM Sec. 4.2); ``"scheduler"`` runs every
modality as ``euler`` on its shifted schedule, which is what LingBot-VA's FlowMatchScheduler
does with a student's velocity (the authors' servers, serve_flashwam.py included, have no
parametrization switch). The teacher is Euler either way.

Classifier-free guidance batches the conditional and unconditional rows into ONE network
call (as LingBot-VA does): v = v_u + g (v_c - v_u). So a chunk makes exactly
``video_steps`` video calls and ``action_steps`` action calls; with CFG each video call
carries 2 rows. Optional model hooks ``commit_video`` / ``commit_action`` (LingBot-VA's
extra t = 0 pass that writes the finished chunk into its KV cache) are not denoising steps
and are counted apart.

The key-frame accounting lives here beside ``WamModel`` because it is that protocol's
``update_cache`` contract, which every model enforces the same way.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Protocol, runtime_checkable

import torch
from torch import Tensor

from harness.errors import PolicyError

from .schedule import PARAMETRIZATIONS, NoiseFn, gaussian_noise, integrate

SAMPLERS = ("paper", "scheduler")
VAE_TIME_COMPRESSION = 4  # LingBot-VA's (Wan 2.2) VAE: 4 observed frames -> 1 latent frame


# ------------------------------------------------------------------------------------------
# The model interface
# ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WamContext:
    """What conditions a chunk: the prompt embedding (rows = batch), the unconditional
    embedding CFG uses, and how many frames the model's cache already holds."""

    text: Tensor
    null_text: Tensor
    frame_index: int = 0
    cfg: bool = False  # rows are [cond, uncond]

    def with_cfg(self) -> "WamContext":
        return replace(self, text=torch.cat([self.text, self.null_text], dim=0), cfg=True)

    @property
    def rows(self) -> int:
        return int(self.text.shape[0])


@runtime_checkable
class WamModel(Protocol):
    """A joint video-action network as the sampler sees it.

    ``t`` is a float tensor of shape (rows,) in [0, 1]. ``observed_frames`` is a list of
    harness observations (``{"images": {camera: HxWx3 uint8}, "state": {...}}``); ``state``
    is ``{"actions": ..., "proprio": obs state}``. ``update_cache`` is called

    - once after reset with the episode's first observation and ``actions`` None: the
      conditioning frame (LingBot-VA's ``init_latent``) of the first chunk;
    - after each executed chunk with its key frames (one per ``H // 4`` executed actions) and
      ``actions`` = that chunk's raw (C, F, H) model output (what LingBot-VA's KV-cache
      message carries as ``state``). The key frames must make exactly F latent frames (4 key
      frames each; on the first chunk the conditioning frame is the first of them); a model
      raises PolicyError otherwise, since a misaligned cache fails silently.

    Optional: ``conditioning_frames(frames, actions_per_frame)`` -> (video frame 0 or None,
    action frame 0 or None), written into frame 0 of the first chunk after every step.
    """

    device: torch.device

    def reset(self) -> None: ...

    def latent_shapes(self, frames: int, actions_per_frame: int
                      ) -> tuple[tuple[int, ...], tuple[int, ...]]: ...

    def encode_prompt(self, text: str) -> Tensor: ...

    def predict_video_velocity(self, x_video: Tensor, t: Tensor, context: WamContext) -> Tensor: ...

    def predict_action_velocity(self, x_action: Tensor, t: Tensor, video_latents: Tensor,
                                context: WamContext) -> Tensor: ...

    def update_cache(self, observed_frames: list[dict], state: dict | None) -> None: ...


# ------------------------------------------------------------------------------------------
# The sampler
# ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SamplerConfig:
    video_steps: int
    action_steps: int
    video_param: str = "euler"
    action_param: str = "euler"
    guidance_video: float = 1.0
    guidance_action: float = 1.0
    shift_video: float = 1.0
    shift_action: float = 1.0
    renoise: str = "fresh"
    sigma_data: float = 0.5
    sampler: str = "paper"  # "paper": the parametrizations; "scheduler": Euler everywhere

    def __post_init__(self) -> None:
        for key in ("video_steps", "action_steps"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1")
        for key in ("video_param", "action_param"):
            if getattr(self, key) not in PARAMETRIZATIONS:
                raise ValueError(f"{key} {getattr(self, key)!r} is not one of {PARAMETRIZATIONS}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler {self.sampler!r} is not one of {SAMPLERS}")
        if self.renoise not in ("fresh", "predicted"):
            raise ValueError(f"renoise {self.renoise!r} is not fresh or predicted")
        if self.sigma_data <= 0:
            raise ValueError(f"sigma_data must be > 0, got {self.sigma_data}")

    @classmethod
    def from_resolved(cls, resolved: Any) -> "SamplerConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in resolved.sampler_dict().items() if k in known})

    def param(self, modality: str) -> str:
        """The parametrization actually sampled for ``modality``: the variant's under the
        paper sampler, ``euler`` under LingBot-VA's scheduler."""
        return "euler" if self.sampler == "scheduler" else getattr(self, f"{modality}_param")

    def used(self) -> dict[str, Any]:
        """What the sampler really runs (for describe() / the manifest)."""
        params = {m: self.param(m) for m in ("video", "action")}
        consistency = any(p != "euler" for p in params.values())
        return {"sampler": self.sampler, "video": params["video"], "action": params["action"],
                "renoise": self.renoise if consistency else None,
                "sigma_data": self.sigma_data if "lcm" in params.values() else None}

    def rows_per_call(self, modality: str) -> int:
        """Rows of each network call: 2 with CFG (cond + uncond, one batched call), else 1."""
        return 2 if getattr(self, f"guidance_{modality}") != 1.0 else 1


@dataclass
class ChunkSample:
    video: Tensor          # (B, C, F, H, W) latents (B = 1 unless sampled in a batch)
    actions: Tensor        # (B, A, F, N) model-space actions
    timings_ms: dict[str, float]
    calls: dict[str, int] = field(default_factory=dict)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class WamSampler:
    """Video stage then action stage, each with its own steps, shift, guidance and
    parametrization; per-stage wall time in ms (synchronized on CUDA)."""

    def __init__(self, model: WamModel, config: SamplerConfig, noise: NoiseFn | None = None):
        self.model = model
        self.config = config
        self.noise = noise or gaussian_noise  # every Gaussian draw of a chunk, in order

    def _guided(self, predict: Callable[[Tensor, Tensor, WamContext], Tensor],
                context: WamContext, guidance: float, counter: dict, modality: str):
        model_device = self.model.device

        def velocity(x: Tensor, t: float) -> Tensor:
            if guidance != 1.0:
                ctx = context.with_cfg()
                xx = torch.cat([x, x], dim=0)
            else:
                ctx, xx = context, x
            tt = torch.full((xx.shape[0],), float(t), device=model_device, dtype=torch.float32)
            v = predict(xx, tt, ctx)
            counter[f"{modality}_calls"] += 1
            counter[f"{modality}_rows"] += int(xx.shape[0])
            if v.shape != xx.shape:
                raise PolicyError(f"{modality} velocity has shape {tuple(v.shape)}, "
                                  f"expected {tuple(xx.shape)}")
            if guidance != 1.0:
                v_cond, v_uncond = v.chunk(2, dim=0)
                return v_uncond + guidance * (v_cond - v_uncond)
            return v
        return velocity

    @staticmethod
    def _frame0(cond: Tensor | None) -> Callable[[Tensor], Tensor] | None:
        if cond is None:
            return None

        def condition(x: Tensor) -> Tensor:
            x = x.clone()
            x[:, :, 0:1] = cond.to(device=x.device, dtype=x.dtype).expand_as(x[:, :, 0:1])
            return x
        return condition

    def _commit(self, hook: str, latents: Tensor, context: WamContext, calls: dict) -> None:
        """The model's optional t = 0 pass that writes a finished stage into its cache
        (LingBot-VA's KV cache); not a denoising step, so counted apart."""
        commit = getattr(self.model, hook, None)
        if commit is not None:
            commit(latents, context)
            calls["commit_calls"] += 1

    @torch.inference_mode()
    def sample(self, context: WamContext, frames: int, actions_per_frame: int,
               generator: torch.Generator | None = None, batch: int = 1,
               first_frame: tuple[Tensor | None, Tensor | None] | None = None) -> ChunkSample:
        """One chunk, or ``batch`` chunks at once: noise of shape (batch, ...) and every
        network call made once on all rows (with CFG: [cond x batch, uncond x batch]). A
        one-row context is shared by all rows (the model's cache is not batched).
        ``first_frame`` = (video, action) values held in frame 0 (the first chunk's
        conditioning frame, as LingBot-VA does), either may be None."""
        cfg, model = self.config, self.model
        video_cond, action_cond = first_frame or (None, None)
        device = model.device
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        if batch > 1 and context.rows == 1:
            context = replace(context, text=context.text.expand(batch, *context.text.shape[1:]),
                              null_text=context.null_text.expand(
                                  batch, *context.null_text.shape[1:]))
        elif context.rows != batch:
            raise ValueError(f"context has {context.rows} rows, batch is {batch}")
        video_shape, action_shape = model.latent_shapes(frames, actions_per_frame)
        calls = {"video_calls": 0, "video_rows": 0, "action_calls": 0, "action_rows": 0,
                 "commit_calls": 0}
        timings: dict[str, float] = {}

        _sync(device)
        start = time.perf_counter()
        x_video = self.noise((batch, *video_shape), generator, device, torch.float32)
        video_velocity = self._guided(model.predict_video_velocity, context,
                                      cfg.guidance_video, calls, "video")
        video = integrate(x_video, video_velocity, steps=cfg.video_steps, shift=cfg.shift_video,
                          param=cfg.param("video"), sigma_data=cfg.sigma_data,
                          renoise=cfg.renoise, generator=generator, noise=self.noise,
                          condition=self._frame0(video_cond))
        self._commit("commit_video", video, context, calls)
        _sync(device)
        mid = time.perf_counter()

        x_action = self.noise((batch, *action_shape), generator, device, torch.float32)

        def predict_action(x: Tensor, t: Tensor, ctx: WamContext) -> Tensor:
            if x.shape[0] == video.shape[0]:
                cond = video
            else:  # CFG rows [x, x]: tile the video the same way
                cond = video.repeat(x.shape[0] // video.shape[0], *([1] * (video.dim() - 1)))
            return model.predict_action_velocity(x, t, cond, ctx)

        action_velocity = self._guided(predict_action, context, cfg.guidance_action, calls,
                                       "action")
        actions = integrate(x_action, action_velocity, steps=cfg.action_steps,
                            shift=cfg.shift_action, param=cfg.param("action"),
                            sigma_data=cfg.sigma_data, renoise=cfg.renoise, generator=generator,
                            noise=self.noise, condition=self._frame0(action_cond))
        self._commit("commit_action", actions, context, calls)
        _sync(device)
        end = time.perf_counter()
        timings["video"] = (mid - start) * 1000.0
        timings["action"] = (end - mid) * 1000.0
        return ChunkSample(video=video, actions=actions, timings_ms=timings, calls=calls)


def expected_key_frames(frames: int, first: bool) -> int:
    """Key frames a chunk of ``frames`` latent frames needs fed back: 4 per latent frame (the
    VAE's temporal compression), less the first chunk's conditioning frame 0."""
    return VAE_TIME_COMPRESSION * (frames - 1 if first else frames)


def check_key_frames(count: int, frames: int, first: bool, what: str = "the model") -> None:
    """Raise PolicyError unless ``count`` key frames fill exactly ``frames`` latent frames."""
    want = expected_key_frames(frames, first)
    if count != want:
        latent = count / VAE_TIME_COMPRESSION + (1 if first else 0)
        raise PolicyError(
            f"{what}'s cache needs {want} key frames for this chunk of {frames} latent frames "
            f"({'the first chunk: frame 0 is the conditioning frame, ' if first else ''}"
            f"{VAE_TIME_COMPRESSION} key frames per latent frame), got {count} "
            f"(= {latent:g} latent frames): feed back one observation every H // "
            f"{VAE_TIME_COMPRESSION} executed actions of whole chunks, or the cache goes out of "
            f"step with the model")
