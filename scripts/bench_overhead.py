"""Harness overhead: the suite's measured throughput against a bare loop of the same model.

The bare loop is timm's benchmark.py style: random input, inference_mode, no harness, a monotonic
clock around N batches. The harness is pytest-e3p's protocol (run_protocol) with the device's sensor.
Both run in this process, alternating, so drift hits them alike. Prints the ratio per model.

    python scripts/bench_overhead.py [--device cpu] [--models levit_128s,deit_tiny_patch16_224,efficientvit_b0]
"""

from __future__ import annotations

import argparse
import statistics
import time

import timm
import torch

from pytest_e3p.devices import resolve
from pytest_e3p.measure import Protocol, run_protocol


def bare_images_per_s(model, x, sync, seconds: float) -> float:
    with torch.inference_mode():
        for _ in range(2):
            model(x)
        sync()
        n, t0 = 0, time.monotonic()
        while time.monotonic() - t0 < seconds:
            model(x)
            n += 1
        sync()
        return n * x.shape[0] / (time.monotonic() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--models", default="levit_128s,deit_tiny_patch16_224,efficientvit_b0")
    ap.add_argument("--batch-size", type=int, default=0, help="0: the device's default")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    device = resolve(args.device)
    batch = args.batch_size or device.default_batch_size
    sensor, note = device.open_sensor()
    sensor.start()
    print(f"device {device.name} ({device.identity.get('name')}), batch {batch}, sensor {sensor.info.name if sensor else 'none'} {note}")
    protocol = Protocol(batch_size=batch, rounds=5, min_round_s=1.0, warmup_s=1.0, idle_s=0)
    for name in args.models.split(","):
        model = timm.create_model(name, pretrained=False).eval().to(device.torch_device)
        x = torch.randn(batch, *model.pretrained_cfg["input_size"], device=device.torch_device)
        bare, harness = [], []
        for _ in range(args.repeats):
            with torch.inference_mode():
                steady = run_protocol(lambda model=model, x=x: model(x), batch, device.synchronize, sensor, protocol, measure_idle=False)
            harness.append(sum(r.images for r in steady.rounds) / sum(r.duration_s for r in steady.rounds))
            bare.append(bare_images_per_s(model, x, device.synchronize, seconds=5.0))
        b, h = statistics.median(bare), statistics.median(harness)
        print(f"{name:28s} bare {b:8.1f} img/s   harness {h:8.1f} img/s   ratio {h / b:.3f}  (target >= 0.97)")
    sensor.close()


if __name__ == "__main__":
    main()
