"""int8 in PyTorch with torchao: post-training dynamic-activation int8 + int8-weight quantisation of
every nn.Linear, via torchao.quantization.quantize_ and Int8DynamicActivationInt8WeightConfig (the
config API; torchao 0.18 no longer has the older int8_dynamic_activation_int8_weight() function).

Dynamic means the activation scales are computed per token at run time, so no calibration set is
used: the calibration batches are ignored here. The patch embedding (a Conv2d) stays fp32."""

from __future__ import annotations

import copy

import torch

from .base import PreparedVariant, VariantRequest, VariantUnavailable, module_forward, require, version_of


def prepare(request: VariantRequest) -> PreparedVariant:
    model, torch_device = request.model, request.torch_device
    torchao = require("torchao", "torchao", "quant")
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    net = copy.deepcopy(model).to(torch_device).eval()
    on_cuda = torch_device.startswith("cuda")

    def quantisable(module: torch.nn.Module, _name: str) -> bool:
        # torchao's int8 matmul on CUDA falls back to a CPU round trip for widths not a multiple of 8
        # (a 10-class head): such a layer stays fp32 rather than make every measured call copy
        return isinstance(module, torch.nn.Linear) and (not on_cuda or (module.in_features % 8 == 0 and module.out_features % 8 == 0))

    linears = sum(1 for m in net.modules() if isinstance(m, torch.nn.Linear))
    chosen = sum(1 for name, m in net.named_modules() if quantisable(m, name))
    quantize_(net, Int8DynamicActivationInt8WeightConfig(), filter_fn=quantisable)
    if chosen == 0:
        raise VariantUnavailable(f"int8: no Linear layer of {type(model).__name__} can be quantised by torchao here")
    return PreparedVariant(
        name=request.name,
        forward=module_forward(net, torch.float32),
        detail=f"torchao {version_of(torchao)} Int8DynamicActivationInt8WeightConfig on {chosen} of {linears} Linear layers (per-token dynamic activations, per-channel weights), eager",
        bound=request.bound,
        runtime=net,
    )
