"""Sampling backends: integration error against a known power trace, and the sampler's overhead.

1. A helper process (as the kernel driver is) rewrites a TX2 rail file (in_power0_input, mW) every
   millisecond following a trace; the exact energy of what was written is summed from the writes.
   The Jetson backend samples the file at its default rate over a 2 s window; the error is printed
   per trace.
2. The sampler's own CPU use, and a small model's throughput with and without it (6-rail tree):
   with the model on every core (the worst case, a CPU-only run) and on all but one (as on a Jetson,
   where the GPU computes and the sampler has a core to itself).
3. With --with-thermal-memory, both arms run the power sampler, and the "with" runs add what a case
   now runs beside it: the thermal monitor with a round open (2 thermal zones, a coretemp channel,
   2 cpufreq clocks and throttle counters, read every 0.5 s) and the peak-memory accounting as the
   suite does it (clear_refs before, VmHWM after). The CPU share of the VmRSS sampler, the fallback
   where clear_refs cannot be written, and of the thermal monitor are printed apart.

    python scripts/bench_sampling.py [--with-thermal-memory]
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path

TRACES = {
    "steps every 250 ms (2-8 W)": lambda t: [2000, 8000, 4000, 6000][int(t / 0.25) % 4],
    "3 Hz sine (5 +- 2 W)": lambda t: 5000 + 2000 * math.sin(2 * math.pi * 3 * t),
    "inference-like: 60 ms busy / 15 ms idle (9 W / 3 W)": lambda t: 9000 if (t % 0.075) < 0.06 else 3000,
    "fast square 25 Hz (2-8 W), near the sampling rate": lambda t: 8000 if (t % 0.04) < 0.02 else 2000,
}


def tx2_tree(root: Path) -> Path:
    dev = root / "sys/bus/i2c/drivers/ina3221x/0-0041/iio:device1"
    dev.mkdir(parents=True)
    for n, name in enumerate(["VDD_IN", "VDD_SYS_CPU", "VDD_SYS_DDR"]):
        (dev / f"rail_name_{n}").write_text(name + "\n")
        (dev / f"in_power{n}_input").write_text(f"{1000:>10d}\n")
    dev0 = root / "sys/bus/i2c/drivers/ina3221x/0-0040/iio:device0"
    dev0.mkdir(parents=True)
    for n, name in enumerate(["VDD_SYS_GPU", "VDD_SYS_SOC", "VDD_4V0_WIFI"]):
        (dev0 / f"rail_name_{n}").write_text(name + "\n")
        (dev0 / f"in_power{n}_input").write_text("500\n")
    return dev / "in_power0_input"


def thermal_tree(root: Path, cpus: int = 2) -> None:
    """Thermal zones, coretemp, cpufreq and throttle counters as an Intel machine lays them out."""
    for n, (kind, temp) in enumerate((("acpitz", 45000), ("x86_pkg_temp", 52000))):
        zone = root / f"sys/class/thermal/thermal_zone{n}"
        zone.mkdir(parents=True)
        for name, text in (("type", kind), ("temp", str(temp)), ("trip_point_0_temp", "95000"), ("trip_point_0_type", "passive")):
            (zone / name).write_text(text + "\n")
    hw = root / "sys/class/hwmon/hwmon0"
    hw.mkdir(parents=True)
    for name, text in (("name", "coretemp"), ("temp1_input", "52000"), ("temp1_label", "Package id 0"), ("temp1_crit", "100000")):
        (hw / name).write_text(text + "\n")
    for cpu in range(cpus):
        base = root / f"sys/devices/system/cpu/cpu{cpu}"
        (base / "cpufreq").mkdir(parents=True)
        (base / "thermal_throttle").mkdir(parents=True)
        (base / "topology").mkdir(parents=True)
        for name, text in (
            ("scaling_cur_freq", "2400000"),
            ("scaling_max_freq", "2400000"),
            ("cpuinfo_max_freq", "2400000"),
            ("scaling_driver", "cpufreq-dt"),
            ("scaling_governor", "schedutil"),
        ):
            (base / "cpufreq" / name).write_text(text + "\n")
        for name in ("core_throttle_count", "package_throttle_count"):
            (base / "thermal_throttle" / name).write_text("0\n")
        (base / "topology/physical_package_id").write_text("0\n")


def write_value(path: Path, mw: float) -> None:
    # in place and fixed width, as a sysfs attribute changes: same inode, never a half-written number
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, f"{int(mw):>10d}\n".encode(), 0)
    finally:
        os.close(fd)


def _writer(path: str, trace_name: str, t0: float, stop, conn) -> None:
    """In its own process, as the kernel driver is: rewrite the rail every millisecond."""
    trace, p = TRACES[trace_name], Path(path)
    log = []
    while not stop.is_set():
        mw = trace(time.monotonic() - t0)
        write_value(p, mw)
        log.append((time.monotonic(), mw))
        time.sleep(0.001)
    conn.send(log)


def integration_error(trace_name: str, rate_hz: float, window_s: float = 2.0) -> tuple[float, float, int]:
    import multiprocessing as mp

    from pytest_e3p.hardware.sensors import window
    from pytest_e3p.hardware.sensors.jetson import JetsonRailSensor

    with tempfile.TemporaryDirectory() as d:
        os.environ["E3P_SYSFS_ROOT"] = d
        rail = tx2_tree(Path(d))
        t0 = time.monotonic()  # CLOCK_MONOTONIC: the same clock in both processes
        write_value(rail, TRACES[trace_name](0.0))
        first = (time.monotonic(), TRACES[trace_name](0.0))
        stop = mp.Event()
        ours, theirs = mp.Pipe()
        proc = mp.Process(target=_writer, args=(str(rail), trace_name, t0, stop, theirs))
        proc.start()
        sensor = JetsonRailSensor(rate_hz=rate_hz)
        with sensor:
            time.sleep(0.2)
            start = sensor.read()
            time.sleep(window_s)
            end = sensor.read()
        stop.set()
        writes = [first, *ours.recv()]
        proc.join()
        measured = window(start, end).rails_mj["VDD_IN"]
        # exact energy of the piecewise-constant signal that was in the file between the edges
        exact = 0.0
        for (ta, pa), (tb, _) in zip(writes, writes[1:]):
            lo, hi = max(ta, start.t_s), min(tb, end.t_s)
            if hi > lo:
                exact += pa * (hi - lo)
        return measured, exact, sensor.samples


def sampler_overhead(
    rate_hz: float,
    model_name: str = "levit_128s",
    batch: int = 16,
    seconds: float = 1.5,
    pairs: int = 30,
    threads: int | None = None,
    thermal_memory: bool = False,
) -> list[float]:
    """Throughput with the sampler running over throughput without it, once per pair of runs.

    Runs alternate without / with / without / ...; each run with the sampler is set against the mean
    of the runs on either side, so the slow drift of this VM's speed cancels and what is left is the
    sampler's cost plus short-term noise, which the median over many pairs and its bootstrap
    interval then show."""
    import timm
    import torch

    from pytest_e3p.hardware.sensors.jetson import JetsonRailSensor

    torch.manual_seed(0)
    torch.set_num_threads(threads or os.cpu_count() or 1)
    model = timm.create_model(model_name, pretrained=False).eval()
    x = torch.randn(batch, 3, 224, 224)

    def throughput() -> float:
        with torch.inference_mode():
            model(x)
            n, t0 = 0, time.monotonic()
            while time.monotonic() - t0 < seconds:
                model(x)
                n += batch
            return n / (time.monotonic() - t0)

    with tempfile.TemporaryDirectory() as d:
        os.environ["E3P_SYSFS_ROOT"] = d
        tx2_tree(Path(d))
        if thermal_memory:
            thermal_tree(Path(d))
        throughput()  # warm-up
        if thermal_memory:
            # the power sampler runs in both arms: what is measured is what the thermal monitor and
            # the peak-memory accounting add to a case as the suite runs it
            from pytest_e3p.measure.memory import PeakMemory
            from pytest_e3p.measure.thermal import open_thermal

            def with_added() -> float:
                monitor, memory = open_thermal("cpu"), PeakMemory("cpu")
                monitor.start()
                memory.reset()
                monitor.begin_round()
                rate = throughput()
                monitor.end_round()
                memory.read()
                monitor.close()
                return rate

            with JetsonRailSensor(rate_hz=rate_hz):
                ratios, before = [], throughput()
                for _ in range(pairs):
                    added = with_added()
                    after = throughput()
                    ratios.append(added / ((before + after) / 2))
                    before = after
            return ratios
        ratios, before = [], throughput()
        for _ in range(pairs):
            with JetsonRailSensor(rate_hz=rate_hz):
                with_sampler = throughput()
            after = throughput()
            ratios.append(with_sampler / ((before + after) / 2))
            before = after
    return ratios


def median_interval(values: list[float], level: float = 0.95, resamples: int = 10000) -> tuple[float, float, float]:
    """Median and a percentile-bootstrap interval for it."""
    import numpy as np

    v = np.asarray(values)
    rng = np.random.default_rng(0)
    medians = np.median(rng.choice(v, size=(resamples, len(v)), replace=True), axis=1)
    lo, hi = np.quantile(medians, [(1 - level) / 2, (1 + level) / 2])
    return float(np.median(v)), float(lo), float(hi)


def sampler_cpu_share(rate_hz: float, seconds: float = 5.0) -> float:
    """CPU time the sampler thread uses per second of wall time, measured with the process idle."""
    from pytest_e3p.hardware.sensors.jetson import JetsonRailSensor

    with tempfile.TemporaryDirectory() as d:
        os.environ["E3P_SYSFS_ROOT"] = d
        tx2_tree(Path(d))
        sensor = JetsonRailSensor(rate_hz=rate_hz)
        cpu0, t0 = time.process_time(), time.monotonic()
        with sensor:
            time.sleep(seconds)
        return (time.process_time() - cpu0) / (time.monotonic() - t0)


def thread_cpu_shares(seconds: float = 5.0) -> dict[str, float]:
    """CPU time per second of wall time of the thermal monitor (a round open) and of the VmRSS
    sampler fallback, each alone with the process idle."""
    from pytest_e3p.measure.memory import RssSampler
    from pytest_e3p.measure.thermal import open_thermal

    out = {}
    with tempfile.TemporaryDirectory() as d:
        os.environ["E3P_SYSFS_ROOT"] = d
        thermal_tree(Path(d))
        monitor = open_thermal("cpu")
        monitor.start()
        cpu0, t0 = time.process_time(), time.monotonic()
        monitor.begin_round()
        time.sleep(seconds)
        monitor.end_round()
        out["thermal monitor, 0.5 s period, round open"] = (time.process_time() - cpu0) / (time.monotonic() - t0)
        monitor.close()
    rss = RssSampler()
    cpu0, t0 = time.process_time(), time.monotonic()
    rss.start()
    time.sleep(seconds)
    rss.stop()
    out["VmRSS sampler (fallback), 5 ms period"] = (time.process_time() - cpu0) / (time.monotonic() - t0)
    return out


def main() -> None:
    import argparse

    from pytest_e3p.hardware.sensors.jetson import DEFAULT_RATE_HZ

    ap = argparse.ArgumentParser()
    ap.add_argument("--rate-hz", type=float, default=DEFAULT_RATE_HZ)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--overhead-pairs", type=int, default=30)
    ap.add_argument("--skip-integration", action="store_true")
    ap.add_argument("--with-thermal-memory", action="store_true", help="the thermal monitor and the memory sampler run beside the power sampler")
    args = ap.parse_args()
    print(f"1. integration error, 2 s window, {args.rate_hz:g} Hz (default {DEFAULT_RATE_HZ:g}; target < 1%)")
    for name in [] if args.skip_integration else TRACES:
        errors = []
        for _ in range(args.trials):
            measured, exact, samples = integration_error(name, args.rate_hz)
            errors.append((measured - exact) / exact)
        worst = max(errors, key=abs)
        print(f"   {name:55s} errors {', '.join(f'{e:+.2%}' for e in errors)}  (worst {abs(worst):.2%}, {samples} samples)")
    if args.with_thermal_memory:
        for name, share in thread_cpu_shares().items():
            print(f"   {name}: {share * 1000:.2f} ms of CPU per second = {share:.3%} of one core (process otherwise idle)")
    share = sampler_cpu_share(args.rate_hz)
    print(f"2. the sampler's own CPU use at {args.rate_hz:g} Hz (6 rails): {share * 1000:.2f} ms per second = {share:.3%} of one core")
    cores = os.cpu_count() or 1
    scenarios = [(cores, f"the model on all {cores} cores (worst case: every preemption delays it)")]
    if cores > 1:
        scenarios.append((cores - 1, f"the model on {cores - 1} of {cores} cores (as on a Jetson, where the GPU computes and a core is spare)"))
    for threads, what in scenarios:
        if args.with_thermal_memory:
            print(f"   thermal monitor + peak-memory accounting, added to the power sampler, on levit_128s, batch 16, {what}; target: no measurable cost")
        else:
            print(f"   sampler overhead on levit_128s, batch 16, {what}; target < 1%")
        ratios = sampler_overhead(args.rate_hz, pairs=args.overhead_pairs, threads=threads, thermal_memory=args.with_thermal_memory)
        med, lo, hi = median_interval(ratios)
        print(
            f"     throughput with / without {'them' if args.with_thermal_memory else f'the {args.rate_hz:g} Hz sampler'}: median {med:.4f} over {len(ratios)} alternating pairs, 95% interval {lo:.4f}-{hi:.4f}"
        )
        print(f"     cost {1 - med:+.2%} (interval {1 - hi:+.2%} to {1 - lo:+.2%}); single pairs ranged {min(ratios):.3f}-{max(ratios):.3f}")


if __name__ == "__main__":
    main()
