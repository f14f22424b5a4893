"""Thermal monitor against fake sysfs trees and a fake pynvml.

The trees come from fakes.thermal_zones, whose docstring names each kernel layout they follow.
"""

import os
import time

import pytest
from fakes.clock import ScriptedClock
from fakes.files import link, rewrite, write
from fakes.nvml import FakeNvml, NVMLError
from fakes.thermal_zones import arm_board_tree, cpufreq, intel_laptop_tree, orin_tree, zone

from pytest_e3p.hardware import thermal
from pytest_e3p.hardware.sensors import SensorUnavailable
from pytest_e3p.hardware.sensors import nvml as nv
from pytest_e3p.hardware.thermal import TripPoint
from pytest_e3p.measure import thermal as round_monitor
from pytest_e3p.measure.thermal import RoundThermal, open_thermal

# ---------------------------------------------------------------------------------------- trip points


def test_a_zone_past_its_passive_trip_throttles_that_round_and_not_the_next(sysfs_root):
    temp, _ = arm_board_tree(sysfs_root)
    with open_thermal("cpu", clock_settle_s=0.0) as monitor:
        assert monitor.available and monitor.note == ""
        monitor.begin_round()
        rewrite(temp, 86_500)  # the chip heats past the 85 C passive trip during the round
        hot = monitor.end_round()
        rewrite(temp, 72_000)  # cooled down between rounds
        monitor.begin_round()
        cool = monitor.end_round()
    assert hot.throttled and hot.reasons == ("cpu-thermal 86.5 C reached passive trip 85.0 C",)
    assert hot.max_temperature_c == 86.5 and hot.samples == 2 and hot.available
    assert not cool.throttled and cool.reasons == () and cool.max_temperature_c == 72.0


def test_the_highest_trip_reached_is_named_and_the_gpu_zone_of_a_cpu_run_is_ignored(sysfs_root):
    temp, _ = arm_board_tree(sysfs_root)
    gpu_zone = sysfs_root / "sys/devices/virtual/thermal/thermal_zone1/temp"
    monitor = open_thermal("cpu", clock_settle_s=0.0)
    monitor.begin_round()
    rewrite(temp, 96_000)
    rewrite(gpu_zone, 110_000)  # not the measured device's zone on a CPU run
    result = monitor.end_round()
    monitor.close()
    assert result.reasons == ("cpu-thermal 96.0 C reached hot trip 95.0 C",)
    assert result.max_temperature_c == 96.0


def test_unset_trip_points_of_x86_pkg_temp_are_ignored(sysfs_root):
    intel_laptop_tree(sysfs_root)
    monitor = open_thermal("cpu")
    monitor.begin_round()
    result = monitor.end_round()
    monitor.close()
    # x86_pkg_temp's trips read 0 (unset): 52 C is not "past" them. acpitz is not used beside better zones.
    assert not result.throttled and result.max_temperature_c == 52.0
    names = [s.name for s in monitor.describe()]
    assert "x86_pkg_temp" in names and "coretemp Core 1" in names and "acpitz" not in names


def test_coretemp_reaching_tjmax_is_throttling(sysfs_root):
    _, hw, _ = intel_laptop_tree(sysfs_root)
    monitor = open_thermal("cpu")
    monitor.begin_round()
    rewrite(hw / "temp2_input", 100_000)
    result = monitor.end_round()
    monitor.close()
    assert result.throttled and result.reasons == ("coretemp Core 0 100.0 C reached crit trip 100.0 C",)


def test_acpitz_is_the_last_resort(sysfs_root):
    zone(sysfs_root, 0, "acpitz", 47_000, [(90_000, "passive"), (119_000, "critical")])
    zone(sysfs_root, 1, "iwlwifi_1", 38_000)
    monitor = open_thermal("cpu")
    monitor.begin_round()
    result = monitor.end_round()
    monitor.close()
    assert result.max_temperature_c == 47.0 and [s.name for s in monitor.describe()] == ["acpitz"]


# ------------------------------------------------------------------------------ counters and clocks


def test_a_throttle_count_that_grows_throttles_the_round(sysfs_root):
    _, _, counters = intel_laptop_tree(sysfs_root)
    monitor = open_thermal("cpu")
    monitor.begin_round()
    quiet = monitor.end_round()
    monitor.begin_round()
    rewrite(counters[1] / "core_throttle_count", 3)
    cores = monitor.end_round()
    monitor.begin_round()
    # the package counter grows by 2; every CPU of the package shows it, it is counted once
    rewrite(counters[0] / "package_throttle_count", 9)
    rewrite(counters[1] / "package_throttle_count", 9)
    package = monitor.end_round()
    monitor.close()
    assert not quiet.throttled  # counts since boot (5 and 7) are history, not this round
    assert cores.throttled and cores.reasons == ("throttle count +3",)
    assert package.reasons == ("throttle count +2",)


def test_a_cpufreq_clock_that_drops_under_load_throttles_a_board_without_turbo(sysfs_root):
    _, cur = arm_board_tree(sysfs_root)
    monitor = open_thermal("cpu", clock_settle_s=0.0)
    monitor.begin_round()
    full = monitor.end_round()
    monitor.begin_round()
    rewrite(cur, 1_065_000)  # 71% of 1.5 GHz
    dropped = monitor.end_round()
    monitor.close()
    assert not full.throttled and full.min_clock_ratio == 1.0
    assert dropped.throttled and dropped.reasons == ("clock 71% of max",)
    assert dropped.min_clock_ratio == pytest.approx(0.71)


def test_a_thermal_cap_that_lowers_scaling_max_freq_still_shows(sysfs_root):
    _, cur = arm_board_tree(sysfs_root)
    monitor = open_thermal("cpu", clock_settle_s=0.0)
    monitor.begin_round()
    # cpufreq cooling caps the policy: scaling_max_freq falls with the clock
    rewrite(sysfs_root / "sys/devices/system/cpu/cpufreq/policy0/scaling_max_freq", 1_200_000)
    rewrite(cur, 1_200_000)
    result = monitor.end_round()
    monitor.close()
    assert result.reasons == ("clock 80% of max",)


def test_an_intel_turbo_clock_below_max_is_reported_not_judged(sysfs_root):
    intel_laptop_tree(sysfs_root)
    monitor = open_thermal("cpu", clock_settle_s=0.0)
    monitor.begin_round()
    result = monitor.end_round()
    monitor.close()
    # 2.4 of 4.7 GHz: intel_pstate's max is a single-core turbo bin, the counters decide instead
    assert result.min_clock_ratio == pytest.approx(2.4 / 4.7)
    assert not result.throttled


def test_a_governor_that_pins_the_clock_is_not_throttling(sysfs_root):
    _, cur = arm_board_tree(sysfs_root, governor="powersave")
    monitor = open_thermal("cpu", clock_settle_s=0.0)
    monitor.begin_round()
    rewrite(cur, 600_000)
    result = monitor.end_round()
    monitor.close()
    assert result.min_clock_ratio == pytest.approx(0.4) and not result.throttled


def test_the_idle_clock_at_the_start_of_a_round_does_not_count(sysfs_root):
    _, cur = arm_board_tree(sysfs_root)
    rewrite(cur, 600_000)  # idle between rounds
    monitor = open_thermal("cpu")  # default settle time, 0.2 s
    monitor.begin_round()
    result = monitor.end_round()  # at once: no settled sample
    monitor.close()
    assert result.min_clock_ratio is None and not result.throttled and result.samples == 2


# ------------------------------------------------------------------------------------------- Jetson


def test_jetson_gpu_run_watches_the_gpu_zone_and_its_devfreq(sysfs_root):
    temps, gpu_freq = orin_tree(sysfs_root)
    monitor = open_thermal("jetson", clock_settle_s=0.0)
    described = {s.name: s for s in monitor.describe()}
    # the GPU zone measured, the CPU/SoC/tj zones watched, the GPU clock; cv0 and the vic devfreq not
    assert set(described) == {"gpu-thermal", "cpu-thermal", "soc0-thermal", "soc1-thermal", "tj-thermal", "17000000.ga10b"}
    assert described["17000000.ga10b"].clock_mhz == 918.0 and described["17000000.ga10b"].max_clock_mhz == 918.0
    monitor.begin_round()
    cool = monitor.end_round()
    assert not cool.throttled and cool.max_temperature_c == 50.5 and cool.min_clock_ratio == 1.0
    monitor.begin_round()
    rewrite(gpu_freq, 459_000_000)
    slow = monitor.end_round()
    assert slow.reasons == ("clock 50% of max",)
    monitor.begin_round()
    rewrite(gpu_freq, 918_000_000)
    rewrite(temps["tj-thermal"], 99_500)  # the junction reaches its passive trip: Tegra caps the GPU too
    hot = monitor.end_round()
    monitor.close()
    assert hot.reasons == ("tj-thermal 99.5 C reached passive trip 99.0 C",)
    assert hot.max_temperature_c == 50.5  # the GPU zone's temperature, the measured one


def test_xavier_layout_with_gv11b_and_gpu_therm(sysfs_root):
    zone(sysfs_root, 0, "CPU-therm", 45_000, [(96_500, "passive")])
    zone(sysfs_root, 1, "GPU-therm", 44_000, [(96_500, "passive")])
    zone(sysfs_root, 2, "PMIC-Die", 100_000)  # a constant the PMIC reports, never a device temperature
    d = sysfs_root / "sys/devices/17000000.gv11b/devfreq/17000000.gv11b"
    write(d / "cur_freq", 1_377_000_000)
    write(d / "max_freq", 1_377_000_000)
    write(d / "governor", "nvhost_podgov")
    link(sysfs_root, "sys/devices/17000000.gv11b/devfreq/17000000.gv11b", "sys/class/devfreq/17000000.gv11b")
    monitor = open_thermal("jetson")
    monitor.begin_round()
    result = monitor.end_round()
    monitor.close()
    assert result.max_temperature_c == 44.0
    assert [s.name for s in monitor.describe()] == ["GPU-therm", "CPU-therm", "17000000.gv11b"]


# --------------------------------------------------------------------------------------------- NVML


class ThermalNvml(FakeNvml):
    """FakeNvml plus the thermal queries, with pynvml's names and values (pynvml 13.615.71)."""

    nvmlClocksEventReasonGpuIdle = 0x1
    nvmlClocksEventReasonApplicationsClocksSetting = 0x2
    nvmlClocksEventReasonSwPowerCap = 0x4
    nvmlClocksEventReasonHwSlowdown = 0x8
    nvmlClocksEventReasonSyncBoost = 0x10
    nvmlClocksEventReasonSwThermalSlowdown = 0x20
    nvmlClocksEventReasonHwThermalSlowdown = 0x40
    nvmlClocksEventReasonHwPowerBrakeSlowdown = 0x80
    nvmlClocksEventReasonDisplayClockSetting = 0x100
    NVML_TEMPERATURE_THRESHOLD_SLOWDOWN = 1

    def __init__(self, **kw):
        super().__init__(**kw)
        self.mask, self.sm_mhz, self.temperature, self.lost = 0x1, 2100, 55, False

    def nvmlDeviceGetClockInfo(self, h, kind):
        if self.lost:
            raise NVMLError("GPU is lost")
        return self.sm_mhz if kind == self.NVML_CLOCK_SM else 7000

    def nvmlDeviceGetMaxClockInfo(self, h, kind):
        return 2100

    def nvmlDeviceGetTemperature(self, h, kind):
        return self.temperature

    def nvmlDeviceGetTemperatureThreshold(self, h, kind):
        return 87

    def nvmlDeviceGetCurrentClocksEventReasons(self, h):
        return self.mask


@pytest.fixture
def gpu(monkeypatch):
    fake = ThermalNvml()
    monkeypatch.setattr(nv, "load_pynvml", lambda: fake)
    return fake


def test_an_nvml_thermal_reason_in_one_round_only(sysfs_root, gpu):
    monitor = open_thermal("cuda", clock_settle_s=0.0)
    assert monitor.available
    monitor.begin_round()
    gpu.mask = gpu.nvmlClocksEventReasonSwThermalSlowdown | gpu.nvmlClocksEventReasonSwPowerCap
    gpu.sm_mhz, gpu.temperature = 1491, 84
    hot = monitor.end_round()
    gpu.mask, gpu.sm_mhz, gpu.temperature = gpu.nvmlClocksEventReasonGpuIdle, 2100, 70
    monitor.begin_round()
    cool = monitor.end_round()
    monitor.close()
    assert hot.throttled and hot.reasons == ("thermal", "power cap")
    assert hot.max_temperature_c == 84.0 and hot.min_clock_ratio == pytest.approx(0.71)
    assert not cool.throttled and cool.reasons == () and cool.max_temperature_c == 70.0


def test_reasons_that_are_not_throttling_are_ignored(gpu):
    ignored = gpu.nvmlClocksEventReasonGpuIdle | gpu.nvmlClocksEventReasonApplicationsClocksSetting
    ignored |= gpu.nvmlClocksEventReasonSyncBoost | gpu.nvmlClocksEventReasonDisplayClockSetting
    assert nv.clock_event_reason_names(gpu, ignored) == ()
    every = ignored | 0x4 | 0x8 | 0x20 | 0x40 | 0x80
    assert nv.clock_event_reason_names(gpu, every) == ("thermal", "power cap", "hw slowdown")
    assert nv.clock_event_reason_names(gpu, gpu.nvmlClocksEventReasonHwPowerBrakeSlowdown) == ("power cap",)


def test_reason_names_match_the_installed_pynvml():
    pynvml = pytest.importorskip("pynvml")
    mask = pynvml.nvmlClocksThrottleReasonHwThermalSlowdown | pynvml.nvmlClocksEventReasonGpuIdle
    assert nv.clock_event_reason_names(pynvml, mask) == ("thermal",)
    assert nv.clock_event_reason_names(pynvml, pynvml.nvmlClocksEventReasonHwSlowdown) == ("hw slowdown",)


def test_older_bindings_answer_through_the_throttle_reasons_call(monkeypatch):
    class OldBinding(FakeNvml):
        nvmlClocksThrottleReasonSwThermalSlowdown = 0x20  # only the old spelling, and only the old call

        def nvmlDeviceGetCurrentClocksThrottleReasons(self, h):
            return 0x20

    old = OldBinding()
    assert nv.gpu_clock_event_reasons(old, "gpu0") == ("thermal",)
    # a binding that has neither call: unavailable, not a crash; nor a max clock, nor a threshold
    assert nv.gpu_clock_event_reasons(FakeNvml(), "gpu0") is None
    assert nv.gpu_max_sm_clock_mhz(FakeNvml(), "gpu0") is None and nv.gpu_slowdown_temperature_c(FakeNvml(), "gpu0") is None


def test_a_gpu_that_does_not_support_reasons_still_reports_temperature(gpu, monkeypatch):
    def not_supported(h):
        raise NVMLError("Not Supported")

    monkeypatch.setattr(gpu, "nvmlDeviceGetCurrentClocksEventReasons", not_supported)
    monitor = open_thermal("cuda")
    monitor.begin_round()
    result = monitor.end_round()
    (source,) = monitor.describe()
    monitor.close()
    assert result.available and result.max_temperature_c == 55.0 and not result.throttled
    assert source.reasons is None and source.note == "not supported by this GPU: clock-event reasons"
    assert source.trip_points == (TripPoint("slowdown", 87.0),)


def test_no_nvml_is_unavailable_with_why(sysfs_root, monkeypatch):
    def no_driver():
        raise SensorUnavailable("NVML cannot start (NVML Shared Library Not Found): no NVIDIA driver on this machine")

    monkeypatch.setattr(nv, "load_pynvml", no_driver)
    monitor = open_thermal("cuda")
    assert not monitor.available and "no NVIDIA driver" in monitor.note
    monitor.begin_round()
    assert monitor.end_round() == RoundThermal(None, None, False, (), 0, available=False, note=monitor.note)


def test_nvml_that_stops_answering_stops_the_monitor(gpu):
    monitor = open_thermal("cuda")
    monitor.begin_round()
    gpu.lost = True
    lost = monitor.end_round()
    assert not lost.available and lost.note == "thermal monitor stopped: GPU 0 (NVML): NVML stopped answering the SM clock query"
    monitor.close()


# ----------------------------------------------------------------------------- nothing, and faults


def test_a_machine_with_nothing_is_unavailable_not_a_crash(sysfs_root):
    for kind in ("cpu", "jetson"):
        with open_thermal(kind) as monitor:
            assert not monitor.available
            assert monitor.note == f"no thermal zone or hwmon sensor readable under {sysfs_root / 'sys'}"
            monitor.begin_round()
            result = monitor.end_round()
        assert result.max_temperature_c is None and result.min_clock_ratio is None and not result.throttled
        assert not result.available and result.note == monitor.note
    assert thermal.describe_lines([]) == [
        f"thermal: none found: no thermal zone or hwmon sensor readable under {sysfs_root / 'sys'}, no cpufreq or GPU devfreq clock, no NVML GPU"
    ]
    with pytest.raises(ValueError, match="device kind"):
        open_thermal("tpu")


def test_clocks_without_a_temperature_are_available_and_say_what_is_missing(sysfs_root):
    cpufreq(sysfs_root, [0, 1], 0, 1_000_000, 2_000_000, "cpufreq-dt", "performance")  # pinned at max by its governor
    monitor = open_thermal("cpu", clock_settle_s=0.0)
    assert monitor.available and monitor.note.endswith("rounds have clocks and throttle counts but no temperature")
    monitor.begin_round()
    result = monitor.end_round()
    monitor.close()
    assert result.max_temperature_c is None and result.reasons == ("clock 50% of max",)


def test_an_unreadable_zone_is_listed_with_why_and_never_sampled(sysfs_root):
    arm_board_tree(sysfs_root)
    write(sysfs_root / "sys/devices/virtual/thermal/thermal_zone0/temp", "garbage")
    monitor = open_thermal("cpu", clock_settle_s=0.0)
    assert [s.name for s in monitor.describe()] == ["policy0"]
    monitor.close()
    listed = {s.name: s for s in thermal.describe()}
    assert listed["cpu-thermal"].note.startswith("unreadable:") and "not a number" in listed["cpu-thermal"].note


def test_a_file_vanishing_mid_run_makes_later_rounds_unavailable(sysfs_root, monkeypatch):
    temp, _ = arm_board_tree(sysfs_root)
    monitor = open_thermal("cpu", clock_settle_s=0.0)
    monitor.begin_round()
    assert monitor.end_round().available
    # the sensor's driver is unbound: the kernel fails reads of the open attribute (ENODEV)
    gone = os.stat(temp).st_ino
    real_pread = os.pread

    def pread(fd, n, offset):
        if os.fstat(fd).st_ino == gone:
            raise OSError(19, "No such device")
        return real_pread(fd, n, offset)

    monkeypatch.setattr(os, "pread", pread)
    monitor.begin_round()
    broken = monitor.end_round()
    monkeypatch.setattr(os, "pread", real_pread)  # even if it comes back, the monitor stays stopped
    monitor.begin_round()
    later = monitor.end_round()
    monitor.close()
    why = f"thermal monitor stopped: {sysfs_root / 'sys/class/thermal/thermal_zone0/temp'} cannot be read any more (No such device)"
    assert not broken.available and broken.note == why and broken.max_temperature_c is None and not broken.throttled
    assert not later.available and later.note == why
    assert not monitor.available and monitor.note == why


def test_the_sampler_thread_stops_on_a_fault_and_the_round_still_ends(sysfs_root):
    temp, _ = arm_board_tree(sysfs_root)
    monitor = open_thermal("cpu", period_s=0.02)
    with monitor:
        monitor.begin_round()
        time.sleep(0.1)
        write(temp, "garbage")  # a garbled value, read by the background thread
        deadline = time.monotonic() + 2.0
        while monitor.available and time.monotonic() < deadline:
            time.sleep(0.01)
        thread = monitor._thread
        assert thread is not None
        thread.join(timeout=1.0)
        assert not thread.is_alive()
        result = monitor.end_round()
    assert not result.available and "not a number" in result.note


# --------------------------------------------------------------------------------- the sampler


def wait_for_samples(monitor, n, timeout_s=5.0):
    """Until the background thread has taken n more samples (a loaded machine may delay it)."""
    target, deadline = monitor.samples + n, time.monotonic() + timeout_s
    while monitor.samples < target and time.monotonic() < deadline:
        time.sleep(0.005)
    assert monitor.samples >= target


def test_the_thread_samples_during_rounds_only(sysfs_root):
    temp, cur = arm_board_tree(sysfs_root)
    with open_thermal("cpu", period_s=0.02, clock_settle_s=0.05) as monitor:
        time.sleep(0.1)
        assert monitor.samples == 0  # no round open: nothing read
        monitor.begin_round()
        time.sleep(0.1)
        rewrite(temp, 88_000)  # a spike the background samples see, gone before the round ends
        rewrite(cur, 900_000)
        wait_for_samples(monitor, 2)
        rewrite(temp, 70_000)
        rewrite(cur, 1_500_000)
        result = monitor.end_round()
        taken = monitor.samples
        time.sleep(0.1)
        assert monitor.samples == taken
    assert result.samples >= 4 and result.max_temperature_c == 88.0
    assert result.reasons == ("cpu-thermal 88.0 C reached passive trip 85.0 C", "clock 60% of max")


def test_describe_lists_every_source_with_its_values_now(sysfs_root):
    intel_laptop_tree(sysfs_root)
    listed = thermal.describe()
    by_name = {s.name: s for s in listed}
    assert by_name["acpitz"].trip_points == (TripPoint("critical", 119.0),) and by_name["acpitz"].used_for == ()
    assert by_name["x86_pkg_temp"].temperature_c == 52.0 and by_name["x86_pkg_temp"].used_for == ("cpu",)
    assert by_name["x86_pkg_temp"].detail == "thermal_zone1"
    assert by_name["coretemp Package id 0"].trip_points == (TripPoint("crit", 100.0),)
    assert by_name["policy1"].clock_mhz == 2400.0 and by_name["policy1"].max_clock_mhz == 4700.0
    assert by_name["policy1"].detail == "cpus 1, intel_pstate, powersave"
    assert [s.count for s in listed if s.kind == "throttle_count"] == [5, 7, 0]  # cpu0 core, package 0, cpu1 core
    lines = thermal.describe_lines(listed)
    assert "  cpufreq policy0 (cpus 0, intel_pstate, powersave): clock 2400 of 4700 MHz (51% of max); watched for: cpu" in lines
    assert "  Intel throttle counters (times throttled since boot): core: 5 over 2 CPUs; package 0: 7" in lines


def test_describe_on_a_jetson_tags_the_gpu_run(sysfs_root):
    orin_tree(sysfs_root)
    by_name = {s.name: s for s in thermal.describe()}
    assert by_name["gpu-thermal"].used_for == ("jetson",)
    assert by_name["tj-thermal"].used_for == ("cpu", "jetson")
    assert by_name["17000000.ga10b"].used_for == ("jetson",)
    assert by_name["policy4"].used_for == ("cpu",) and by_name["policy4"].detail == "cpus 4 5 6 7, tegra194, schedutil"
    assert by_name["cv0-thermal"].used_for == () and "15340000.vic" not in by_name


def test_a_clock_that_follows_the_load_is_reported_not_judged(sysfs_root, monkeypatch):
    """Under a load-following governor (jetson_clocks off; schedutil with its minimum low), a GPU or
    CPU clock under 90 % of its max is what a batch-1 model with launch gaps gets: not throttling."""
    _, gpu_clock = orin_tree(sysfs_root, jetson_clocks=False)
    clock = ScriptedClock().install(monkeypatch, round_monitor)  # the rounds' clock; the sampler thread sleeps in real time
    with open_thermal("jetson", clock_settle_s=0.0) as monitor:
        monitor.begin_round()
        rewrite(gpu_clock, 550_000_000)
        clock.advance(0.05)
        result = monitor.end_round()
    assert result.min_clock_ratio == pytest.approx(550 / 918, rel=1e-3) and not result.throttled
