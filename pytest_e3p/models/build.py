"""Building a case's model: timm architecture, pretrained weights or a fine-tuned checkpoint.

Pretrained weights come through the normal Hugging Face cache that timm uses. When they are not in
the cache and the Hub cannot be reached (or HF_HUB_OFFLINE is set), we say so once and build the
model with random weights: energy and latency do not depend on weight values, accuracy does, so such
a case reports the *reference* top-1 instead of a measured one.
"""

from __future__ import annotations

import functools
import os
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from ..text import first_line
from .zoo import ModelName

PRETRAINED = "pretrained"
RANDOM = "random"
CHECKPOINT = "checkpoint"


class WeightsError(Exception):
    """A checkpoint that does not exist or does not fit the model; the message names the file."""


@dataclass(frozen=True)
class Weights:
    source: str  # PRETRAINED, RANDOM or CHECKPOINT
    detail: str  # hub id, checkpoint path, or why the weights are random

    @property
    def trained(self) -> bool:
        return self.source != RANDOM


def _hub_offline_env() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


@functools.lru_cache(maxsize=1)
def hub_reachable() -> bool:
    """One quick check per process, so an offline run never waits on per-model retries."""
    if _hub_offline_env():
        return False
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=3.0):
            return True
    except OSError:
        return False


def _has_published_weights(model: ModelName) -> bool:
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(model.full)
    return cfg is None or bool(getattr(cfg, "has_weights", True) or cfg.hf_hub_id or cfg.url or cfg.file)


def cached_weights_file(model: ModelName) -> Path | None:
    """The weights file of `model` in the Hugging Face cache, if it is there."""
    from huggingface_hub import constants, try_to_load_from_cache
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(model.full)
    if cfg is None or not cfg.hf_hub_id:
        return None
    cache_dir = os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE
    for filename in (getattr(cfg, "hf_hub_filename", None), "model.safetensors", "pytorch_model.bin"):
        if not filename:
            continue
        found = try_to_load_from_cache(cfg.hf_hub_id, filename, cache_dir=cache_dir)
        if isinstance(found, str):
            return Path(found)
    return None


def _create(arch_or_full: str, img_size: int | None = None, **kwargs) -> torch.nn.Module:
    """timm.create_model; `img_size` through timm's own argument (position embeddings of pretrained
    weights are resampled by timm's checkpoint filters). A model without the argument (a
    convolutional net) is built as it is: the caller checks it runs at that size."""
    import timm

    if img_size is None:
        return timm.create_model(arch_or_full, **kwargs)
    try:
        return timm.create_model(arch_or_full, img_size=img_size, **kwargs)
    except TypeError as exc:
        if "img_size" not in str(exc):
            raise
        return timm.create_model(arch_or_full, **kwargs)


def checkpoint_path(checkpoints_dir: str | Path, model: ModelName, dataset: str) -> Path:
    """Where a fine-tuned checkpoint for (model, dataset) lives: DIR/<arch>_<dataset>.pth."""
    return Path(checkpoints_dir) / f"{model.arch}_{dataset}.pth"


def load_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a .pth file (plain, or under 'state_dict'/'model'), loaded weights-only."""
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated zip, a non-tensor payload
        raise WeightsError(
            f"checkpoint {path} cannot be read as a weights-only torch file ({_load_error(exc)}); save a state dict with torch.save(model.state_dict(), path)"
        ) from None
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"checkpoint {path} holds no state dict of tensors")
    return obj


def _resampled(state: dict[str, torch.Tensor], net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A checkpoint's state dict fitted to a model built at another resolution, by the checkpoint
    filter of the model's timm module where it has one (ViT-style models resample their position
    embeddings there, as timm does for pretrained weights)."""
    import sys

    filter_fn = getattr(sys.modules.get(type(net).__module__), "checkpoint_filter_fn", None)
    return filter_fn(state, net) if callable(filter_fn) else state


def _load_error(exc: Exception) -> str:
    """The cause in torch.load's error, without its advice to load untrusted pickles unsafely."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].strip().split("\n\n", 1)[0]
    return f"{type(exc).__name__}: {first_line(text)}"


def _num_classes_of(state_dict: dict[str, torch.Tensor], model: torch.nn.Module) -> int | None:
    """Classes of the checkpoint's classifier, read from the weight the model calls its head."""
    cfg: dict[str, Any] = getattr(model, "default_cfg", {})
    head = cfg.get("classifier")
    heads = head if isinstance(head, (list, tuple)) else [head]
    for name in heads:
        if name and f"{name}.weight" in state_dict:
            return int(state_dict[f"{name}.weight"].shape[0])
        if name and f"{name}.bias" in state_dict:
            return int(state_dict[f"{name}.bias"].shape[0])
    return None


def build_model(
    model: ModelName,
    weights: str = PRETRAINED,
    checkpoint: Path | None = None,
    num_classes: int | None = None,
    image_size: int | None = None,
) -> tuple[torch.nn.Module, Weights]:
    """The model in eval mode on the CPU, and where its weights came from; `image_size` (pixels)
    builds it for another input resolution (None: its own)."""
    size = {"img_size": image_size} if image_size else {}
    if checkpoint is not None:
        state = load_checkpoint(checkpoint)
        probe = _create(model.arch, pretrained=False, **size)
        classes = _num_classes_of(state, probe) or num_classes
        net = _create(model.arch, pretrained=False, num_classes=classes, **size) if classes else probe
        if image_size:
            state = _resampled(state, net)
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()
            raise WeightsError(
                f"checkpoint {checkpoint} does not fit {model.arch}{f' with {classes} classes' if classes else ''}: {' '.join(first[:3])[:300]}"
            ) from None
        if num_classes is not None and classes is not None and classes != num_classes:
            raise WeightsError(f"checkpoint {checkpoint} has {classes} classes; the dataset has {num_classes}")
        return net.eval(), Weights(CHECKPOINT, str(checkpoint))

    if weights == RANDOM:
        return _create(model.full, pretrained=False, num_classes=num_classes or 1000, **size).eval(), Weights(RANDOM, "asked for random weights")

    kwargs = {"num_classes": num_classes} if num_classes else {}
    if not _has_published_weights(model):
        # EdgeViT and the like: nothing to look for in the cache or on the Hub
        why = f"{model.full} has no published pretrained weights"
        warnings.warn(f"{why}; using random weights (energy and latency stay valid, accuracy is the reference figure)", stacklevel=2)
        return _create(model.full, pretrained=False, **kwargs, **size).eval(), Weights(RANDOM, why)
    cached = cached_weights_file(model)
    if cached is not None:
        net = _create(model.full, pretrained=True, pretrained_cfg_overlay={"file": str(cached)}, **kwargs, **size)
        return net.eval(), Weights(PRETRAINED, f"{model.full} (Hugging Face cache)")
    if hub_reachable():
        try:
            net = _create(model.full, pretrained=True, **kwargs, **size)
            return net.eval(), Weights(PRETRAINED, f"{model.full} (downloaded)")
        except Exception as exc:  # a hub that answers but fails: same fallback as offline
            why = f"download of {model.full} failed: {first_line(exc, 160)}"
    else:
        why = "HF_HUB_OFFLINE is set" if _hub_offline_env() else "the Hugging Face Hub cannot be reached"
        why = f"pretrained weights for {model.full} are not in the Hugging Face cache and {why}"
    warnings.warn(f"{why}; using random weights (energy and latency stay valid, accuracy is the reference figure)", stacklevel=2)
    net = _create(model.full, pretrained=False, **kwargs, **size)
    return net.eval(), Weights(RANDOM, why)
