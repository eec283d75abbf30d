"""Checkpoint loading: safetensors, or torch.load(weights_only=True); never pickle.

Every unreadable file is a UsageError of one line naming the file and what is wrong."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from harness.errors import UsageError

from .lingbot import LingBotVAAdapter
from .tiny_net import TINY_CONFIG_KEY, TinyJointNet


def _checkpoint_file(path: Path) -> Path:
    if path.is_dir():
        for pattern in ("model.safetensors", "*.safetensors", "*.pt", "*.pth", "*.bin"):
            found = sorted(path.glob(pattern))
            if found:
                return found[0]
        raise UsageError(f"checkpoint folder {path} holds no .safetensors/.pt file")
    if not path.exists():
        raise UsageError(f"checkpoint {path} does not exist: pass an existing --checkpoint")
    return path


def _one_line(text: object, limit: int = 240) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[:limit - 3] + "..."


def _safetensors_failure(file: Path, exc: BaseException) -> UsageError:
    reason = _one_line(str(exc).replace("Error while deserializing header:", ""))
    return UsageError(f"checkpoint {file} is not a readable safetensors file ({reason}): it is "
                      f"truncated or corrupt; copy or save it again")


def _torch_failure(file: Path, exc: BaseException) -> UsageError:
    """One line for a torch file that ``torch.load(weights_only=True)`` refused: corrupt or
    truncated bytes, or Python objects that weights-only loading will not unpickle."""
    import zipfile

    with open(file, "rb") as handle:
        head = handle.read(4)
    if head[:2] == b"PK":
        try:
            with zipfile.ZipFile(file) as archive:
                broken = archive.testzip()
        except (zipfile.BadZipFile, OSError, EOFError) as zexc:
            return UsageError(f"checkpoint {file} is a truncated or corrupt torch file (its zip "
                              f"archive is broken: {_one_line(zexc)}): copy or save it again")
        if broken is not None:
            return UsageError(f"checkpoint {file} is a corrupt torch file (entry {broken} fails "
                              f"its checksum): copy or save it again")
    elif head[:1] != b"\x80":  # neither a zip archive nor a (legacy) pickle stream
        return UsageError(f"checkpoint {file} is not a torch or safetensors file (it starts with "
                          f"bytes {head.hex()}): pass a .safetensors or torch.save file")
    text = str(exc)
    refused = next((line.strip() for line in text.splitlines()
                    if "Unsupported global" in line or "not an allowed global" in line), None)
    if refused:
        name = refused.split("GLOBAL", 1)[-1].split(" was not")[0].strip()
        return UsageError(f"checkpoint {file} holds Python objects that torch.load("
                          f"weights_only=True) will not unpickle ({_one_line(name)}): save a "
                          f"plain state dict, or convert it to safetensors")
    after = text.split("WeightsUnpickler error:", 1)[-1]
    reason = next((line.strip() for line in after.splitlines() if line.strip()), text)
    return UsageError(f"checkpoint {file} cannot be read by torch.load(weights_only=True) "
                      f"({_one_line(reason)}): it is truncated or corrupt, or not a state dict; "
                      f"convert it to safetensors")


def load_state_dict(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(tensors, metadata) from a safetensors file or a torch file, the latter with
    ``weights_only=True`` (no arbitrary unpickling). A torch file may hold a plain state dict
    or ``{"state_dict": ..., "config": {...}}``. An unreadable file is a UsageError of one line
    naming the file and what is wrong with it."""
    file = _checkpoint_file(Path(path))
    if file.suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_file

        try:
            with safe_open(str(file), framework="pt") as handle:
                metadata = dict(handle.metadata() or {})
            tensors = load_file(str(file))
        except Exception as exc:  # SafetensorError (corrupt / truncated), OSError
            raise _safetensors_failure(file, exc) from None
        config = metadata.get(TINY_CONFIG_KEY)
        try:
            return tensors, ({"config": json.loads(config)} if config else {})
        except json.JSONDecodeError as exc:
            raise UsageError(f"checkpoint {file} has unreadable {TINY_CONFIG_KEY!r} metadata "
                             f"({_one_line(exc)})") from None
    try:
        obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise _torch_failure(file, exc) from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        return obj["state_dict"], {"config": obj.get("config")} if obj.get("config") else {}
    if isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj, {}
    raise UsageError(f"{file} is not a state dict (a mapping of tensor names to tensors)")


def load_model(checkpoint: str | Path, resolved: Any, device: torch.device,
               kind: str | None = None, seed: int = 0, sizes: dict | None = None) -> Any:
    """A LingBot-VA checkpoint folder (``transformer/``, ``vae/``, ...) -> LingBotVAAdapter;
    anything else -> TinyJointNet with the checkpoint's weights."""
    path = Path(checkpoint)
    if kind in ("lingbot-va", "lingbot_va") or (kind is None and (path / "transformer").is_dir()):
        return LingBotVAAdapter(path, resolved, device)
    if kind not in (None, "tiny"):
        raise UsageError(f"unknown model kind {kind!r}: choose tiny or lingbot-va")
    state, meta = load_state_dict(path)
    config = meta.get("config")
    model = (TinyJointNet(**config) if config
             else TinyJointNet.for_variant(resolved, seed=seed, **(sizes or {})))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise UsageError(f"checkpoint {path} does not fit the test network: "
                         f"{_one_line(exc)}") from None
    if model.action_dim != resolved.model_action_dim:
        raise UsageError(f"checkpoint {path} has action_dim {model.action_dim}, the suite "
                         f"family {resolved.family} needs {resolved.model_action_dim}")
    return model.to(device)
