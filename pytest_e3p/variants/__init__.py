"""Optimised variants of a case's model: the fp32 eager timm model turned into each variant, and the
variant's logits checked against the fp32 model's.

    names = parse_variants("fp32,onnxruntime,int8,prune-heads-50,tome-8")
    v = prepare("onnxruntime", model, x, calibration, device.kind, device.torch_device)
    a = agreement(model(x), v.forward(x), v.bound)      # a.ok, a.top1_pct, a.max_rel_err, a.bound

prepare() copies the model where the variant changes it, so the caller's fp32 model stays the
reference. A variant that cannot run here (library not installed, wrong device, model it does not
apply to) raises VariantUnavailable, whose message is the one-line skip reason.

Agreement bounds, per family, on max|a - b| / max|a| (a: fp32 eager logits, b: the variant's, over
the batch) and on top-1 agreement:

- fp32 (eager fp32, compile, onnxruntime, openvino): the same fp32 arithmetic in another
  order (fused kernels, other GEMM blocking), whose rounding differences are around 1e-6 of the
  largest logit; 1e-3 leaves three orders of magnitude for deeper models while a wrong graph (a
  dropped layer, a wrong transpose) is off by tens of percent. Top-1 must agree on 99 % of images:
  errors of 1e-6 flip only exact ties.
- fp16 (fp16, tensorrt with its fp16 kernels): 10-bit mantissa (unit roundoff 4.9e-4), rounding in every
  layer: <= 2e-2.
- bf16: 7-bit mantissa (unit roundoff 3.9e-3): <= 5e-2.
- int8 (int8, onnxruntime-int8, openvino-int8, tensorrt-int8): 256 levels per tensor or channel,
  error a few percent of the largest logit: <= 0.25, still far below a broken graph's ~1 (a logit
  vector permuted or replaced by noise is off by about its own size).
- approximations (prune-*, sparse-*, tome-*): the model is changed on purpose and not fine-tuned;
  how far its logits move is the cost being measured, so only finite logits of the right shape are
  required, and agreement is reported.

Top-1 agreement is required for the fp32 family only. On random weights (what the suite uses
offline) the logits are nearly flat: the top two classes are often within 1 % of the largest
logit, so a legitimate fp16, bf16 or int8 rounding flips the top-1 class of many images while the
logits agree to the stated bound; top-1 agreement is a weak signal there, and the logit error is
what the check rests on. With trained weights, the accuracy pass on a labelled dataset measures the
variant's top-1 directly.
"""

from __future__ import annotations

import math
import time

import torch

from ..variant_catalog import (
    FP32_GRAPH,
    VARIANT_HELP,
    VARIANTS,
    Bound,
    VariantInfo,
    _base,
    bound_for,
    parse_variants,
)
from .base import Agreement, PreparedVariant, VariantUnavailable

__all__ = [
    "VARIANTS",
    "VARIANT_HELP",
    "Agreement",
    "Bound",
    "PreparedVariant",
    "VariantInfo",
    "VariantUnavailable",
    "agreement",
    "bound_for",
    "compare",
    "parse_variants",
    "prepare",
]


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
    device_kind: "cpu", "cuda" or "jetson" (pytest_e3p.devices); torch_device: "cpu" or "cuda:N".
    prepare_s covers everything done here, the first two calls included (torch.compile compiles
    in them; the runtimes allocate in them), so no measured round pays for preparation."""
    key, param = _base(name)
    bound = VARIANTS[key].bound
    x = example_input.to(torch_device)
    model = model.eval()
    started = time.perf_counter()
    if key in ("fp32", "fp16", "bf16"):
        from . import eager

        prepared = eager.prepare(name, model, torch_device, bound)
    elif key == "compile":
        from . import compiled

        prepared = compiled.prepare(name, model, x, torch_device, bound)
    elif key == "int8":
        from . import torchao_int8

        prepared = torchao_int8.prepare(name, model, torch_device, bound)
    elif key in ("onnxruntime", "onnxruntime-int8"):
        from . import onnx_runtime

        prepared = onnx_runtime.prepare(name, model, x, calibration, device_kind, torch_device, bound)
    elif key in ("openvino", "openvino-int8"):
        from . import openvino_runtime

        prepared = openvino_runtime.prepare(name, model, x, calibration, device_kind, bound)
    elif key in ("tensorrt", "tensorrt-int8"):
        from . import tensorrt_runtime

        prepared = tensorrt_runtime.prepare(name, model, x, calibration, device_kind, torch_device, bound)
    elif key in ("prune-heads-P", "prune-mlp-P"):
        from . import pruning

        assert param is not None
        prepared = pruning.prepare(name, param, model, x, torch_device, bound)
    elif key == "sparse-P":
        from . import sparsity

        assert param is not None
        prepared = sparsity.prepare(name, param, model, torch_device, bound)
    elif key == "tome-R":
        from . import tome

        assert param is not None
        prepared = tome.prepare(name, param, model, x, torch_device, bound)
    else:  # pragma: no cover - _base only returns VARIANTS keys
        raise AssertionError(key)
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
