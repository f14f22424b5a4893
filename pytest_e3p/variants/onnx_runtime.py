"""ONNX Runtime: the model exported with torch.onnx.export(dynamo=True) (which needs onnxscript) for
the run's fixed input shape, run by an InferenceSession.

Providers: CPUExecutionProvider on a CPU device. On an NVIDIA device (CUDA or Jetson) the fp32 graph
runs on CUDAExecutionProvider with inputs and outputs bound to torch's CUDA tensors (no copies to
the host), and the int8 graph on TensorrtExecutionProvider (TensorRT builds int8 kernels from the
graph's quantize/dequantize pairs); without them in the installed onnxruntime (the CPU package has
neither) the variant is skipped saying so. The NVIDIA paths are written from the ONNX Runtime
documentation and are exercised on this project's CPU-only CI only against a fake onnxruntime
(tests/fakes/runtimes.py).

get_available_providers() lists the providers the wheel was built with, not those that load: when
the CUDA or TensorRT provider's libraries are missing (CUDA, cuDNN, libnvinfer), the session comes
up on the next provider, CUDA or CPU, with only a log line (microsoft/onnxruntime issues 17394,
23372, 25145, 27006). So the provider the session came up on is checked, and a variant that did not
get the one it asked for is a skip naming both and the fix, never a measurement of the wrong
runtime under this variant's name.

onnxruntime-int8: static post-training quantisation with onnxruntime.quantization.quantize_static in
QDQ format, calibrated (min/max) on the calibration batches, weights per channel. Only MatMul, Gemm
and Conv are quantised: quantising every op of the graph as well (LayerNormalization, Softmax, Add,
...) took the largest logit error of a tiny random-weight ViT from 0.05 to 0.41 of the largest logit,
and those ops are not where the time goes.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from ..hardware.kinds import DeviceKind
from .base import PreparedVariant, VariantRequest, VariantUnavailable, rebatch, require, threads, version_of

QUANTISED_OPS = ["MatMul", "Gemm", "Conv"]

# provider asked for -> why it did not come up, and what to do (the provider's own error line,
# naming the library it could not load, is in ONNX Runtime's log just above)
FALLBACK_FIXES = {
    "CUDAExecutionProvider": (
        "the CUDA provider did not load (CUDA or cuDNN libraries not found): install the onnxruntime-gpu build "
        "for this machine's CUDA and cuDNN major versions, or put their libraries on LD_LIBRARY_PATH"
    ),
    "TensorrtExecutionProvider": (
        "the TensorRT provider did not load (TensorRT libraries not found): install the TensorRT release this "
        "onnxruntime-gpu was built for, with the CUDA provider's CUDA and cuDNN, or put libnvinfer on LD_LIBRARY_PATH"
    ),
}


def export_onnx(model: torch.nn.Module, example_input: torch.Tensor, path: Path) -> None:
    """The fp32 model as an ONNX file for example_input's shape (exported on the CPU)."""
    require("onnxscript", "onnxscript", "onnx")  # torch.onnx's dynamo exporter builds the graph with it
    net = copy.deepcopy(model).to("cpu").float().eval()
    with torch.inference_mode(False), torch.no_grad():
        program = torch.onnx.export(net, (example_input.detach().to("cpu").float(),), dynamo=True, verbose=False)
    if program is None:  # the dynamo exporter always returns an ONNXProgram; the type says Optional
        raise RuntimeError("torch.onnx.export returned no program")
    program.save(str(path))


def prepare(request: VariantRequest) -> PreparedVariant:
    name, model, example_input, calibration = request.name, request.model, request.example_input, request.calibration
    device_kind, torch_device = request.device_kind, request.torch_device
    ort = require("onnxruntime", "onnxruntime", "onnx")
    require("onnx", "onnx", "onnx")
    int8 = name.endswith("-int8")
    available = ort.get_available_providers()
    if device_kind == DeviceKind.CPU:
        providers: list[Any] = ["CPUExecutionProvider"]
    elif int8:
        if "TensorrtExecutionProvider" not in available:
            raise VariantUnavailable(
                f"onnxruntime-int8 on an NVIDIA GPU needs onnxruntime's TensorrtExecutionProvider, which this onnxruntime lacks (has {', '.join(available)}; device {device_kind})"
            )
        index = _cuda_index(torch_device)
        providers = [
            ("TensorrtExecutionProvider", {"device_id": index, "trt_int8_enable": True}),
            ("CUDAExecutionProvider", {"device_id": index, "use_tf32": 0}),
        ]
    else:
        if "CUDAExecutionProvider" not in available:
            raise VariantUnavailable(
                f"onnxruntime has no CUDAExecutionProvider here (has {', '.join(available)}): pip install onnxruntime-gpu (device {device_kind})"
            )
        # use_tf32 0: the CUDA provider's default TF32 matmuls would make "onnxruntime" less precise than fp32 eager
        providers = [("CUDAExecutionProvider", {"device_id": _cuda_index(torch_device), "use_tf32": 0})]

    batch = int(example_input.shape[0])
    with tempfile.TemporaryDirectory(prefix="e3p-onnx-") as tmp:
        path = Path(tmp) / "model.onnx"
        export_onnx(model, example_input, path)
        how = "fp32"
        if int8:
            path, how = _quantise(path, calibration, batch, symmetric=device_kind != DeviceKind.CPU)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads()
        options.log_severity_level = 3  # errors only: the session's warnings are not the run's business
        # the session reads the file here; the temporary directory can go afterwards
        session = ort.InferenceSession(str(path), options, providers=providers)

    asked = providers[0] if isinstance(providers[0], str) else providers[0][0]
    used = session.get_providers()[0]
    if used != asked:
        raise VariantUnavailable(
            f"{name} not measured: its session came up on {used}, not the {asked} asked for on {torch_device}; "
            + FALLBACK_FIXES.get(asked, "ONNX Runtime's log above says why")
        )
    in_name, out_name = session.get_inputs()[0].name, session.get_outputs()[0].name
    if device_kind == DeviceKind.CPU:
        forward = _cpu_forward(session, in_name, out_name)
    else:
        out_shape = (batch, *[int(d) for d in session.get_outputs()[0].shape[1:]])
        forward = _cuda_forward(session, in_name, out_name, out_shape, torch_device, _cuda_index(torch_device))
    return PreparedVariant(
        name=name,
        forward=forward,
        detail=f"onnxruntime {version_of(ort)}, {used}, {threads()} threads, torch.onnx dynamo export, {how}",
        bound=request.bound,
        batch_size=batch,
        runtime=session,
    )


def _cpu_forward(session: Any, in_name: str, out_name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    def forward(x: torch.Tensor) -> torch.Tensor:
        # numpy views of the same memory both ways: no copy besides ONNX Runtime's own output
        return torch.from_numpy(session.run([out_name], {in_name: x.detach().numpy()})[0])

    return forward


def _cuda_index(torch_device: str) -> int:
    """The GPU of "cuda:N"; a plain "cuda" is torch's current device, not necessarily 0."""
    index = torch.device(torch_device).index
    return torch.cuda.current_device() if index is None else index


def _cuda_forward(
    session: Any, in_name: str, out_name: str, out_shape: tuple[int, ...], torch_device: str, index: int
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Inputs and outputs bound to torch CUDA memory with an IOBinding: no host round trip."""
    import numpy as np

    binding = session.io_binding()

    def forward(x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()
        out = torch.empty(out_shape, dtype=torch.float32, device=torch_device)
        binding.bind_input(in_name, "cuda", index, np.float32, tuple(x.shape), x.data_ptr())
        binding.bind_output(out_name, "cuda", index, np.float32, out_shape, out.data_ptr())
        # the input was written on torch's stream and ORT runs on its own; Run does not wait for
        # the inputs itself (its IOBinding Run leaves SynchronizeInputs to the caller)
        binding.synchronize_inputs()
        session.run_with_iobinding(binding)
        return out

    return forward


def _quantise(path: Path, calibration: list[torch.Tensor], batch: int, symmetric: bool) -> tuple[Path, str]:
    """quantize_static into QDQ format, calibrated on the calibration batches."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    batches = rebatch(calibration, batch)
    import onnx

    in_name = onnx.load(str(path), load_external_data=False).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches: Iterator[torch.Tensor] = iter(batches)

        def get_next(self) -> dict[str, Any] | None:
            b = next(self.batches, None)
            return None if b is None else {in_name: b.numpy()}

    pre = path.with_name("model.pre.onnx")
    out = path.with_name("model.int8.onnx")
    quant_pre_process(str(path), str(pre))  # shape inference and folding, as ONNX Runtime's docs advise before quantising
    # TensorRT takes symmetric int8 activations only; the CPU provider is fastest with uint8 ones
    activations = QuantType.QInt8 if symmetric else QuantType.QUInt8
    quantize_static(
        str(pre),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=QUANTISED_OPS,
        per_channel=True,
        activation_type=activations,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        extra_options={"ActivationSymmetric": symmetric},
    )
    images = sum(b.shape[0] for b in batches)
    return out, f"int8 QDQ ({'/'.join(QUANTISED_OPS)}; per-channel weights; {activations.name} activations, min/max over {images} calibration images)"
