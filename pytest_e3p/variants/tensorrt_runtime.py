"""TensorRT through Torch-TensorRT's dynamo frontend, on NVIDIA GPUs and Jetson boards.

tensorrt: torch_tensorrt.compile(ir="dynamo") of the model in fp16 for the run's fixed input shape.
The precision comes from the graph's own types (strong typing): the model and its input are cast
to fp16 before compiling, so the engine computes in fp16, the form an engine is deployed in on
NVIDIA GPUs and Jetson. Its bound is fp16's.

tensorrt-int8: NVIDIA ModelOpt's post-training quantisation first (mtq.quantize with INT8_DEFAULT_CFG:
per-tensor activations, per-channel weights, calibrated on the calibration batches), which inserts
quantize/dequantize nodes; Torch-TensorRT turns them into int8 TensorRT layers. This is the
workflow of Torch-TensorRT's quantisation guide; the TorchScript-era calibrators are gone.

The compile settings follow the installed release (pytorch/TensorRT, py/torch_tensorrt/dynamo/_compiler.py
and _defaults.py at each tag):

- 2.13 and later (the pinned >= 2.14): use_explicit_typing and enabled_precisions are gone from the
  dynamo compile (pytorch/TensorRT PR 4195, "Remove deprecated apis"); torch_tensorrt.compile still
  takes either and ignores it on the dynamo path, so neither is passed: the dtypes of the model and
  of the Q/DQ nodes are the whole precision setting.
- 2.10 to 2.12: explicit typing is the default, and enabled_precisions other than fp32 next to it
  raises AssertionError (pytorch/TensorRT issue 4070), so int8 passes use_explicit_typing=True alone.
- before 2.10: weak typing is the default: fp16 asks for use_explicit_typing=True, int8 for
  enabled_precisions={int8} (the 2.9 vgg16_ptq example).

The device: Torch-TensorRT builds on torch.cuda.current_device() unless told otherwise (dynamo/_tracer.py
moves the example input to default_device(), the current one), and its runtime executes on the
current device without checking the engine's unless MULTI_DEVICE_SAFE_MODE is on
(core/runtime/execute_engine.cpp). On cuda:N, N > 0, the engine would then be built and run on
GPU 0 while NVML measures GPU N; so the device is passed to compile and made current while the
variant is built and on every call.

Written from the Torch-TensorRT 2.14 documentation and source; CI and the development VM have no
NVIDIA GPU, so there this variant is a skip (VariantUnavailable) and the compile path is exercised
only against a fake torch_tensorrt (tests/fakes/runtimes.py)."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

import torch

from ..hardware.kinds import DeviceKind
from .base import PreparedVariant, VariantRequest, VariantUnavailable, rebatch, require, version_of

STRONG_TYPING_ONLY = (2, 13)  # use_explicit_typing and enabled_precisions removed from the dynamo compile
EXPLICIT_TYPING_DEFAULT = (2, 10)  # USE_EXPLICIT_TYPING became True in dynamo/_defaults.py


def release(version: str) -> tuple[int, int] | None:
    """(major, minor) of a torch-tensorrt version ("2.14.0+cu130", "2.13.0a0"); None when unreadable."""
    m = re.match(r"(\d+)\.(\d+)", version)
    return (int(m[1]), int(m[2])) if m else None


def precision_settings(version: tuple[int, int] | None, int8: bool) -> tuple[dict[str, Any], str]:
    """The precision arguments of torch_tensorrt.compile for this release, and what they mean in a
    few words for the variant's detail. An unreadable version is taken as the pinned release."""
    if version is None or version >= STRONG_TYPING_ONLY:
        return {}, "strong typing, precision from the graph's dtypes"
    if version >= EXPLICIT_TYPING_DEFAULT:
        return {"use_explicit_typing": True}, "use_explicit_typing=True (release before 2.13)"
    if int8:
        return {"enabled_precisions": {torch.int8}}, "enabled_precisions={int8}, weak typing (release before 2.10)"
    return {"use_explicit_typing": True}, "use_explicit_typing=True (release before 2.13)"


def prepare(request: VariantRequest) -> PreparedVariant:
    name, model, example_input, calibration = request.name, request.model, request.example_input, request.calibration
    device_kind, torch_device = request.device_kind, request.torch_device
    if device_kind == DeviceKind.CPU or not torch_device.startswith("cuda"):
        raise VariantUnavailable(f"tensorrt needs an NVIDIA GPU (device {device_kind})")
    if not torch.cuda.is_available():
        raise VariantUnavailable(f"tensorrt needs an NVIDIA GPU, and torch sees none (device {torch_device})")
    torch_tensorrt = require("torch_tensorrt", "torch-tensorrt", "tensorrt")
    int8 = name.endswith("-int8")
    index = torch.device(torch_device).index
    if index is None:  # plain "cuda": torch's current device, fixed now so build and calls agree
        index = torch.cuda.current_device()
    device = torch.device("cuda", index)
    version = version_of(torch_tensorrt)
    precision, typing = precision_settings(release(version), int8)
    with torch.cuda.device(index):
        net = copy.deepcopy(model).to(device).float().eval()
        x = example_input.detach().to(device).float()
        dtype = torch.float32
        if int8:
            mtq = require("modelopt.torch.quantization", "nvidia-modelopt", "tensorrt")
            from modelopt.torch.quantization.utils import export_torch_mode

            batches = rebatch(calibration, int(x.shape[0]), device)

            def calibrate(m: torch.nn.Module) -> None:
                with torch.no_grad():
                    for b in batches:
                        m(b)

            mtq.quantize(net, mtq.INT8_DEFAULT_CFG, forward_loop=calibrate)
            with torch.no_grad(), export_torch_mode():
                trt = torch_tensorrt.compile(net, ir="dynamo", arg_inputs=[x], min_block_size=1, device=device, **precision)
            how = f"int8 by nvidia-modelopt INT8_DEFAULT_CFG ({sum(b.shape[0] for b in batches)} calibration images), {typing}"
        else:
            # fp16 by the graph's own types: the model and its input in fp16, so the engine is fp16
            # on every release (TensorRT 11 has no weak-typing precision flags left to ask with)
            dtype = torch.float16
            net, x = net.half(), x.half()
            with torch.no_grad():
                trt = torch_tensorrt.compile(net, ir="dynamo", arg_inputs=[x], min_block_size=1, device=device, **precision)
            how = f"fp16 (model and input in fp16), {typing}"
    return PreparedVariant(
        name=name,
        forward=_on_device(trt, dtype, index),
        input_dtype=dtype,
        detail=f"torch-tensorrt {version} dynamo on {device}, {how}, {torch.cuda.get_device_name(device)}",
        bound=request.bound,
        batch_size=int(x.shape[0]),
        runtime=trt,
    )


def _on_device(engine: Callable[[torch.Tensor], torch.Tensor], dtype: torch.dtype, index: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """forward of the compiled module with cuda:index current: the runtime enqueues on the current
    device's stream, and would run GPU 0's context for an engine built for GPU index."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.cuda.device(index), torch.inference_mode():
            return engine(x.to(dtype))

    return forward
