"""TensorRT through Torch-TensorRT's dynamo frontend, on NVIDIA GPUs and Jetson boards.

tensorrt: torch_tensorrt.compile(ir="dynamo") of the model in fp16 for the run's fixed input shape,
with explicit (strong) typing, so the engine computes in the graph's fp16 types: the form an engine
is deployed in on NVIDIA GPUs and Jetson. Its bound is fp16's.

tensorrt-int8: NVIDIA ModelOpt's post-training quantisation first (mtq.quantize with INT8_DEFAULT_CFG:
per-tensor activations, per-channel weights, calibrated on the calibration batches), which inserts
quantize/dequantize nodes; Torch-TensorRT turns them into int8 TensorRT layers. This is the
workflow of Torch-TensorRT's quantisation guide; the TorchScript-era calibrators are gone.

Written from the Torch-TensorRT 2.14 documentation and source; CI and the development VM have no
NVIDIA GPU, so there this variant is a skip (VariantUnavailable) and the compile path is not
exercised."""

from __future__ import annotations

import copy
from typing import Any

import torch

from ..hardware.kinds import DeviceKind
from .base import PreparedVariant, VariantRequest, VariantUnavailable, module_forward, rebatch, require, version_of


def prepare(request: VariantRequest) -> PreparedVariant:
    name, model, example_input, calibration = request.name, request.model, request.example_input, request.calibration
    device_kind, torch_device = request.device_kind, request.torch_device
    if device_kind == DeviceKind.CPU or not torch_device.startswith("cuda"):
        raise VariantUnavailable(f"tensorrt needs an NVIDIA GPU (device {device_kind})")
    if not torch.cuda.is_available():
        raise VariantUnavailable(f"tensorrt needs an NVIDIA GPU, and torch sees none (device {torch_device})")
    torch_tensorrt = require("torch_tensorrt", "torch-tensorrt", "tensorrt")
    int8 = name.endswith("-int8")
    net = copy.deepcopy(model).to(torch_device).float().eval()
    x = example_input.detach().to(torch_device).float()
    how = ""
    settings: dict[str, Any] = {"ir": "dynamo", "arg_inputs": [x], "min_block_size": 1}
    if int8:
        mtq = require("modelopt.torch.quantization", "nvidia-modelopt", "tensorrt")
        from modelopt.torch.quantization.utils import export_torch_mode

        batches = rebatch(calibration, int(x.shape[0]), torch_device)

        def calibrate(m: torch.nn.Module) -> None:
            with torch.no_grad():
                for b in batches:
                    m(b)

        mtq.quantize(net, mtq.INT8_DEFAULT_CFG, forward_loop=calibrate)
        # enabled_precisions: read by Torch-TensorRT < 2.14, where int8 kernels had to be allowed;
        # 2.14's dynamo path takes the precision from the graph's quantize/dequantize nodes
        with torch.no_grad(), export_torch_mode():
            trt = torch_tensorrt.compile(net, enabled_precisions={torch.int8}, **settings)
        how = f"int8 by nvidia-modelopt INT8_DEFAULT_CFG ({sum(b.shape[0] for b in batches)} calibration images)"
    dtype = torch.float32
    if not int8:
        # fp16 by the graph's own types (strong typing): the model and its input in fp16, so the
        # engine is fp16 whatever TensorRT's deprecated weak-typing precision flags would allow
        dtype = torch.float16
        net, x = net.half(), x.half()
        settings["arg_inputs"] = [x]
        with torch.no_grad():
            trt = torch_tensorrt.compile(net, use_explicit_typing=True, **settings)
        how = "fp16 (model and input in fp16, explicit typing)"
    return PreparedVariant(
        name=name,
        forward=module_forward(trt, dtype),
        input_dtype=dtype,
        detail=f"torch-tensorrt {version_of(torch_tensorrt)} dynamo, {how}, {torch.cuda.get_device_name(torch.device(torch_device))}",
        bound=request.bound,
        batch_size=int(x.shape[0]),
        runtime=trt,
    )
