"""--device resolution on real board trees (tests/fakes/boards.py names each string's source), the
GPU temperature of the right GPU, the thermal zone of the measured device, and torch without CUDA."""

import json

import pytest
import torch
from fakes.boards import BOARDS, RASPBERRY_PI_4, write_board
from fakes.files import write
from fakes.nvml import FakeNvml
from fakes.thermal_zones import zone

from pytest_e3p.hardware import devices
from pytest_e3p.hardware.kinds import DeviceKind
from pytest_e3p.hardware.sensors import SensorUnavailable
from pytest_e3p.hardware.sensors import nvml as nvml_sensors

JETSON_PROFILES = [name for name, p in devices.PROFILES.items() if p.kind == DeviceKind.JETSON and name != "jetson"]


def _no_nvml():
    raise SensorUnavailable("NVML cannot start: no NVIDIA driver on this machine")


@pytest.fixture
def cuda(monkeypatch):
    """torch with CUDA, as NVIDIA's JetPack wheel on a board; the GPU is never touched here."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_: pytest.fail("a Jetson must not be resolved as a discrete CUDA GPU"))
    monkeypatch.setattr(nvml_sensors, "load_pynvml", _no_nvml)


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(nvml_sensors, "load_pynvml", _no_nvml)


@pytest.mark.parametrize("key", sorted(BOARDS))
def test_auto_on_a_jetson_picks_the_boards_profile_never_cuda(sysfs_root, cuda, key):
    board = write_board(sysfs_root, BOARDS[key])
    device = devices.resolve("auto")
    assert device.name == (board.profile or "jetson")
    assert device.kind == DeviceKind.JETSON and device.torch_device == "cuda:0"
    assert board.module in device.note
    ident = device.identity
    assert (ident["model"], ident["l4t"], ident["power_mode"]) == (board.model, board.l4t, "unknown")
    assert (ident["part"], ident["soc"], ident["compatible"]) == (board.part, board.soc, list(board.compatible))
    json.dumps(ident)  # results store it


@pytest.mark.parametrize("key", sorted(BOARDS))
@pytest.mark.parametrize("profile", JETSON_PROFILES)
def test_a_named_jetson_profile_checks_the_board_by_its_module(sysfs_root, cuda, key, profile):
    board = write_board(sysfs_root, BOARDS[key])
    if board.profile == profile:
        device = devices.resolve(profile)
        assert device.name == profile and device.identity["part"] == board.part
        return
    with pytest.raises(devices.DeviceError) as err:
        devices.resolve(profile)
    message = str(err.value)
    assert board.module in message and board.model in message
    assert message.endswith(f"use --device {board.profile or 'jetson'}")


def test_the_generic_jetson_profile_measures_a_board_without_a_named_one(sysfs_root, cuda):
    write_board(sysfs_root, BOARDS["nano"])
    device = devices.resolve("jetson")
    assert device.kind == DeviceKind.JETSON and device.identity["part"] == "p3448-0000"


@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_cuda_on_a_jetson_is_an_error_naming_the_boards_profile(sysfs_root, cuda, name):
    write_board(sysfs_root, BOARDS["orin-nano"])
    with pytest.raises(devices.DeviceError, match=r"Jetson board, Jetson Orin Nano 8GB .*never NVML: use --device orin-nano"):
        devices.resolve(name)


@pytest.mark.parametrize("tree", [None, RASPBERRY_PI_4], ids=["x86-no-device-tree", "raspberry-pi-4"])
def test_a_jetson_profile_on_another_machine_says_it_is_not_a_jetson(sysfs_root, cuda, tree):
    if tree:
        write_board(sysfs_root, tree)
    for name in ["tx2", "jetson"]:
        with pytest.raises(devices.DeviceError, match="not a Jetson board"):
            devices.resolve(name)


def test_a_raspberry_pi_resolves_auto_to_its_cpu(sysfs_root, no_cuda):
    write_board(sysfs_root, RASPBERRY_PI_4)
    assert devices.resolve("auto").name == "cpu"


# -- torch without CUDA ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["auto", "tx2", "jetson"])
def test_a_cpu_only_torch_on_a_jetson_stops_with_the_fix(sysfs_root, no_cuda, monkeypatch, name):
    # a plain pip install on a board replaces JetPack's CUDA torch with the CPU-only aarch64 wheel
    monkeypatch.setattr(torch.version, "cuda", None)
    write_board(sysfs_root, BOARDS["tx2"])
    with pytest.raises(devices.DeviceError) as err:
        devices.resolve(name)
    message = str(err.value)
    assert "\n" not in message and "CPU-only build" in message and "Jetson TX2" in message
    assert "--system-site-packages" in message and "pip install --no-deps pytest-e3p" in message and "--device cpu" in message


def test_a_cpu_only_torch_on_a_jetson_may_still_measure_its_cpu(sysfs_root, no_cuda):
    write_board(sysfs_root, BOARDS["tx2"])
    device = devices.resolve("cpu")
    assert device.kind == DeviceKind.CPU and device.torch_device == "cpu"


@pytest.mark.parametrize("name", ["auto", "cuda", "cuda:1"])
def test_torch_without_cuda_beside_an_nvidia_driver_stops_with_the_fix(sysfs_root, no_cuda, monkeypatch, name):
    monkeypatch.setattr(torch.version, "cuda", "12.6")  # a CUDA build that cannot use this driver
    # the driver's version file (NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14 ...)
    write(sysfs_root / "proc/driver/nvidia/version", "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 01:44:30 UTC 2024")
    with pytest.raises(devices.DeviceError, match=r"sees no GPU, but the NVIDIA driver is loaded .*pip install --no-deps pytest-e3p"):
        devices.resolve(name)
    assert devices.resolve("cpu").kind == DeviceKind.CPU


def test_torch_without_cuda_where_nvml_sees_a_gpu_stops_with_the_fix(sysfs_root, no_cuda, monkeypatch):
    monkeypatch.setattr(nvml_sensors, "load_pynvml", lambda: FakeNvml(count=2))
    with pytest.raises(devices.DeviceError, match=r"NVML sees 2 NVIDIA GPU\(s\)"):
        devices.resolve("auto")


def test_auto_without_any_nvidia_hardware_is_the_cpu(sysfs_root, no_cuda):
    device = devices.resolve("auto")
    assert device.name == "cpu" and "not a Jetson" in device.note


# -- temperatures ----------------------------------------------------------------------------


class TwoGpus(FakeNvml):
    """NVML numbers GPUs by PCI bus id, CUDA fastest first (CUDA_DEVICE_ORDER=FASTEST_FIRST): CUDA's
    device 0 is NVML's GPU 1 here (nvml.h: nvmlDeviceGetHandleByIndex's order "may not correlate"
    with CUDA's; handles by UUID are the stable ones)."""

    TEMPERATURE_C = {"gpu0": 40, "GPU-aaaa": 40, "gpu1": 81, "GPU-bbbb": 81}

    def __init__(self):
        super().__init__(count=2)

    def nvmlDeviceGetTemperature(self, h, kind):
        return self.TEMPERATURE_C[h]


def test_gpu_temperature_is_read_from_the_gpu_cuda_runs_on(monkeypatch):
    monkeypatch.setattr(nvml_sensors, "load_pynvml", TwoGpus)
    device = devices.Device("cuda:0", devices.PROFILES["cuda"], "cuda:0", {"uuid": "GPU-bbbb"})
    assert device.temperature_c() == 81.0


def nano_zones(root):
    """The Jetson Nano's zones in the order L4T 32 registers them, AO-therm first (tegrastats on a
    Nano prints them in that order: AO@ CPU@ GPU@ PLL@ PMIC@ thermal@)."""
    for n, (zone_type, mc) in enumerate(
        [("AO-therm", 31_500), ("CPU-therm", 47_000), ("GPU-therm", 44_500), ("PLL-therm", 42_000), ("PMIC-Die", 100_000), ("thermal-fan-est", 45_200)]
    ):
        zone(root, n, zone_type, mc, [(97_000, "passive")])


@pytest.mark.parametrize("kind, expected_c", [("cpu", 47.0), ("jetson", 44.5)])
def test_the_temperature_is_the_measured_devices_zone_not_zone_0(sysfs_root, kind, expected_c):
    nano_zones(sysfs_root)
    write_board(sysfs_root, BOARDS["nano"])
    device = devices.Device(kind, devices.PROFILES[kind], "cpu")
    assert device.temperature_c() == expected_c


def test_no_zone_of_the_measured_device_is_no_temperature(sysfs_root):
    zone(sysfs_root, 0, "AO-therm", 31_500)
    assert devices.Device("jetson", devices.PROFILES["jetson"], "cpu").temperature_c() is None
