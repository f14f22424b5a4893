"""Fake GPU runtimes for the variants' NVIDIA paths, on a machine with no GPU: a torch.cuda with
several devices and a current one, torch_tensorrt, nvidia-modelopt's quantiser and onnxruntime.

Each models the behaviour of the real library that the variant depends on, from its source:

- torch.cuda: `torch.cuda.device(i)` makes i current for the block and restores the previous one
  (torch/cuda/__init__.py); tensors and modules "moved" to cuda:N stay on the CPU and the moves
  are recorded, so the test can see where the variant put its weights and input.
- torch_tensorrt: the top-level compile(module, ir="dynamo", arg_inputs=..., **kwargs) of each
  release (pytorch/TensorRT py/torch_tensorrt/_compile.py, dynamo/_compiler.py, dynamo/_defaults.py):
  from 2.13 use_explicit_typing and enabled_precisions are gone from the dynamo path and silently
  ignored (PR 4195, "Remove deprecated apis"); 2.10 to 2.12 default to explicit typing and raise
  AssertionError when enabled_precisions other than fp32 is given with it (issue 4070); before 2.10
  weak typing is the default. The device defaults to torch.cuda.current_device()
  (dynamo/_defaults.py default_device()).
- onnxruntime: get_available_providers() lists what the wheel was built with, while the session
  may come up on another provider when the asked one fails to load, with only a log line
  (microsoft/onnxruntime issues 17394, 23372, 27006); session.get_providers() says which it got.
"""

from __future__ import annotations

import contextlib
import re
import sys
import types
from typing import Any

import torch


class FakeCudaDevices:
    """torch.cuda with `count` devices, `current` the current one; moves to cuda:N are recorded and
    the tensors stay on the CPU."""

    def __init__(self, count: int = 2, current: int = 0, name: str = "NVIDIA RTX A2000"):
        self.count, self.current, self.name = count, current, name
        self.moved: list[str] = []  # the cuda devices tensors and modules were sent to
        self.synchronized: list[object] = []

    def install(self, monkeypatch) -> FakeCudaDevices:
        fake = self
        real_tensor_to, real_module_to = torch.Tensor.to, torch.nn.Module.to

        class device:  # torch.cuda.device: the index is current inside the block
            def __init__(self, which):
                self.index = which if isinstance(which, int) else torch.device(which).index

            def __enter__(self):
                self.previous, fake.current = fake.current, self.index
                return self

            def __exit__(self, *exc):
                fake.current = self.previous
                return False

        def tensor_to(t, *args, **kwargs):
            args = list(args)
            target = args.pop(0) if args and isinstance(args[0], (str, torch.device)) else kwargs.pop("device", None)
            if target is not None and torch.device(target).type == "cuda":
                fake.moved.append(str(fake.resolve(torch.device(target))))
                return real_tensor_to(t, *args, **kwargs) if args or kwargs else t
            if target is not None:
                args.insert(0, target)
            return real_tensor_to(t, *args, **kwargs)

        def module_to(m, *args, **kwargs):
            target, dtype, _, _ = torch._C._nn._parse_to(*args, **kwargs)
            if target is not None and target.type == "cuda":
                fake.moved.append(str(fake.resolve(target)))
                return real_module_to(m, dtype) if dtype is not None else m
            return real_module_to(m, *args, **kwargs)

        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: fake.count)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: fake.current)
        monkeypatch.setattr(torch.cuda, "device", device)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: fake.name)
        monkeypatch.setattr(torch.cuda, "synchronize", lambda d=None: fake.synchronized.append(d))
        monkeypatch.setattr(torch.Tensor, "to", tensor_to)
        monkeypatch.setattr(torch.nn.Module, "to", module_to)
        return self

    def resolve(self, target: torch.device) -> torch.device:
        """A plain "cuda" is the current device, as in torch."""
        return target if target.index is not None else torch.device("cuda", self.current)


class FakeEngine(torch.nn.Module):
    """What torch_tensorrt.compile returns: runs the module it was given, recording the current
    device at each call (the real runtime enqueues on the current device's stream)."""

    def __init__(self, module: torch.nn.Module, cuda: FakeCudaDevices):
        super().__init__()
        self.module, self.cuda = module, cuda
        self.call_devices: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.call_devices.append(self.cuda.current)
        return self.module(x)


def fake_torch_tensorrt(version: str, cuda: FakeCudaDevices) -> types.ModuleType:
    """A torch_tensorrt module of release `version`; .compiles records each compile call."""
    module = types.ModuleType("torch_tensorrt")
    module.__version__ = version  # type: ignore[attr-defined]
    major, minor = (int(n) for n in re.match(r"(\d+)\.(\d+)", version).groups())  # type: ignore[union-attr]
    compiles: list[dict[str, Any]] = []

    def compile(net: torch.nn.Module, ir: str = "default", arg_inputs=None, enabled_precisions=None, **kwargs):
        assert ir == "dynamo" and arg_inputs is not None
        if enabled_precisions is not None:
            kwargs["enabled_precisions"] = enabled_precisions
        ignored: set[str] = set()
        if (major, minor) >= (2, 13):
            ignored = {k for k in ("use_explicit_typing", "enabled_precisions") if k in kwargs}
        elif (major, minor) >= (2, 10):
            precisions = kwargs.get("enabled_precisions", {torch.float32})
            if kwargs.get("use_explicit_typing", True) and precisions != {torch.float32}:
                raise AssertionError(
                    f"use_explicit_typing was set to True, however found that enabled_precisions was also specified (saw: {precisions}, expected: dtype.f32, dtype.f4)"
                )
        device = kwargs.get("device")
        compiles.append(
            {
                "kwargs": kwargs,
                "ignored": ignored,
                "build_device": torch.device(device) if device is not None else torch.device("cuda", cuda.current),
                "current_device": cuda.current,
                "input_dtype": arg_inputs[0].dtype,
                "weight_dtype": next(net.parameters()).dtype,
            }
        )
        return FakeEngine(net, cuda)

    module.compile = compile  # type: ignore[attr-defined]
    module.compiles = compiles  # type: ignore[attr-defined]
    return module


def install_torch_tensorrt(monkeypatch, version: str, cuda: FakeCudaDevices) -> types.ModuleType:
    trt = fake_torch_tensorrt(version, cuda)
    monkeypatch.setitem(sys.modules, "torch_tensorrt", trt)
    return trt


def install_modelopt(monkeypatch, cuda: FakeCudaDevices) -> list[dict[str, Any]]:
    """nvidia-modelopt's mtq.quantize (runs the calibration loop, as the real one does to collect
    ranges) and export_torch_mode; returns the record of quantize calls."""
    calls: list[dict[str, Any]] = []
    mtq = types.ModuleType("modelopt.torch.quantization")
    utils = types.ModuleType("modelopt.torch.quantization.utils")

    def quantize(net, config, forward_loop):
        calls.append({"config": config, "current_device": cuda.current})
        forward_loop(net)
        return net

    mtq.INT8_DEFAULT_CFG = {"quant_cfg": "int8"}  # type: ignore[attr-defined]
    mtq.quantize = quantize  # type: ignore[attr-defined]
    utils.export_torch_mode = contextlib.nullcontext  # type: ignore[attr-defined]
    for name, mod in [
        ("modelopt", types.ModuleType("modelopt")),
        ("modelopt.torch", types.ModuleType("modelopt.torch")),
        ("modelopt.torch.quantization", mtq),
        ("modelopt.torch.quantization.utils", utils),
    ]:
        monkeypatch.setitem(sys.modules, name, mod)
    return calls


class FakeBinding:
    """onnxruntime's IOBinding: records the order of calls."""

    def __init__(self, calls: list[str]):
        self.calls = calls

    def bind_input(self, name, device_type, device_id, element_type, shape, buffer_ptr):
        self.calls.append(f"bind_input {name} {device_type}:{device_id}")

    def bind_output(self, name, device_type, device_id, element_type, shape, buffer_ptr):
        self.calls.append(f"bind_output {name} {device_type}:{device_id}")

    def synchronize_inputs(self):
        self.calls.append("synchronize_inputs")


class FakeSession:
    """An InferenceSession that came up on `comes_up_on` whatever it was asked for."""

    def __init__(self, path: str, options: Any, providers: list, comes_up_on: str):
        self.path, self.options, self.asked = path, options, providers
        self.providers = [comes_up_on] if comes_up_on == "CPUExecutionProvider" else [comes_up_on, "CPUExecutionProvider"]
        self.calls: list[str] = []

    def get_providers(self) -> list[str]:
        return self.providers

    def get_inputs(self):
        return [types.SimpleNamespace(name="input", shape=[4, 3, 32, 32])]

    def get_outputs(self):
        return [types.SimpleNamespace(name="logits", shape=[4, 10])]

    def io_binding(self) -> FakeBinding:
        return FakeBinding(self.calls)

    def run_with_iobinding(self, binding: FakeBinding) -> None:
        self.calls.append("run_with_iobinding")


def install_onnxruntime(monkeypatch, available: list[str], comes_up_on: str) -> list[FakeSession]:
    """An onnxruntime-gpu whose wheel lists `available` and whose sessions come up on
    `comes_up_on`; returns the sessions it made."""
    sessions: list[FakeSession] = []
    ort = types.ModuleType("onnxruntime")
    ort.__version__ = "1.32.0"  # type: ignore[attr-defined]
    ort.get_available_providers = lambda: list(available)  # type: ignore[attr-defined]
    ort.SessionOptions = types.SimpleNamespace  # type: ignore[attr-defined]

    def session(path, options, providers):
        sessions.append(FakeSession(path, options, providers, comes_up_on))
        return sessions[-1]

    ort.InferenceSession = session  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "onnxruntime", ort)
    monkeypatch.setitem(sys.modules, "onnx", types.ModuleType("onnx"))
    return sessions
