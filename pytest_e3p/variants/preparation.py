"""Preparing a variant of a case's model and checking it against the fp32 eager model (see the
package docstring)."""

from __future__ import annotations

import math
import time

import torch

from .base import Agreement, PreparedVariant
from .catalog import FP32_GRAPH, VARIANTS, Bound, _base, bound_for


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
    device_kind: "cpu", "cuda" or "jetson" (pytest_e3p.hardware.devices); torch_device: "cpu" or "cuda:N".
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
