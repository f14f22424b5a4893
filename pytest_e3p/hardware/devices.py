"""Device profiles: what `--device NAME` means, a check that the hardware matches, the device's
identity (what makes two results comparable), and which power sensor measures it."""

from __future__ import annotations

import functools
import os
import platform
import re
from dataclasses import dataclass, field
from typing import Any

import torch

from .board import Board, identify_board
from .kinds import DeviceKind
from .sensors import EnergySensor, SensorFault, SensorUnavailable, sysfs
from .sensors import jetson as jetson_sensors
from .sensors import nvml as nvml_sensors
from .sensors.estimate import HINT as ESTIMATE_HINT
from .sensors.estimate import CpuTimeEstimate
from .sensors.rapl import RaplSensor


class DeviceError(Exception):
    """Unknown device, or hardware that does not match the named profile."""


@dataclass(frozen=True)
class Profile:
    name: str
    kind: DeviceKind
    description: str
    match: str | None = None  # regex a named GPU profile's GPU name must contain (Jetson boards: board.py)


PROFILES = {
    p.name: p
    for p in (
        Profile("cpu", DeviceKind.CPU, "the host CPU; energy from RAPL (package, DRAM)"),
        Profile("cuda", DeviceKind.CUDA, "any NVIDIA GPU (cuda:0, or cuda:N); energy from NVML"),
        Profile("rtx3050", DeviceKind.CUDA, "NVIDIA GeForce RTX 3050 (the paper's mobile GPU)", r"RTX 3050"),
        # Jetson profiles are matched by the module part number in the device tree (board.MODULES)
        Profile("tx2", DeviceKind.JETSON, "NVIDIA Jetson TX2 (the paper's edge device)"),
        Profile("xavier-nx", DeviceKind.JETSON, "NVIDIA Jetson Xavier NX"),
        Profile("orin-nano", DeviceKind.JETSON, "NVIDIA Jetson Orin Nano"),
        Profile("orin-nx", DeviceKind.JETSON, "NVIDIA Jetson Orin NX"),
        Profile("agx-orin", DeviceKind.JETSON, "NVIDIA Jetson AGX Orin"),
        Profile("jetson", DeviceKind.JETSON, "any NVIDIA Jetson board, under its own name (boards without a named profile)"),
    )
}


def accepted_names() -> str:
    return ", ".join([*PROFILES, "cuda:N", "auto"])


@dataclass
class Device:
    """A resolved --device: its profile, the torch device it runs on, and its identity."""

    name: str  # as the user named it (after auto): appears in test ids and results
    profile: Profile
    torch_device: str  # "cpu" or "cuda:N"
    identity: dict[str, Any] = field(default_factory=dict)
    note: str = ""  # what auto picked, and why

    @property
    def kind(self) -> DeviceKind:
        return self.profile.kind

    @property
    def default_batch_size(self) -> int:
        """The paper's 64 on GPUs and Jetson boards. On a CPU a batch of 64 of ViT-S takes about
        7 s on 2 cores, so 10 rounds of 13 models would take over 15 minutes; 16 keeps every round
        above the 1 s minimum and the run near 5 minutes."""
        return 16 if self.kind == DeviceKind.CPU else 64

    def synchronize(self) -> None:
        """Wait for queued work, so a window edge is where the work really ends."""
        if self.torch_device.startswith("cuda"):
            torch.cuda.synchronize(self.torch_device)

    def temperature_c(self) -> float | None:
        if self.kind == DeviceKind.CUDA:
            try:
                nvml = nvml_sensors.load_pynvml()
                # by UUID where known: NVML numbers GPUs by PCI bus, CUDA fastest first, so index N may be another GPU
                handle = nvml_sensors.device_handle(nvml, self.cuda_index, self.identity.get("uuid"))
                return nvml_sensors.gpu_temperature_c(nvml, handle)
            except SensorUnavailable:
                return None
        return _thermal_zone_c(self.kind)

    @property
    def cuda_index(self) -> int:
        return int(self.torch_device.split(":")[1]) if ":" in self.torch_device else 0

    def open_sensor(self, require: bool = False, w_per_core: float = 10.0, rate_hz: float = 100.0, static_w: float = 10.0) -> tuple[EnergySensor | None, str]:
        """The device's power sensor, or (estimate / None, why no sensor).

        require=True turns the absence of a real sensor into SensorUnavailable."""
        try:
            if self.kind == DeviceKind.CPU:
                return RaplSensor(), ""
            if self.kind == DeviceKind.JETSON:
                return jetson_sensors.open_jetson_sensor(rate_hz), ""
            return nvml_sensors.open_nvml_sensor(index=self.cuda_index, uuid=self.identity.get("uuid"), rate_hz=rate_hz), ""
        except SensorUnavailable as exc:
            if require:
                raise
            if self.kind == DeviceKind.CPU:
                # the chmod advice only where permission is the cause: a vanished or garbled file is not
                hint = f" ({ESTIMATE_HINT})" if "permission" in str(exc).lower() or "no rapl" in str(exc).lower() else ""
                return CpuTimeEstimate(w_per_core, static_w), f"{exc}; using a labelled estimate instead{hint}"
            return None, f"{exc}; energy is reported as unavailable"


def _thermal_zone_c(kind: DeviceKind) -> float | None:
    """The measured device's zone temperature (the CPU's; a Jetson's GPU zone), chosen by zone type as
    the thermal monitor chooses it: zone 0 is whatever registered first (AO-therm on a Nano)."""
    from . import thermal

    sources = thermal.find_sources(kind)
    try:
        for zone in sources.measured:
            try:
                return zone.read_c()
            except (SensorFault, OSError):
                continue
        return None
    finally:
        sources.close()


@functools.lru_cache(maxsize=1)
def cpu_name() -> str:
    """The CPU's brand string, from py-cpuinfo's `brand_raw` (module `cpuinfo`, which pytest-benchmark
    installs as py-cpuinfo or its fork py-cpuinfo2); on x86 Linux the same "model name" /proc/cpuinfo
    gives. It runs lscpu and a CPUID child process (about 0.2 s), hence the cache. Without the
    module, or where it finds no brand, the first "model name" / "Hardware" line of /proc/cpuinfo."""
    try:
        import cpuinfo

        brand = str(cpuinfo.get_cpu_info().get("brand_raw") or "").strip()
    except Exception:  # not installed, or it failed on an unusual platform: the fallback below
        brand = ""
    if brand:
        return brand
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return model


def cpu_identity() -> dict[str, Any]:
    return {"name": cpu_name(), "logical_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "machine": platform.machine()}


def _cuda_identity(index: int) -> dict[str, Any]:
    props = torch.cuda.get_device_properties(index)
    identity: dict[str, Any] = {"name": props.name, "capability": f"{props.major}.{props.minor}", "memory_gib": round(props.total_memory / 2**30, 1)}
    uuid = getattr(props, "uuid", None)
    if uuid is not None:
        identity["uuid"] = str(uuid) if str(uuid).startswith("GPU-") else f"GPU-{uuid}"
    try:
        nvml = nvml_sensors.load_pynvml()
        handle = nvml_sensors.device_handle(nvml, index, identity.get("uuid"))
        identity.update({k: v for k, v in nvml_sensors.gpu_identity(nvml, handle).items() if v not in (None, "unknown")})
    except SensorUnavailable as exc:
        identity["nvml"] = str(exc)
    return identity


# Where NVIDIA's CUDA torch for Jetson comes from, and how to keep it through a pip install.
TORCH_FIX = (
    "install NVIDIA's CUDA torch (on a Jetson: the JetPack wheel from NVIDIA, "
    "https://docs.nvidia.com/deeplearning/frameworks/install-pytorch-jetson-platform/), in a venv made with "
    "`python3 -m venv --system-site-packages` so it sees that torch, and install this package with "
    "`pip install --no-deps pytest-e3p` so pip does not replace it; or measure the CPU with --device cpu"
)


def nvidia_gpu_present() -> str | None:
    """Why this machine has an NVIDIA GPU (the driver's /proc file, or NVML counting one), or None."""
    if sysfs.path("/proc/driver/nvidia/version").exists():
        return "the NVIDIA driver is loaded (/proc/driver/nvidia/version)"
    try:
        count = nvml_sensors.gpu_count()
    except SensorUnavailable:
        return None
    return f"NVML sees {count} NVIDIA GPU(s)" if count > 0 else None


def _torch_without_cuda(name: str, why: str) -> DeviceError:
    if torch.version.cuda is None:
        cause = f"torch {torch.__version__} is a CPU-only build, but {why}: a plain pip install replaces NVIDIA's CUDA torch with one"
    else:  # a CUDA build that sees no GPU: built for a CUDA this driver cannot run, or CUDA_VISIBLE_DEVICES hides the GPU
        cause = f"torch {torch.__version__} (built for CUDA {torch.version.cuda}) sees no GPU, but {why}"
    return DeviceError(f"--device {name}: {cause}; {TORCH_FIX}")


def resolve(name: str) -> Device:
    """`--device NAME` -> Device, checking that this machine has it; DeviceError otherwise."""
    name = name.strip().lower()
    board = identify_board()
    note = ""
    if name == "auto":
        if board.is_jetson:
            # a Jetson's GPU is CUDA too, but its energy is the module's rails, never NVML
            picked = board.profile or "jetson"
            return _resolve_jetson(picked, board, f"auto picked the Jetson board: {board.describe()} (--device {picked})")
        if torch.cuda.is_available():
            name, note = "cuda:0", f"auto picked cuda:0 ({torch.cuda.get_device_name(0)})"
        else:
            why = nvidia_gpu_present()
            if why:
                raise _torch_without_cuda(name, why)
            name, note = "cpu", "auto picked the CPU (no CUDA GPU, not a Jetson)"
    m = re.fullmatch(r"cuda(?::(\d+))?", name)
    profile = PROFILES["cuda"] if m else PROFILES.get(name)
    if profile is None:
        raise DeviceError(f"unknown device {name!r}; accepted: {accepted_names()}")
    if profile.kind == DeviceKind.CPU:
        return Device(name, profile, "cpu", cpu_identity(), note)
    if profile.kind == DeviceKind.JETSON:
        return _resolve_jetson(name, board, note)
    if board.is_jetson:
        use = board.profile or "jetson"
        raise DeviceError(
            f"--device {name}: this machine is a Jetson board, {board.describe()}, measured from its module's power rails, "
            f"never NVML: use --device {use} (or --device auto)"
        )
    index = int(m.group(1)) if m and m.group(1) else 0
    if not torch.cuda.is_available():
        why = nvidia_gpu_present()
        if why:
            raise _torch_without_cuda(name, why)
        raise DeviceError(f"--device {name}: no CUDA GPU is visible to torch here (use --device cpu, or check the driver and CUDA_VISIBLE_DEVICES)")
    if index >= torch.cuda.device_count():
        raise DeviceError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    identity = _cuda_identity(index)
    if profile.match and not re.search(profile.match, identity["name"], re.IGNORECASE):
        raise DeviceError(
            f"--device {name} expects {profile.description}, but this machine's GPU is {identity['name']!r}; "
            "baselines are per device, so use --device cuda to measure this GPU under its own name"
        )
    return Device(name, profile, f"cuda:{index}", identity, note)


def _resolve_jetson(name: str, board: Board, note: str) -> Device:
    """A Jetson profile on this board: the board must be a Jetson, the named profile's module, and
    torch must have CUDA (a CPU-only wheel would measure the board's CPU under the GPU's name)."""
    profile = PROFILES[name]
    if not board.is_jetson:
        raise DeviceError(
            f"--device {name} expects {profile.description}, but this machine is not a Jetson board (no nvidia,tegra SoC in "
            f"/proc/device-tree/compatible{'; model ' + repr(board.model) if board.model else ''}): use --device auto, cuda or cpu"
        )
    if name != "jetson" and board.profile != name:
        use = board.profile or "jetson"
        raise DeviceError(f"--device {name} expects {profile.description}, but this board is {board.describe()}: use --device {use}")
    if not torch.cuda.is_available():
        raise _torch_without_cuda(name, f"this is a Jetson board ({board.module})")
    return Device(name, profile, "cuda:0", jetson_sensors.jetson_identity(board), note)
