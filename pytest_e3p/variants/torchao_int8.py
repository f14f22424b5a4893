"""int8 in PyTorch with torchao: post-training dynamic-activation int8 + int8-weight quantisation of
every nn.Linear, via torchao.quantization.quantize_ and Int8DynamicActivationInt8WeightConfig (the
config API; torchao 0.18 no longer has the older int8_dynamic_activation_int8_weight() function).

Dynamic means the activation scales are computed per token at run time, so no calibration set is
used: the calibration batches are ignored here. The patch embedding (a Conv2d) stays fp32."""

from __future__ import annotations

import copy

import torch

from .base import Bound, PreparedVariant, module_forward, require, version_of


def prepare(name: str, model: torch.nn.Module, torch_device: str, bound: Bound) -> PreparedVariant:
    torchao = require("torchao", "torchao", "quant")
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    net = copy.deepcopy(model).to(torch_device).eval()
    linears = sum(1 for m in net.modules() if isinstance(m, torch.nn.Linear))
    quantize_(net, Int8DynamicActivationInt8WeightConfig())
    return PreparedVariant(
        name=name,
        forward=module_forward(net, torch.float32),
        input_dtype=torch.float32,
        params_m=None,
        gmacs=None,
        prepare_s=0.0,
        detail=f"torchao {version_of(torchao)} Int8DynamicActivationInt8WeightConfig on {linears} Linear layers (per-token dynamic activations, per-channel weights), eager",
        bound=bound,
        runtime=net,
    )
