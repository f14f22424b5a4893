"""Sampling backends: integration error against a known power trace, and the sampler's overhead.

1. A helper thread rewrites a TX2 rail file (in_power0_input, mW) every millisecond following a trace;
   the exact energy of what was written is summed from the writes themselves. The Jetson backend
   samples the file at its default rate over a 2 s window; the error is printed per trace.
2. The sampler's own CPU use, and a small model's throughput with and without it (6-rail tree).

    python scripts/bench_sampling.py
"""

from __future__ import annotations

import math
import os
import statistics
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

    from pytest_e3p.sensors import window
    from pytest_e3p.sensors.jetson import JetsonRailSensor

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


def sampler_overhead(rate_hz: float, model_name: str = "levit_128s", batch: int = 16, seconds: float = 6.0, repeats: int = 5) -> tuple[float, float]:
    import timm
    import torch

    from pytest_e3p.sensors.jetson import JetsonRailSensor

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
        without, with_sampler = [], []
        for _ in range(repeats):  # alternating, so drift hits both alike
            without.append(throughput())
            sensor = JetsonRailSensor(rate_hz=rate_hz)
            with sensor:
                with_sampler.append(throughput())
    return without, with_sampler


def sampler_cpu_share(rate_hz: float, seconds: float = 5.0) -> float:
    """CPU time the sampler thread uses per second of wall time, measured with the process idle."""
    from pytest_e3p.sensors.jetson import JetsonRailSensor

    with tempfile.TemporaryDirectory() as d:
        os.environ["E3P_SYSFS_ROOT"] = d
        tx2_tree(Path(d))
        sensor = JetsonRailSensor(rate_hz=rate_hz)
        cpu0, t0 = time.process_time(), time.monotonic()
        with sensor:
            time.sleep(seconds)
        return (time.process_time() - cpu0) / (time.monotonic() - t0)


def main() -> None:
    import argparse

    from pytest_e3p.sensors.jetson import DEFAULT_RATE_HZ

    ap = argparse.ArgumentParser()
    ap.add_argument("--rate-hz", type=float, default=DEFAULT_RATE_HZ)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--overhead-repeats", type=int, default=7)
    ap.add_argument("--skip-integration", action="store_true")
    args = ap.parse_args()
    print(f"1. integration error, 2 s window, {args.rate_hz:g} Hz (default {DEFAULT_RATE_HZ:g}; target < 1%)")
    for name in [] if args.skip_integration else TRACES:
        errors = []
        for _ in range(args.trials):
            measured, exact, samples = integration_error(name, args.rate_hz)
            errors.append((measured - exact) / exact)
        worst = max(errors, key=abs)
        print(f"   {name:55s} errors {', '.join(f'{e:+.2%}' for e in errors)}  (worst {abs(worst):.2%}, {samples} samples)")
    share = sampler_cpu_share(args.rate_hz)
    print(f"2. the sampler's own CPU use at {args.rate_hz:g} Hz (6 rails): {share * 1000:.2f} ms per second = {share:.3%} of one core")
    print("   sampler overhead on levit_128s, batch 16, CPU (target < 1%)")
    without, with_sampler = sampler_overhead(args.rate_hz, repeats=args.overhead_repeats)
    w, s = statistics.median(without), statistics.median(with_sampler)
    # the run-to-run spread of the runs without the sampler is the noise floor of this comparison
    spread = (max(without) - min(without)) / w
    print(f"   without {w:.1f} img/s, with the {args.rate_hz:g} Hz sampler {s:.1f} img/s (medians of {len(without)} alternating runs)")
    print(f"   ratio {s / w:.4f} (cost {1 - s / w:+.2%}); spread of the runs without it: {spread:.2%}")


if __name__ == "__main__":
    main()
