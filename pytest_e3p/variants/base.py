"""What every variant module shares: the prepared variant, its error bound, the skip reason, and
small helpers (optional imports that name their extra, calibration re-batching, thread counts)."""

from __future__ import annotations

import importlib
import importlib.metadata
import math
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch

from ..hardware.kinds import DeviceKind
from .catalog import Bound


class VariantUnavailable(Exception):
    """This variant cannot run here; the message is a one-line skip reason that says what to do
    (which extra to install, which device it needs, which models it applies to)."""


@dataclass(frozen=True)
class VariantRequest:
    """What a variant module's prepare(request) gets: the variant asked for and what it is made from.

    name: as written on the command line ("prune-heads-50"); param: its number (50), None for the
    unparametrised ones. model: the fp32 eager reference, which prepare() must leave as it is (copy
    before changing it). example_input: a batch of the run's shape, already on torch_device.
    calibration: image batches for the int8 variants that calibrate (others ignore them)."""

    name: str
    param: int | None
    model: torch.nn.Module
    example_input: torch.Tensor
    calibration: list[torch.Tensor]
    device_kind: DeviceKind
    torch_device: str
    bound: Bound


@dataclass
class PreparedVariant:
    """A variant ready to be measured.

    forward takes an fp32 batch on the device (cast inside where the variant needs another dtype)
    and returns the logits; it runs under torch.inference_mode itself, so the caller's loop is the
    same for every variant. Exported and compiled variants are built for one input shape:
    batch_size says which batch they take (None: any)."""

    name: str
    forward: Callable[[torch.Tensor], torch.Tensor]
    detail: str  # one line: library and version, provider, what was done
    bound: Bound
    input_dtype: torch.dtype = torch.float32
    params_m: float | None = None  # None: unchanged from the fp32 model
    gmacs: float | None = None  # None: unchanged from the fp32 model
    prepare_s: float = 0.0  # export / compile / quantise / calibrate, and the first two calls: set by variants.prepare()
    batch_size: int | None = None
    # the runtime object behind forward (an onnxruntime InferenceSession, an OpenVINO CompiledModel,
    # a torch module), for tools that time it without the wrapper (scripts/bench_overhead.py)
    runtime: Any = None


@dataclass(frozen=True)
class Agreement:
    """A variant's logits against the fp32 eager model's, on the same images."""

    top1_pct: float
    max_rel_err: float
    ok: bool
    bound: str
    samples: int


def require(module: str, package: str, extra: str) -> ModuleType:
    """Import an optional library, or say which extra brings it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise VariantUnavailable(f'{package} is not installed: pip install "pytest-e3p[{extra}]"') from None


def version_of(module: ModuleType, distribution: str | None = None) -> str:
    """The installed release: the distribution's metadata where named (torch_pruning.__version__
    lags its release), else the module's __version__ without a build suffix (openvino's reads
    2026.4.1-22982-e213a147257-releases/2026/4)."""
    if distribution:
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            pass
    return str(getattr(module, "__version__", "?")).split("-")[0]


def rebatch(calibration: list[torch.Tensor], batch_size: int, device: str | torch.device = "cpu") -> list[torch.Tensor]:
    """The calibration images in batches of the exported graph's fixed batch size.

    Images are repeated when there are fewer than one batch: min/max and histogram statistics do not
    change with repeats, and a static graph cannot take a smaller batch. A last partial batch is
    dropped for the same reason."""
    if not calibration:
        raise ValueError("int8 variants need calibration batches (a list of image tensors)")
    images = torch.cat([c.detach().float().to(device) for c in calibration])
    if images.shape[0] < batch_size:
        images = images.repeat(math.ceil(batch_size / images.shape[0]), 1, 1, 1)[:batch_size]
    usable = images.shape[0] // batch_size * batch_size
    return list(images[:usable].split(batch_size))


def threads() -> int:
    """Intra-op threads for ONNX Runtime and OpenVINO: the same count torch uses in this run
    (--e3p-threads), so a variant is not faster or slower for having more or fewer cores."""
    return torch.get_num_threads()


def module_forward(module: torch.nn.Module, dtype: torch.dtype) -> Callable[[torch.Tensor], torch.Tensor]:
    """forward of a torch module: input cast to the module's dtype, under inference_mode."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return module(x.to(dtype))

    return forward
