"""`python -m pytest_e3p doctor`: what this machine is, what the suite can read on it, and every check a
run makes before it measures, in one report a user attaches to a bug report (after Zeus's show_env,
`jtop --health` and nvidia-bug-report.sh). `--record-tree OUT.tar.gz` saves the sysfs/proc/etc files
the suite reads, laid out as E3P_SYSFS_ROOT expects, so a maintainer can replay a board in a test.

A command beside cli.py: it may import every layer. Its module level stays light (the CLI's --help
must not wait for torch); each section imports what it reads, and a section whose import or read
fails says "unavailable: why" instead of ending the report.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import glob
import importlib
import importlib.metadata
import importlib.util
import io
import json
import os
import platform
import re
import stat
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .hardware.sensors import sysfs

OK, PROBLEM, NOTE = "ok", "problem", "note"
EXIT_OK, EXIT_PROBLEM, EXIT_USAGE = 0, 1, 2
UPDATE_PERIOD_TIMEOUT_S = 1.0  # per NVML reading: a quick answer; --quick skips the measurement

# Optional libraries shown in Platform: (label, import name, distributions that install it).
LIBRARIES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("TensorRT", "tensorrt", ("tensorrt", "tensorrt-cu12", "tensorrt-cu13", "tensorrt-libs")),
    ("Torch-TensorRT", "torch_tensorrt", ("torch-tensorrt", "torch_tensorrt")),
    ("onnxruntime", "onnxruntime", ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino")),
    ("OpenVINO", "openvino", ("openvino",)),
)
# The extras of pyproject.toml and the modules each brings (jetson-stats' module is jtop).
EXTRAS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("jetson", ("jtop",), "the jtop fallback for Jetson rails the runner cannot read"),
    ("report", ("matplotlib",), "the report's plots"),
    ("onnx", ("onnxruntime", "onnx", "onnxscript"), "the onnxruntime variants"),
    ("openvino", ("openvino", "nncf"), "the OpenVINO variants"),
    ("quant", ("torchao",), "the int8 variant"),
    ("tensorrt", ("torch_tensorrt", "modelopt"), "the TensorRT variants"),
    ("prune", ("torch_pruning",), "the pruned variants"),
)


@dataclass(frozen=True)
class Check:
    """One line of the Checks section: ok, a problem with its fix, or a note (neither)."""

    status: str  # OK, PROBLEM or NOTE
    what: str
    fix: str = ""

    def lines(self) -> list[str]:
        if self.status == PROBLEM:
            return [f"problem: {self.what}"] + ([f"  fix: {self.fix}"] if self.fix else [])
        return [f"{self.status}: {self.what}"]


@dataclass
class Section:
    title: str
    lines: list[str] = field(default_factory=list)

    def add(self, key: str, value: object, indent: int = 0) -> None:
        self.lines.append(f"{'  ' * indent}{key}: {value}")


@dataclass
class Report:
    sections: list[Section]
    checks: list[Check]

    @property
    def problems(self) -> list[Check]:
        return [c for c in self.checks if c.status == PROBLEM]

    def text(self) -> str:
        out: list[str] = []
        checks = [Section("Checks", [line for c in self.checks for line in c.lines()])] if self.checks else []
        for section in [*self.sections, *checks]:
            out += [f"== {section.title} ==", *section.lines, ""]
        out.append(f"{len(self.problems)} problem(s) found" if self.problems else "no problem found")
        return "\n".join(out)

    def as_json(self) -> dict[str, Any]:
        return {
            "pytest_e3p": __version__,
            "sections": {s.title: s.lines for s in self.sections},
            "checks": [dataclasses.asdict(c) for c in self.checks],
            "problems": len(self.problems),
        }


def _guarded(title: str, build: Callable[..., None]) -> Section:
    """A section, or "unavailable: why" when building it fails: one broken backend never hides the rest."""
    section = Section(title)
    try:
        build(section)
    except Exception as exc:  # an import error, a driver that misbehaves: said, never a traceback
        from .text import error_line

        section.lines.append(f"unavailable: {error_line(exc, 200)}")
    return section


# ------------------------------------------------------------------------------------------ Platform


def library_version(module: str, distributions: Iterable[str]) -> str:
    """The installed release of an optional library, "not installed", or why it cannot be imported.
    Importing runs the library's own code, which can fail in any way (a CUDA wheel without a driver):
    every error is caught and said."""
    version = ""
    for dist in distributions:
        try:
            version = importlib.metadata.version(dist)
            break
        except importlib.metadata.PackageNotFoundError:
            continue
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        return f"{version} installed, but its import fails: {exc}" if version else "not installed"
    except Exception as exc:
        from .text import error_line

        return f"{version or 'installed'}, but its import fails: {error_line(exc, 160)}"
    return version or str(getattr(mod, "__version__", "installed (version unknown)")).split("-")[0]


def _platform(section: Section) -> None:
    from .hardware.devices import cpu_name

    section.add("OS", f"{platform.system()} ({platform.platform()})")
    section.add("kernel", platform.release())
    section.add("Python", f"{platform.python_version()} ({sys.executable})")
    section.add("pytest-e3p", __version__)
    section.add("CPU", cpu_name())
    section.add("logical CPUs", os.cpu_count())
    section.add("machine", platform.machine())
    try:
        import torch

        section.add("torch", torch.__version__)
        section.add("CUDA (torch built with)", torch.version.cuda or "none (a CPU build of torch)")
        cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        section.add("cuDNN", cudnn or "not available")
        section.add("CUDA devices visible to torch", torch.cuda.device_count() if torch.cuda.is_available() else 0)
    except Exception as exc:
        section.add("torch", f"unavailable: {exc}")
    for label, module, dists in LIBRARIES:
        version = library_version(module, dists)
        section.add(label, version)
        if module == "onnxruntime" and version != "not installed" and "import fails" not in version:
            import onnxruntime

            section.add("providers", ", ".join(onnxruntime.get_available_providers()), indent=1)
    if os.environ.get("E3P_SYSFS_ROOT"):
        section.add("E3P_SYSFS_ROOT", os.environ["E3P_SYSFS_ROOT"])


# ----------------------------------------------------------------------------------------------- Board


def _board(section: Section) -> None:
    try:
        from .hardware.board import identify_board
    except ImportError as exc:  # a build without board identification
        section.lines.append(f"unavailable: board identification is not in this build ({exc})")
        return
    board = identify_board()
    section.add("device-tree model", board.model or "none (no /proc/device-tree/model)")
    section.add("compatible", ", ".join(board.compatible) or "none")
    section.add("SoC", board.soc or "unknown")
    section.add("module", board.module or "unknown")
    section.add("part", board.part or "unknown")
    section.add("--device profile", board.profile or "none matches")
    section.add("L4T", board.l4t or "none")
    section.add("Jetson", "yes" if board.is_jetson else "no")


# ------------------------------------------------------------------------------------------------ NVML


def _torch_cuda_uuids() -> dict[str, int]:
    """{NVML UUID: CUDA index} of the GPUs torch sees (the two can number GPUs differently)."""
    try:
        import torch

        if not torch.cuda.is_available():
            return {}
        found = {}
        for i in range(torch.cuda.device_count()):
            uuid = str(getattr(torch.cuda.get_device_properties(i), "uuid", ""))
            if uuid:
                found[uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"] = i
        return found
    except Exception:
        return {}


def _nvml(section: Section, quick: bool, sample_hz: float) -> None:
    from .hardware.sensors import SensorUnavailable, measure_update_period_s
    from .hardware.sensors import nvml as nv

    try:
        nvml = nv.load_pynvml()
        count = nv.gpu_count()
    except SensorUnavailable as exc:
        section.lines.append(f"unavailable: {exc}")
        return
    ask = _asker(nvml)
    section.add("driver", nv._text(ask(nvml.nvmlSystemGetDriverVersion)))
    cuda = _torch_cuda_uuids()
    probe = getattr(nv, "probe_readings", None)
    for i in range(count):
        handle = nvml.nvmlDeviceGetHandleByIndex(i)
        identity = nv.gpu_identity(nvml, handle)
        uuid = identity["uuid"]
        cuda_index = cuda.get(uuid)
        section.add(f"GPU {i}", f"{identity['name']}, {uuid}, " + (f"cuda:{cuda_index}" if cuda_index is not None else "not visible to torch"))
        mig = ask(nvml.nvmlDeviceGetMigMode, handle, default=None)
        section.add("MIG", "not supported" if mig is None else ("enabled" if mig[0] == nvml.NVML_DEVICE_MIG_ENABLE else "disabled"), indent=1)
        section.add("clocks", f"SM {identity['sm_clock_mhz']} MHz, memory {identity['mem_clock_mhz']} MHz", indent=1)
        limit = identity["power_limit_w"]
        section.add("power limit", f"{limit:.1f} W" if limit is not None else "unknown", indent=1)
        if nv.is_integrated(nvml, handle):
            section.add("energy readings", "none here: an integrated (Tegra) GPU, measured by the board's INA3221 rails", indent=1)
            continue
        if probe is None:
            section.add("energy readings", "unavailable: this build has no nvml.probe_readings", indent=1)
            continue
        probes = probe(nvml, handle)
        used = next((r.reading for r in probes if r.ok), None)
        section.add(
            "energy from", f"{used} (the first that answers of: counter, instant, average)" if used else "none: energy unavailable on this GPU", indent=1
        )
        for reading in probes:
            if not reading.ok:
                section.add(f"{reading.reading}", f"no ({reading.detail})", indent=1)
                continue
            period = "not measured (--quick)"
            if not quick:
                period = _update_period(functools.partial(nv.open_nvml_sensor, index=i, mode=reading.reading, rate_hz=sample_hz), measure_update_period_s)
            section.add(f"{reading.reading}", f"yes ({reading.detail}); update period: {period}", indent=1)


def _asker(nvml: Any) -> Callable[..., Any]:
    def ask(fn, *args, default: Any = "unknown"):
        try:
            return fn(*args)
        except nvml.NVMLError:
            return default

    return ask


def _update_period(open_sensor: Callable[[], Any], measure: Callable[..., float | None]) -> str:
    from .hardware.sensors import SensorFault, SensorUnavailable

    try:
        with open_sensor() as sensor:
            period = measure(sensor, timeout_s=UPDATE_PERIOD_TIMEOUT_S)
    except (SensorUnavailable, SensorFault) as exc:
        return f"cannot be measured: {exc}"
    return f"{period * 1000:.1f} ms measured" if period else f"no change seen in {UPDATE_PERIOD_TIMEOUT_S:g} s (idle, or a stuck reading)"


# ---------------------------------------------------------------------------------------- Jetson rails


def _rails(section: Section) -> None:
    from .hardware.sensors import SensorFault, SensorUnavailable, jetson

    try:
        rails = jetson.find_rails()
    except SensorUnavailable as exc:
        section.lines.append(f"none: {exc}")
    else:
        module = [r.label for r in rails if not r.on_carrier]
        total = jetson.input_rail(module)
        section.add("total", f"{total} (the module's input rail)" if total else "the sum of the module's rails (no VDD_IN / POM_5V_IN)")
        for rail in rails:
            unit = "mW (in_powerN_input)" if rail._power is not None else "mV x mA (inN_input x currN_input)"
            try:
                reading = f"{rail.power_mw():.0f} mW"
            except PermissionError as exc:
                reading = f"unreadable: permission denied ({exc.filename})"
            except (SensorFault, OSError) as exc:
                reading = f"unreadable: {exc}"
            finally:
                rail.close()
            where = ", carrier board: outside the module, never counted" if rail.on_carrier else (", the total" if rail.label == total else "")
            section.add(rail.label, f"{reading}; unit {unit}{where}", indent=1)
    installed = library_version("jtop", ("jetson-stats",))
    section.add("jetson-stats", installed)
    section.add("jtop.service", "active" if jetson.jtop_service_active() else "not active (or no systemd)")


# ------------------------------------------------------------------------------------------------ RAPL


def _rapl(section: Section) -> None:
    from .hardware.sensors import SensorFault, SensorUnavailable, rapl

    base = sysfs.path(rapl.POWERCAP)
    try:
        counted = {z.energy_file for z in rapl.find_zones()}
    except SensorUnavailable as exc:
        counted = set()
        section.lines.append(f"none counted: {exc}")
    if not base.is_dir():
        return
    for zone in sorted(base.glob("intel-rapl:*")):
        name = _text_or(zone / "name", "?")
        try:
            value = f"readable ({sysfs.read_number(zone / 'energy_uj'):.0f} uJ)"
        except PermissionError:
            value = "permission denied (root only on current kernels)"
        except (SensorFault, OSError) as exc:
            value = f"unreadable: {exc}"
        use = "counted" if zone / "energy_uj" in counted else "not counted (inside a package zone, or psys)"
        section.add(f"{zone.name} {name}", f"{value}; {use}", indent=1)


def _text_or(p: Path, default: str = "") -> str:
    try:
        return sysfs.read_text(p)
    except OSError:
        return default


# --------------------------------------------------------------------------------------------- Thermal


def _thermal(section: Section) -> None:
    from .hardware.thermal import describe_lines

    section.lines += describe_lines()


# ---------------------------------------------------------------------------------------------- Checks


def _device_checks(name: str, sample_hz: float) -> list[Check]:
    """What the run does with --e3p-device NAME before its first case: resolve the device, open its
    sensor, probe its memory accounting, find its thermal sources (run/session.py E3PSession.start)."""
    from .hardware.devices import DeviceError, resolve

    try:
        device = resolve(name)
    except DeviceError as exc:
        what, fix = split_fix(str(exc))
        what = what if what.startswith("--device") else f"--e3p-device {name}: {what}"
        # the run stops here, but whether the board's rails could be read is still worth knowing
        return [Check(PROBLEM, what, fix or _device_fix(name)), *(_rails_check(sample_hz) if name == "auto" else [])]
    except Exception as exc:  # torch or a driver failing underneath
        from .text import error_line

        return [Check(PROBLEM, f"--e3p-device {name}: resolving it failed: {error_line(exc, 200)}", "report this output in an issue")]
    picked = f"; {device.note}" if device.note else ""
    checks = [Check(OK, f"--e3p-device {name} resolves to {device.name} on {device.torch_device}{picked}")]
    checks.append(_sensor_check(device, name, sample_hz))
    checks.append(_memory_check(device, name))
    checks.append(_thermal_check(device, name))
    return checks


# Where a DeviceError's own advice starts: "...: use --device orin-nx", "...; install NVIDIA's CUDA torch
# ...", "... (use --device cpu, or ...)", "...; baselines are per device, so use --device cuda ..."
_ADVICE = re.compile(r"(?:; |: | \()((?:baselines are per device, so )?(?:use|install) .*?)\)?$")


def split_fix(message: str) -> tuple[str, str]:
    """(what is wrong, what to do) of a message that ends with its advice, or (message, "")."""
    m = _ADVICE.search(message)
    if m is None:
        return message, ""
    return message[: m.start()], m.group(1)


def _device_fix(name: str) -> str:
    if name == "auto":
        return "name the device with --e3p-device (cpu, cuda, or a board profile)"
    return "use --e3p-device auto to see what this machine is, or the profile that matches it"


def _sensor_check(device: Any, name: str, sample_hz: float) -> Check:
    sensor, why = device.open_sensor(rate_hz=sample_hz)
    try:
        if sensor is None:
            return Check(PROBLEM, f"--e3p-device {name}: no power sensor: {why}", _sensor_fix(why, device.kind))
        info = sensor.info
        if why:  # the CPU estimate
            return Check(PROBLEM, f"--e3p-device {name}: energy will be an estimate, not measured: {why}", _sensor_fix(why, device.kind))
        return Check(OK, f"--e3p-device {name}: power sensor {info.name} opens (boundary: {info.boundary})")
    finally:
        if sensor is not None:
            sensor.close()


JETSON_PERMISSION_FIX = "make the INA3221 files readable by this user (a udev rule giving a group read access) or run the suite as root"


def _sensor_fix(why: str, kind: str) -> str:
    """What to do about a sensor that does not open, by device kind and cause."""
    from .hardware.sensors.rapl import PERMISSION_HINT

    low = why.lower()
    if kind == "cpu":
        if "permission" in low:
            return PERMISSION_HINT
        return "measure on a machine with RAPL (Intel, or AMD Zen with a recent kernel), or accept the labelled estimate"
    if kind == "jetson":
        if "permission" in low:
            return JETSON_PERMISSION_FIX
        return "check the Jetson rails section above: the rails must be labelled INA3221 channels under /sys/bus/i2c/drivers"
    if "mig" in low:
        return "disable MIG on this GPU (sudo nvidia-smi -i <index> -mig 0) or measure on a GPU without it"
    if "nvidia-ml-py" in low:
        return "pip install nvidia-ml-py"
    return "check the NVML section above: it lists each energy reading of the GPU and NVML's answer"


def _rails_check(sample_hz: float) -> list[Check]:
    """On a Jetson board, whether its INA3221 rails open, whatever torch can do."""
    from .hardware.board import identify_board
    from .hardware.sensors import SensorUnavailable
    from .hardware.sensors.jetson import open_jetson_sensor

    if not identify_board().is_jetson:
        return []
    try:
        sensor = open_jetson_sensor(sample_hz)
    except SensorUnavailable as exc:
        return [Check(PROBLEM, f"Jetson rails: {exc}", _sensor_fix(str(exc), "jetson"))]
    sensor.close()
    return [Check(OK, f"Jetson rails: {sensor.info.name} opens (boundary: {sensor.info.boundary})")]


def _memory_check(device: Any, name: str) -> Check:
    from .measure.memory import MemoryUnavailable, PeakMemory

    try:
        memory = PeakMemory(device.kind, device.torch_device)
        memory.reset()
        peak = memory.read()
    except (MemoryUnavailable, OSError) as exc:
        return Check(PROBLEM, f"--e3p-device {name}: peak memory unavailable: {exc}", "run on Linux with /proc mounted; cases will record no peak memory")
    return Check(OK, f"--e3p-device {name}: peak memory readable ({peak.method})")


def _thermal_check(device: Any, name: str) -> Check:
    from .hardware.thermal import find_sources

    kind = "cpu" if device.torch_device == "cpu" else device.kind
    sources = find_sources(kind, device.cuda_index, device.identity.get("uuid"))
    try:
        if sources.note:
            fix = "on hardware, check that /sys/class/thermal is mounted and readable by this user (a VM has none: rounds are then not judged for throttling)"
            return Check(PROBLEM, f"--e3p-device {name}: thermal: {sources.note}", fix)
        count = len(sources.files()) + (1 if sources.nvml is not None else 0)
        return Check(OK, f"--e3p-device {name}: {count} thermal source(s) watch its rounds")
    finally:
        sources.close()


def _cuda_check() -> list[Check]:
    """NVML sees a GPU but torch does not: a CPU wheel of torch, or CUDA_VISIBLE_DEVICES hiding it."""
    from .hardware.sensors import SensorUnavailable
    from .hardware.sensors import nvml as nv

    try:
        count = nv.gpu_count()
    except SensorUnavailable:
        return []
    import torch

    if torch.cuda.is_available():
        return [Check(OK, f"torch sees {torch.cuda.device_count()} of NVML's {count} GPU(s)")]
    fix = "install a CUDA build of torch (https://pytorch.org/get-started/locally/), or unset CUDA_VISIBLE_DEVICES"
    return [Check(PROBLEM, f"NVML sees {count} GPU(s) but torch has no CUDA (torch {torch.__version__}, CUDA {torch.version.cuda})", fix)]


def _path_checks(args: argparse.Namespace) -> list[Check]:
    import pytest

    from .config import check_writable, check_writable_folder

    checks = []
    for flag, value, folder in (
        ("--e3p-results", args.results, False),
        ("--e3p-save-baseline", args.save_baseline, False),
        ("--e3p-report", args.report, True),
        ("--e3p-history", args.history, True),
    ):
        if value is None:
            continue
        try:
            (check_writable_folder if folder else check_writable)(Path(value), flag)
        except pytest.UsageError as exc:
            checks.append(Check(PROBLEM, str(exc), f"give {flag} a path this user can write"))
        else:
            checks.append(Check(OK, f"{flag}={value} can be written"))
    return checks


def _extras_checks() -> list[Check]:
    checks = []
    for extra, modules, what in EXTRAS:
        # found, not imported: importing nncf or torchao takes seconds; Platform imports the runtimes
        missing = [m for m in modules if _find_spec(m) is None]
        if missing:
            checks.append(Check(NOTE, f'extra {extra} not installed ({", ".join(missing)} missing): unavailable: {what}; pip install "pytest-e3p[{extra}]"'))
        else:
            checks.append(Check(OK, f"extra {extra} installed ({', '.join(modules)})"))
    return checks


def _find_spec(module: str) -> object:
    try:
        return importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None


def _checks(args: argparse.Namespace) -> list[Check]:
    checks: list[Check] = []
    for build in (
        lambda: _device_checks("auto", args.sample_hz),
        lambda: _device_checks(args.device, args.sample_hz) if args.device and args.device != "auto" else [],
        _cuda_check,
        lambda: _path_checks(args),
        _extras_checks,
    ):
        try:
            checks += build()
        except Exception as exc:  # a check that crashes is itself a problem to report, not a traceback
            from .text import error_line

            checks.append(Check(PROBLEM, f"a check failed to run: {error_line(exc, 200)}", "report this output in an issue"))
    return checks


# --section NAME: (title, builder); "checks" is the Checks section
SECTIONS: dict[str, tuple[str, Callable[[Section, argparse.Namespace], None]]] = {
    "platform": ("Platform", lambda s, a: _platform(s)),
    "board": ("Board identification", lambda s, a: _board(s)),
    "nvml": ("NVML", lambda s, a: _nvml(s, a.quick, a.sample_hz)),
    "rails": ("Jetson rails", lambda s, a: _rails(s)),
    "rapl": ("RAPL", lambda s, a: _rapl(s)),
    "thermal": ("Thermal zones", lambda s, a: _thermal(s)),
}


def _bound(build: Callable[[Section, argparse.Namespace], None], args: argparse.Namespace) -> Callable[[Section], None]:
    return lambda section: build(section, args)


def build_report(args: argparse.Namespace) -> Report:
    """The sections asked for (all by default) and the checks (unless other sections alone were asked for)."""
    wanted = args.section or [*SECTIONS, "checks"]
    sections = [_guarded(title, _bound(build, args)) for key, (title, build) in SECTIONS.items() if key in wanted]
    return Report(sections, _checks(args) if "checks" in wanted else [])


# ------------------------------------------------------------------------------------------ record-tree

# _suite_files lists what the suite reads, relative to the root, each with the glob its reader uses
# (the module named beside it), so the archive holds what a replay needs and nothing else.
MAX_ATTRIBUTE_BYTES = 64 * 1024  # a sysfs attribute is at most a page; device-tree strings are short


def _suite_files() -> Iterable[tuple[str, bool]]:
    """(path relative to the root, whether the reader needs it only as a folder), in reading order."""
    from .hardware import thermal

    root = sysfs.root()

    def under(pattern: str) -> list[str]:
        return sorted(os.path.relpath(p, root) for p in glob.glob(str(root / pattern)))

    # sensors/rapl.py find_zones: the class folder's zones (sub-zones appear there too)
    yield "sys/class/powercap", True
    for zone in under("sys/class/powercap/intel-rapl:*"):
        for name in ("name", "energy_uj", "max_energy_range_uj"):
            yield f"{zone}/{name}", False
    # sensors/jetson.py: INA3221 on the iio layout (L4T 32) and the hwmon layout (L4T 34+)
    for dev in under("sys/bus/i2c/drivers/ina3221x/*/iio:device*"):
        for f in under(f"{dev}/rail_name_*") + under(f"{dev}/in_power*_input"):
            yield f, False
    for dev in under("sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*"):
        for f in under(f"{dev}/in*_label") + under(f"{dev}/in*_input") + under(f"{dev}/curr*_input"):
            yield f, False
    # sensors/jetson.py jetson_identity, is_jetson; hardware/board.py
    for f in ("proc/device-tree/model", "proc/device-tree/compatible", "etc/nv_tegra_release"):
        yield f, False
    # thermal.py _find_zones (devices.py reads thermal_zone0/temp too)
    for zone in under("sys/class/thermal/thermal_zone*"):
        for f in [f"{zone}/type", f"{zone}/temp"] + under(f"{zone}/trip_point_*_temp") + under(f"{zone}/trip_point_*_type"):
            yield f, False
    # thermal.py _find_hwmon: every chip's name, the temperatures of the CPU chips only
    for hwmon in under("sys/class/hwmon/hwmon*"):
        base = hwmon if (root / hwmon / "name").exists() else f"{hwmon}/device"
        yield f"{base}/name", False
        if _text_or(root / base / "name") in thermal.HWMON_CPU_NAMES:
            yield from ((f, False) for f in under(f"{base}/temp*_input") + under(f"{base}/temp*_label") + under(f"{base}/temp*_crit"))
    # thermal.py _cpus, _find_counters, _find_cpufreq
    for cpu in under("sys/devices/system/cpu/cpu*"):
        if not re.fullmatch(r"cpu\d+", Path(cpu).name):
            continue
        yield cpu, True
        for f in ("thermal_throttle/core_throttle_count", "thermal_throttle/package_throttle_count"):
            yield f"{cpu}/{f}", False
        if (root / cpu / "thermal_throttle/package_throttle_count").exists():  # the package is read only then
            yield f"{cpu}/topology/physical_package_id", False
        for f in ("scaling_cur_freq", "scaling_max_freq", "scaling_min_freq", "scaling_driver", "scaling_governor", "related_cpus", "affected_cpus"):
            yield f"{cpu}/cpufreq/{f}", False
    # thermal.py _find_devfreq: every device's name check, the clocks of the GPU
    for dev in under("sys/class/devfreq/*"):
        yield f"{dev}/device/of_node/name", False
        yield f"{dev}/cur_freq", False
        if thermal._is_gpu_devfreq(root / dev):
            for f in ("max_freq", "min_freq", "governor"):
                yield f"{dev}/{f}", False


@dataclass
class _Recorder:
    """Builds the archive: regular files at their real place, the symlinks on the way as symlinks
    relative to themselves, so the suite's globs and its realpath() dedup (cpufreq policies) behave
    as on the machine. A link whose target lies outside the recorded root (possible only under an
    E3P_SYSFS_ROOT) is replaced by what it points at, at the path the suite reads."""

    tar: tarfile.TarFile
    root: str
    manifest: list[str] = field(default_factory=list)
    done: set[str] = field(default_factory=set)

    def _member(self, name: str, kind: bytes, mode: int, data: bytes = b"", linkname: str = "") -> bool:
        """Add a member once; whether it was new."""
        if name in self.done:
            return False
        self.done.add(name)
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime, info.linkname = kind, mode, int(time.time()), linkname
        info.size = len(data)
        self.tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
        return True

    def _folder(self, arc: str) -> None:
        parts = Path(arc).parts
        for i in range(1, len(parts) + 1):
            self._member("/".join(parts[:i]), tarfile.DIRTYPE, 0o755)

    def _walk(self, rel: str) -> tuple[str, str] | None:
        """(archive name, real path) of `rel`, recording the symlinks met on the way; None when a part
        is missing."""
        arc_parts: list[str] = []
        real = self.root
        flattened = False  # past a link out of the root, the archive's path is no longer the real one
        for part in Path(rel).parts:
            step = os.path.join(real, part)
            if os.path.islink(step):
                target = os.path.realpath(step)
                if not os.path.lexists(target):
                    return None
                if not flattened and os.path.commonpath([target, self.root]) == self.root:
                    link_arc = "/".join(arc_parts + [part])
                    self._folder("/".join(arc_parts))
                    linkname = os.path.relpath(target, real)
                    if self._member(link_arc, tarfile.SYMTYPE, 0o777, linkname=linkname):
                        self.manifest.append(f"link {link_arc} -> {linkname}")
                    real = target
                    arc_parts = list(Path(os.path.relpath(target, self.root)).parts)
                    continue
                real, flattened = target, True  # outside the root: its contents at the path read
                arc_parts.append(part)
                continue
            if not os.path.lexists(step):
                return None
            real = step
            arc_parts.append(part)
        return "/".join(arc_parts), real

    def record(self, rel: str, folder_only: bool) -> None:
        found = self._walk(rel)
        if found is None:
            return  # the suite finds it missing too: nothing to record
        arc, real = found
        try:
            st = os.stat(real)
        except OSError as exc:
            self.manifest.append(f"unreadable {arc}: {exc.strerror or exc}")
            return
        if stat.S_ISDIR(st.st_mode):
            self._folder(arc)
            return
        if folder_only:
            return
        if not stat.S_ISREG(st.st_mode):  # a FIFO or device node: reading it could block or change it
            self.manifest.append(f"skipped {arc}: not a regular file, never read")
            return
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK)
            try:
                data = os.read(fd, MAX_ATTRIBUTE_BYTES + 1)
            finally:
                os.close(fd)
        except OSError as exc:
            self.manifest.append(f"unreadable {arc}: {exc.strerror or exc}")
            return
        if len(data) > MAX_ATTRIBUTE_BYTES:
            self.manifest.append(f"truncated {arc}: longer than {MAX_ATTRIBUTE_BYTES} bytes")
            data = data[:MAX_ATTRIBUTE_BYTES]
        self._folder(str(Path(arc).parent))
        if self._member(arc, tarfile.REGTYPE, 0o644, data):  # writable: a fixture test may rewrite a counter
            self.manifest.append(f"file {arc}")


def record_tree(out: Path) -> tuple[int, list[str]]:
    """Write the files the suite reads under sysfs.root() into out (a .tar.gz laid out as
    E3P_SYSFS_ROOT expects) with a MANIFEST; returns (files recorded, the MANIFEST's problem lines).
    Written to a temporary file first, so a failed run leaves no half archive."""
    root = os.path.realpath(sysfs.root())
    fd, tmp = tempfile.mkstemp(prefix=".e3p-tree-", suffix=".tar.gz", dir=out.parent)
    os.close(fd)
    try:
        with tarfile.open(tmp, "w:gz", format=tarfile.PAX_FORMAT) as tar:
            recorder = _Recorder(tar, root)
            for rel, folder_only in _suite_files():
                recorder.record(rel, folder_only)
            header = [
                f"# pytest-e3p {__version__} doctor --record-tree, {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}",
                f"# root: {sysfs.root()}; kernel {platform.release()}; extract with: mkdir tree && tar -xzf {out.name} -C tree",
                "# then E3P_SYSFS_ROOT=tree python -m pytest_e3p sensors reads this machine's files",
            ]
            text = "\n".join(header + recorder.manifest) + "\n"
            recorder._member("MANIFEST", tarfile.REGTYPE, 0o444, text.encode())
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        os.unlink(tmp)
        raise
    files = sum(1 for line in recorder.manifest if line.startswith("file "))
    return files, [line for line in recorder.manifest if not line.startswith(("file ", "link "))]


# ------------------------------------------------------------------------------------------------- CLI


def _doctor(args: argparse.Namespace) -> int:
    if args.device:
        from .hardware.devices import PROFILES, accepted_names

        if args.device != "auto" and args.device not in PROFILES and not re.fullmatch(r"cuda(:\d+)?", args.device):
            print(f"error: --device {args.device}: unknown device; accepted: {accepted_names()}", file=sys.stderr)
            return EXIT_USAGE
    if args.record_tree is not None:
        return _record(Path(args.record_tree))
    report = build_report(args)
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        print(report.text())
    return EXIT_PROBLEM if report.problems else EXIT_OK


def _record(out: Path) -> int:
    if not out.name.endswith((".tar.gz", ".tgz")):
        print(f"error: --record-tree {out}: name the archive NAME.tar.gz", file=sys.stderr)
        return EXIT_USAGE
    if not out.parent.is_dir():
        print(f"error: --record-tree {out}: the folder {out.parent} does not exist", file=sys.stderr)
        return EXIT_USAGE
    try:
        files, problems = record_tree(out)
    except OSError as exc:
        print(f"error: --record-tree {out}: cannot be written ({exc.strerror or exc})", file=sys.stderr)
        return EXIT_USAGE
    print(f"recorded {files} files under {sysfs.root()} into {out}")
    for line in problems:
        print(f"  {line}")
    print("attach it to an issue; a maintainer replays it with: tar -xzf ... -C tree && E3P_SYSFS_ROOT=tree")
    return EXIT_OK


def add_cli(sub: Any) -> None:
    from .config import positive_float

    def rate(text: str) -> float:
        try:
            return positive_float(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None

    p = sub.add_parser(
        "doctor",
        help="what this machine is and what the suite can read on it, with every pre-run check; attach it to a bug report",
        description="Print the platform, board, NVML GPUs, Jetson rails, RAPL domains, thermal zones and every check a "
        "run makes before measuring (ok / problem / fix). Exit 0: no problem; 1: a problem was found; 2: a usage error.",
    )
    p.add_argument("--device", default=None, help="also check this --e3p-device as a run would (auto is always checked)")
    p.add_argument("--quick", action="store_true", help="skip measuring the NVML readings' update periods (about 1 s each)")
    p.add_argument("--json", action="store_true", help="the same report as JSON")
    p.add_argument(
        "--section",
        action="append",
        choices=[*SECTIONS, "checks"],
        help="print only this section (repeat for several); default: all, and the checks",
    )
    p.add_argument("--sample-hz", type=rate, default=100.0, help="sampling rate of the sampling sensors")
    p.add_argument("--results", default=None, help="check that this --e3p-results file can be written")
    p.add_argument("--save-baseline", default=None, help="check that this --e3p-save-baseline file can be written")
    p.add_argument("--report", default=None, help="check that this --e3p-report folder can be written")
    p.add_argument("--history", default=None, help="check that this --e3p-history folder can be written")
    p.add_argument(
        "--record-tree",
        metavar="OUT.tar.gz",
        default=None,
        help="save the sysfs/proc/etc files the suite reads into an archive laid out for E3P_SYSFS_ROOT, and print nothing else",
    )
    p.set_defaults(run=_doctor)
