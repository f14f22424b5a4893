"""The bench of a remote board: the same interface as run.bench.Bench, but each pass of a case runs
on the board through its agent (remote/client.py). The host builds the case's fp32 model, exports it
for the board's runtime, ships it once, checks the board's logits against its own fp32 eager ones,
and turns the rounds the agent streams back into the SteadyState a local pass gives, so the records,
the gate, baselines and reports are those of a local run."""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from typing import Any

import torch

from ..config import Options
from ..hardware.kinds import DeviceKind
from ..hardware.sensors import EnergyReading, EnergySensor, NullSensor, SensorFault, SensorInfo, SensorUnavailable
from ..measure.context import MeasureContext
from ..measure.protocols import Protocol, SteadyState
from ..remote.boards import PROFILES, RemoteDevice
from ..remote.client import AgentError, BoardClient, Probe
from ..remote.ssh import BoardError
from .bench import NoSensor
from .case import Case
from .loading import LoadedModel

CHECK_IMAGES = 32  # the board's logits on these many images are checked against the host's fp32 eager ones
# The newest ONNX opset each ONNX Runtime release reads fully (its docs' compatibility table), newest first:
# the board's version picks the opset the host exports at.
ORT_OPSETS = (((1, 14), 17), ((1, 10), 15), ((1, 8), 14), ((1, 6), 13))


class BoardFault(SensorFault):
    """The board failed during a case (link lost, agent died, runtime missing): the case is invalid,
    the run goes on (the runner and the session treat it as they treat a sensor fault)."""


class BoardSensor(EnergySensor):
    """The board's sensor as the host knows it: its description. It is read on the board only."""

    def __init__(self, info: SensorInfo):
        self.info = info

    def read(self) -> EnergyReading:
        raise SensorUnavailable(f"{self.info.name} is read on the board, by the agent")


class RemoteBench:
    """Opened by the session's start() for a RemoteDevice; closed by its finish()."""

    def __init__(self, device: RemoteDevice, protocol: Protocol, options: Options, progress: Callable[[str], None]):
        self.device, self.protocol, self.options, self.progress = device, protocol, options, progress
        self.thermal = None  # the host's thermal zones say nothing about the board
        self.memory = None
        self.memory_unavailable: dict[str, str] = {}
        self.sensor: EnergySensor = NullSensor("the board was not reached")
        self.sensor_note = ""
        self.client: BoardClient | None = None
        self.runtime = ""
        self.down = ""  # why the board cannot be measured now ("" while it can)
        self._checked: dict[str, str] = {}  # case id -> its model's path on the board, once checked
        self._connect()

    # -- the board -----------------------------------------------------------------------------
    def _connect(self) -> None:
        """Connect, probe and lock the board; where that fails, `down` says why and every case is
        invalid with that line (tried again at the next case)."""
        self.client = BoardClient(self.device.board, self.progress)
        try:
            probe = self.client.connect()
            self.runtime = self.client.pick_runtime(probe)
        except BoardError as exc:
            self.client.close()
            self.client, self.down = None, str(exc)
            self.sensor, self.sensor_note = NullSensor(self.down), f"{self.down}; energy is reported as unavailable"
            self.progress(f"[e3p] {self.down}")
            return
        self.down = ""
        self._identify(probe)

    def _identify(self, probe: Probe) -> None:
        """The board's identity (what makes its results comparable: the runtime and its version
        included) and its sensor; `auto` takes the profile the board's device tree names."""
        raw = probe.raw
        if self.device.board.profile == "auto":
            from ..hardware.board import _module

            compatible = tuple(raw.get("compatible", ()))
            named = _module(compatible)[2] if any("tegra" in c for c in compatible) else None
            self.device.profile = PROFILES[named or ("jetson" if any("tegra" in c for c in compatible) else "cpu")]
            self.device.note = f"auto: {self.device.board.describe()} is {self.device.profile.description}"
        self.device.identity = {
            "board": self.device.board.name,
            "profile": self.device.profile.name,
            "model": raw.get("model") or raw.get("machine"),
            "compatible": raw.get("compatible", []),
            "l4t": (raw.get("l4t") or ["unknown"])[0],
            "python": probe.python,
            "runtime": self.runtime,
            "runtime_version": probe.runtimes.get(self.runtime, "unknown"),
            "cpu_count": raw.get("cpu_count"),
        }
        if probe.sensor is not None:
            self.sensor, self.sensor_note = BoardSensor(probe.sensor), ""
        else:
            why = probe.sensor_error or f"the devices file says sensor = {self.device.board.sensor_kind}"
            if self.options.require_sensor:
                self.close()
                raise NoSensor(f"--e3p-require-sensor: no power sensor on {self.device.board.describe()}: {why}")
            self.sensor_note = f"{self.device.board.describe()}: no power sensor read ({why}); energy is reported as unavailable"
            self.sensor = NullSensor(self.sensor_note)

    def reopen_sensor(self) -> None:
        """After a failed case: a fresh connection for the next one where the link or the agent broke
        (the board may be back); an error the agent reported leaves both as they are."""
        if not self.down and self.client is not None:
            return
        self.close()
        self._checked.clear()  # a rebooted board may have lost its /tmp
        self._connect()

    def context(self) -> MeasureContext:
        """For the host's accuracy pass: the board's sensor is not read on the host."""
        return MeasureContext(sensor=NullSensor("the accuracy pass runs on the host, whose energy is not the board's"))

    # -- a pass --------------------------------------------------------------------------------
    def steady_state(self, case: Case, loaded: LoadedModel) -> SteadyState:
        """One pass of the protocol's rounds on the board."""
        if self.down:
            self.reopen_sensor()
            if self.down:
                raise BoardFault(self.down)
        if case.variant != "fp32":
            raise BoardFault(f"{self.device.board.describe()}: variant {case.variant} is not measured on remote boards yet (fp32 is)")
        client = self.client
        assert client is not None
        try:
            path = self._checked.get(case.id) or self._ship_and_check(case, loaded)
            request = {
                **self._model_request(path),
                "shape": [case.batch_size, *loaded.input_size],
                "sensor": self.device.board.sensor_kind if self.device.board.profile != "auto" else "auto",
                "rate_hz": self.options.sample_hz,
                "protocol": {
                    "name": self.protocol.name,
                    "inferences": self.protocol.inferences,
                    "rounds": self.protocol.rounds,
                    "min_round_s": self.protocol.min_round_s,
                    "warmup_s": self.protocol.warmup_s,
                    "idle_s": self.protocol.idle_s,
                },
            }
            return client.measure(request, self.protocol)
        except AgentError as exc:  # the agent said what failed, and serves on
            raise BoardFault(str(exc)) from None
        except BoardError as exc:
            self.down = str(exc)
            raise BoardFault(str(exc)) from None

    def _model_request(self, path: str) -> dict[str, Any]:
        accelerator = "cuda" if self.device.kind in (DeviceKind.CUDA, DeviceKind.JETSON) else "cpu"
        return {"runtime": self.runtime, "model": path, "accelerator": accelerator, "threads": self.options.threads}

    def _ship_and_check(self, case: Case, loaded: LoadedModel) -> str:
        """Export the case's fp32 model for the board's runtime, ship it (once: the board caches it by
        content hash), and check the board's logits on CHECK_IMAGES images against the host's fp32
        eager ones: a wrong export is a failed case, never a fast one."""
        from ..variants import agreement

        assert self.client is not None
        module = loaded.module.eval()
        example = torch.randn((2, *loaded.input_size), generator=torch.Generator().manual_seed(0))
        opset = onnx_opset(self.device.identity.get("runtime_version", ""))
        try:
            model = export(module, example, self.runtime, opset)
        except Exception as exc:  # an operator the runtime's format cannot express
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            fix = f"at opset {opset} (what onnxruntime {self.device.identity.get('runtime_version')} reads)" if self.runtime == "onnxruntime" else ""
            raise AgentError(f"{self.device.board.describe()}: {case.model.full} cannot be exported for {self.runtime} {fix}: {first[:200]}") from None
        path = self.client.ship(model, self.runtime)
        images = torch.randn((CHECK_IMAGES, *loaded.input_size), generator=torch.Generator().manual_seed(1))
        with torch.inference_mode():
            reference = module(images).float()
        shape, data = self.client.logits({**self._model_request(path), "shape": list(images.shape)}, images.numpy().astype("float32").tobytes())
        board = torch.frombuffer(bytearray(data), dtype=torch.float32).reshape(shape)
        loaded.agreement = agreement(reference, board, "fp32")
        line = (
            f"top-1 agreement {loaded.agreement.top1_pct:.1f} % and max relative logit error {loaded.agreement.max_rel_err:.3g} "
            f"on {loaded.agreement.samples} images against the host's fp32 eager model"
        )
        if not loaded.agreement.ok:
            raise AgentError(f"{self.device.board.describe()}: the board's {self.runtime} model disagrees with the host's: {line} ({loaded.agreement.bound})")
        self.progress(f"[e3p] {case.id}: {self.device.board.describe()} runs it with {self.runtime}; {line}")
        self._checked[case.id] = path
        return path

    def sustained(self, case: Case, loaded: LoadedModel) -> Any:
        raise BoardFault(f"{self.device.board.describe()}: --e3p-sustained-s is not run on remote boards yet")

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


def onnx_opset(ort_version: str) -> int:
    """The opset to export at for the board's ONNX Runtime version (its oldest known: 13)."""
    try:
        version = tuple(int(x) for x in ort_version.split(".")[:2])
    except ValueError:
        return ORT_OPSETS[-1][1]
    return next((opset for minimum, opset in ORT_OPSETS if version >= minimum), ORT_OPSETS[-1][1])


def export(module: torch.nn.Module, example: torch.Tensor, runtime: str, opset: int = 17) -> bytes:
    """The model as the board's runtime reads it: TorchScript for torch, ONNX (any batch) for ONNX Runtime."""
    buf = io.BytesIO()
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        # the tracer's warnings on timm's shape checks: the board's logits are checked against fp32 anyway
        warnings.simplefilter("ignore")
        if runtime == "torch":
            traced = torch.jit.trace(module, example, check_trace=False)
            torch.jit.save(traced, buf)
        else:
            torch.onnx.export(
                module,
                (example,),
                buf,  # type: ignore[arg-type]  # the TorchScript-based exporter writes to any binary file
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=opset,
                dynamo=False,
            )
    return buf.getvalue()
