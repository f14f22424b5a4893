"""Preparing a variant of a case's model and checking it against the fp32 eager model (see the
package docstring)."""

from __future__ import annotations

import importlib
import math
import time

import torch

from ..hardware.kinds import parse_device_kind
from .base import Agreement, PreparedVariant, VariantRequest
from .catalog import FP32_GRAPH, VARIANTS, Bound, bound_for, split_variant


def prepare(
    name: str,
    model: torch.nn.Module,
    example_input: torch.Tensor,
    calibration: list[torch.Tensor],
    device_kind: str,
    torch_device: str,
) -> PreparedVariant:
    """The variant `name` of the fp32 eager `model`, ready to run batches like `example_input`.

    calibration: image batches for the int8 variants that calibrate (others ignore it).
    device_kind: "cpu", "cuda" or "jetson" (pytest_e3p.hardware.DeviceKind); torch_device: "cpu" or "cuda:N".
    The variant's module, named in its catalog entry, makes it; prepare_s covers everything done
    here, the first two calls included (torch.compile compiles in them; the runtimes allocate in
    them), so no measured round pays for preparation."""
    key, param = split_variant(name)
    info = VARIANTS[key]
    x = example_input.to(torch_device)
    request = VariantRequest(name, param, model.eval(), x, calibration, parse_device_kind(device_kind), torch_device, info.bound)
    started = time.perf_counter()
    # imported on first use: each module pulls in its own runtime (onnxruntime, openvino, ...)
    prepared: PreparedVariant = importlib.import_module(f".{info.module}", __package__).prepare(request)
    for _ in range(2):
        prepared.forward(x)
    if torch_device.startswith("cuda"):
        torch.cuda.synchronize(torch_device)
    prepared.prepare_s = time.perf_counter() - started
    return prepared


def agreement(reference_logits: torch.Tensor, variant_logits: torch.Tensor, bound: Bound | str = FP32_GRAPH) -> Agreement:
    """Top-1 agreement and the largest logit error of a variant against the fp32 reference.

    bound: the variant's Bound, or its name. max_rel_err = max|a - b| / max|a| over the whole
    batch: relative to the largest logit, not per element, so near-zero logits do not inflate it."""
    if isinstance(bound, str):
        bound = bound_for(bound)
    a = reference_logits.detach().float().cpu()
    b = variant_logits.detach().float().cpu()
    if a.shape != b.shape:
        return Agreement(0.0, math.inf, False, f"{bound.text}; shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}", int(a.shape[0]) if a.dim() else 0)
    samples = int(a.shape[0])
    top1 = 100.0 * float((a.argmax(dim=-1) == b.argmax(dim=-1)).float().mean()) if samples else 0.0
    scale = float(a.abs().max()) if a.numel() else 0.0
    diff = float((a - b).abs().max()) if a.numel() else 0.0
    if not math.isfinite(diff) or not bool(torch.isfinite(b).all()):
        rel = math.inf
    elif scale == 0.0:
        rel = 0.0 if diff == 0.0 else math.inf
    else:
        rel = diff / scale
    ok = math.isfinite(rel) and rel <= bound.max_rel_err and top1 >= bound.min_top1_pct
    return Agreement(top1, rel, ok, bound.text, samples)


def compare(model: torch.nn.Module, prepared: PreparedVariant, x: torch.Tensor) -> Agreement:
    """agreement() of a prepared variant against the fp32 eager model on the batch x."""
    with torch.inference_mode():
        reference = model(x)
    return agreement(reference, prepared.forward(x), prepared.bound)
