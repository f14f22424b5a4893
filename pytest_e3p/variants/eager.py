"""fp32 / fp16 / bf16 in eager PyTorch: the model's weights cast with model.to(dtype)."""

from __future__ import annotations

import copy

import torch

from .base import PreparedVariant, VariantRequest, module_forward

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def prepare(request: VariantRequest) -> PreparedVariant:
    name, model, torch_device = request.name, request.model, request.torch_device
    dtype = DTYPES[name]
    # fp32 on the model's own device is the reference itself: no copy. Anything else gets its own
    # copy, so the caller's fp32 model stays the reference where it is.
    param = next(model.parameters(), None)
    same = param is None or (param.dtype == dtype and param.device == torch.device(torch_device))
    net = model if same else copy.deepcopy(model).to(torch_device, dtype)
    return PreparedVariant(
        name=name,
        forward=module_forward(net, dtype),
        input_dtype=dtype,
        detail=f"torch {torch.__version__} eager, {str(dtype).removeprefix('torch.')} weights and activations",
        bound=request.bound,
        runtime=net,
    )
