"""Building a case's model: timm architecture, pretrained weights or a fine-tuned checkpoint.

Pretrained weights come through the normal Hugging Face cache that timm uses. When they are not in
the cache and the Hub cannot be reached (or HF_HUB_OFFLINE is set), we say so once and build the
model with random weights: energy and latency do not depend on weight values, accuracy does, so such
a case reports the *reference* top-1 instead of a measured one.
"""

from __future__ import annotations

import functools
import os
import re
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


class ImageSizeError(WeightsError):
    """An --e3p-image-size the model cannot be built or run at; the message names the size and the fix.
    A WeightsError: the model cannot be built as asked, which the plugin reports in one line."""


GIB = 1024**3


@dataclass(frozen=True)
class SizeNeed:
    """What building and running a model at one image size needs, estimated on the meta device."""

    weights_bytes: int  # parameters and buffers at that size (position embeddings grow with it)
    activation_bytes: int = 0  # one ViT block's input, output and MLP hidden activations for the batch
    attention_bytes: int = 0  # one block's attention map for the batch; 0 where none is held (see image_size_need)

    @property
    def run_bytes(self) -> int:
        """What running it adds to its weights, on the device that runs it."""
        return self.activation_bytes + self.attention_bytes

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.run_bytes


def _meta_model(arch: str, image_size: int | None) -> torch.nn.Module:
    """The model built on the meta device: shapes without storage, so a 30 GiB position embedding
    costs nothing; the RNG is left as it was (timm's initialisers draw from it)."""
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        return _create(arch, img_size=image_size, pretrained=False).eval()


def _patch_size(net: torch.nn.Module) -> int | None:
    """The patch size of a timm PatchEmbed that would drop the pixels past the last whole patch
    unseen: one built for a fixed size (strict_img_size), which checks that the input has that size
    and leaves the rest to its strided convolution (ViT, DeiT, Swin, ConViT). A non-strict one
    without padding (test_vit's) asserts divisibility when run, which the caller's run check reports."""
    embed = getattr(net, "patch_embed", None)
    patch = getattr(embed, "patch_size", None)
    if patch is None or getattr(embed, "strict_img_size", False) is not True or getattr(embed, "dynamic_img_pad", False):
        return None
    return int(patch[0] if isinstance(patch, (tuple, list)) else patch)


def image_size_need(net: torch.nn.Module, batch_size: int = 1) -> SizeNeed:
    """Bytes a (meta) model needs at the size it was built for, in fp32: its parameters and buffers
    (a ViT's position embedding is tokens x embed_dim x 4 bytes, LeViT's attention-bias indices
    tokens^2 x 8) and, for a model with a patch embedding (tokens of embed_dim), one block's
    activations: its input and output (tokens x embed_dim each) and, for a ViT's `blocks`, its
    MLP's hidden layer (tokens x hidden), x batch x 4 bytes; plus, where a ViT's attention is not
    fused, the attention map (tokens^2 x heads x batch x 4 bytes). Fused attention (torch's scaled_dot_product_attention,
    timm's default) holds no such map: measured on the CPU, 16 MiB for 16,384 tokens where the map
    would take 3 GiB. An estimate, and a floor: the other activations alive at once are not counted."""
    weights = sum(t.numel() * t.element_size() for t in (*net.parameters(), *net.buffers()))
    blocks = getattr(net, "blocks", None)
    block = blocks[0] if isinstance(blocks, torch.nn.Sequential) and len(blocks) else None
    patches = getattr(getattr(net, "patch_embed", None), "num_patches", None)
    attn, fc1 = getattr(block, "attn", None), getattr(getattr(block, "mlp", None), "fc1", None)
    embed_dim, heads = getattr(net, "embed_dim", None), getattr(attn, "num_heads", None)
    if not (patches and isinstance(embed_dim, int)):
        return SizeNeed(weights)
    tokens = int(patches) + int(getattr(net, "num_prefix_tokens", 0))
    hidden = int(getattr(fc1, "out_features", 0))
    activations = tokens * (2 * embed_dim + hidden) * batch_size * 4
    attention = tokens * tokens * int(heads) * batch_size * 4 if heads and getattr(attn, "fused_attn", True) is False else 0
    return SizeNeed(weights, activations, attention)


def available_memory(device: str = "cpu") -> list[tuple[str, int]]:
    """(where, bytes free) of the memory a model built for `device` must fit: the host's
    MemAvailable (/proc/meminfo, under E3P_SYSFS_ROOT; the model is built there first; else the
    physical memory), and for a CUDA device the GPU's free memory (torch.cuda.mem_get_info)."""
    from ..hardware.sensors import sysfs

    found = []
    try:
        meminfo = sysfs.read_text(sysfs.path("/proc/meminfo"))
        kib = next(int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("MemAvailable:"))
        found.append(("host", kib * 1024))
    except (OSError, StopIteration, ValueError, IndexError):
        try:
            found.append(("host", os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")))
        except (OSError, ValueError, AttributeError):
            pass  # no way to know: the size is not bounded by memory
    if device.startswith("cuda"):
        try:
            found.append((f"GPU {device}", int(torch.cuda.mem_get_info(torch.device(device))[0])))
        except (RuntimeError, AssertionError, ValueError):
            pass
    return found


def check_image_size(arch: str, image_size: int, device: str = "cpu", batch_size: int = 1) -> None:
    """Refuse an image size, in one line and before anything is allocated, that the model cannot be
    built or run at. The rules, in order:
    - the size is a positive number of pixels;
    - a model whose patch embedding is built for a fixed size takes a multiple of its patch size
      (timm builds it for any size, and its convolution drops the remaining pixels unseen);
    - the model at that size fits in memory: image_size_need (parameters and buffers; for a ViT one
      block's activations and unfused attention map for the batch) against each of
      available_memory(device); on a CUDA device the host holds the weights only, while the model
      is built.
    Whether the built model runs at that size is the caller's check (one image through it): a
    model that takes no img_size (a convolutional net) is built at its own size."""
    if image_size <= 0:
        raise ImageSizeError(f"image size {image_size} is not a number of pixels; use a positive --e3p-image-size")
    try:
        net = _meta_model(arch, image_size)
    except Exception as exc:  # timm's own check of the size, in the model's constructor
        try:
            _meta_model(arch, None)
        except Exception:  # a constructor that cannot run on the meta device: nothing to estimate with
            return
        raise ImageSizeError(f"image size {image_size} does not fit {arch}: {type(exc).__name__}: {first_line(exc, 200)}") from None
    patch = _patch_size(net)
    if patch and image_size % patch:
        lower, upper = image_size // patch * patch, (image_size // patch + 1) * patch
        fix = f"{lower} or {upper}" if lower else f"{upper}"
        raise ImageSizeError(
            f"image size {image_size} is not a multiple of {arch}'s patch size {patch} (timm would drop the last "
            f"{image_size % patch} pixel rows and columns unseen); use {fix} for --e3p-image-size"
        )
    need = image_size_need(net, batch_size)
    images = f"{batch_size} image{'s' if batch_size != 1 else ''}"
    for where, free in available_memory(device):
        runs_here = not (where == "host" and device.startswith("cuda"))  # else the host only builds it
        needed = need.total_bytes if runs_here else need.weights_bytes
        if needed > free:
            parts = [f"parameters and buffers {need.weights_bytes / GIB:,.1f} GiB"]
            if runs_here and need.activation_bytes:
                parts.append(f"one block's activations for {images} {need.activation_bytes / GIB:,.1f} GiB")
            if runs_here and need.attention_bytes:
                parts.append(f"one block's attention map for {images} {need.attention_bytes / GIB:,.1f} GiB")
            raise ImageSizeError(
                f"image size {image_size} needs about {needed / GIB:,.1f} GiB for {arch} ({', '.join(parts)}, an estimate) but the {where} has "
                f"{free / GIB:,.1f} GiB available; use a smaller --e3p-image-size"
            )


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
        blocked = _blocked_global(exc)
        if blocked:
            raise WeightsError(
                f"checkpoint {path} references the global '{blocked}', which weights-only loading refuses; "
                "save a plain state_dict of tensors with torch.save(model.state_dict(), path)"
            ) from None
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


# The global that torch's weights-only unpickler refused, as torch/_weights_only_unpickler.py words
# it: "GLOBAL x.y was not an allowed global by default" (any global off its allowlist) or "GLOBAL x.y
# whose module x is blocked" (os, posix, nt, sys: torch then puts its advice to load with
# weights_only=False on the first line).
_BLOCKED_GLOBAL = re.compile(r"GLOBAL (\S+) (?:was not an allowed global|whose module \S+ is blocked)")


def _blocked_global(exc: Exception) -> str | None:
    found = _BLOCKED_GLOBAL.search(str(exc))
    return found.group(1) if found else None


def _load_error(exc: Exception) -> str:
    """The cause in torch.load's error, without its advice to load untrusted pickles unsafely
    (weights_only=False, which runs whatever the file names) or to allowlist their globals."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].strip().split("\n\n", 1)[0]
    unsafe = getattr(torch.serialization, "UNSAFE_MESSAGE", None)
    if unsafe:
        text = text.replace(unsafe, "")
    text = text.replace("Weights only load failed.", "")
    return f"{type(exc).__name__}: {first_line(text) or 'weights-only loading failed'}"


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
    device: str = "cpu",
    batch_size: int = 1,
) -> tuple[torch.nn.Module, Weights]:
    """The model in eval mode on the CPU, and where its weights came from; `image_size` (pixels)
    builds it for another input resolution (None: its own), once check_image_size has found that it
    fits the model and the memory of the host and `device` (at `batch_size`): an ImageSizeError
    otherwise, before anything is allocated."""
    if image_size:
        check_image_size(model.arch, image_size, device, batch_size)
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
