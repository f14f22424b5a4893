"""OpenVINO on the CPU: openvino.convert_model of the torch model's torch.export program (OpenVINO's
PyTorch frontend, no ONNX file) for the run's fixed input shape, compiled for "CPU".

The CPU plugin's default inference precision is bf16 on CPUs with native bf16 support (it reads bf16
on the 2-core development VM, which has AMX), which would make "openvino" a bf16 variant without
saying so: fp32 is asked for explicitly (INFERENCE_PRECISION_HINT f32). Threads are pinned to torch's count, the
performance hint is LATENCY (one synchronous request at a time, like the protocol's loop).

openvino-int8: nncf.quantize of the converted model (model_type TRANSFORMER, NNCF's preset for
transformers) calibrated on the calibration batches; the int8 kernels run where the graph has
quantize/dequantize pairs and the rest stays fp32.

OpenVINO is Intel's runtime for CPUs (and Intel GPUs/NPUs); on an NVIDIA or Jetson device it would
measure the host CPU, not the device, so it is skipped there."""

from __future__ import annotations

import copy

import torch

from ..hardware.kinds import DeviceKind
from .base import PreparedVariant, VariantRequest, VariantUnavailable, rebatch, require, threads, version_of


def prepare(request: VariantRequest) -> PreparedVariant:
    name, model, example_input, calibration, device_kind = request.name, request.model, request.example_input, request.calibration, request.device_kind
    ov = require("openvino", "openvino", "openvino")
    if device_kind != DeviceKind.CPU:
        raise VariantUnavailable(f"openvino runs on the CPU (and Intel GPUs), not on this {device_kind} device")
    int8 = name.endswith("-int8")
    nncf = require("nncf", "nncf", "openvino") if int8 else None
    net = copy.deepcopy(model).to("cpu").float().eval()
    x = example_input.detach().to("cpu").float()
    with torch.inference_mode(False), torch.no_grad():
        # from a torch.export program: OpenVINO's other path traces with torch.jit.trace, which torch
        # deprecates, and which took longer: 4.9 s against 2.8 s for deit_tiny in one try on the 2-core VM
        program = torch.export.export(net, (x,))
        ov_model = ov.convert_model(program, input=[tuple(x.shape)])
    how = "fp32"
    if nncf is not None:
        batches = rebatch(calibration, int(x.shape[0]))
        dataset = nncf.Dataset(batches, lambda b: b.numpy())
        ov_model = nncf.quantize(ov_model, dataset, model_type=nncf.ModelType.TRANSFORMER, subset_size=len(batches))
        how = f"int8 by nncf {version_of(nncf)} quantize (TRANSFORMER preset, {sum(b.shape[0] for b in batches)} calibration images)"
    config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads()}
    # "CPU" by name, not AUTO: a named device compiles there or raises; only the AUTO/MULTI/HETERO
    # virtual devices fall back to another device (OpenVINO's automatic device selection docs),
    # so unlike ONNX Runtime's providers there is no silent fallback to check for
    compiled = ov.Core().compile_model(ov_model, "CPU", config)

    def forward(x: torch.Tensor) -> torch.Tensor:
        # share_inputs: OpenVINO reads the numpy view of the torch tensor in place; the output is a copy
        return torch.from_numpy(compiled(x.detach().numpy(), share_inputs=True)[0])

    return PreparedVariant(
        name=name,
        forward=forward,
        detail=f"openvino {version_of(ov)}, CPU, f32 inference precision, LATENCY hint, {threads()} threads, {how}",
        bound=request.bound,
        batch_size=int(x.shape[0]),
        runtime=compiled,
    )
