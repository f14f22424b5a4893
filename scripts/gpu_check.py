"""On an NVIDIA GPU: the NVML energy counter and the sampled instantaneous power over the same windows.

Both sensors run at once while a model runs rounds of the protocol; for each round the two energies
are printed with their difference (target: within 3 %). Needs a Volta or newer GPU (the counter).

    python scripts/gpu_check.py [--device cuda] [--model vit_small_patch16_224] [--rounds 10]
"""

from __future__ import annotations

import argparse
import statistics

import timm
import torch

from pytest_e3p.hardware.devices import resolve
from pytest_e3p.hardware.sensors import window
from pytest_e3p.hardware.sensors.nvml import open_nvml_sensor
from pytest_e3p.measure.protocols import Protocol


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--model", default="vit_small_patch16_224")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--round-s", type=float, default=2.0)
    args = ap.parse_args()
    device = resolve(args.device)
    print(f"{device.name}: {device.identity}")
    counter = open_nvml_sensor(device.cuda_index, device.identity.get("uuid"), mode="counter")
    sampled = open_nvml_sensor(device.cuda_index, device.identity.get("uuid"), mode="sampled")
    model = timm.create_model(args.model, pretrained=False).eval().to(device.torch_device)
    batch = Protocol().batch_size
    x = torch.randn(batch, *model.pretrained_cfg["input_size"], device=device.torch_device)
    diffs = []
    with counter, sampled, torch.inference_mode():
        for _ in range(5):
            model(x)
        device.synchronize()
        for i in range(args.rounds):
            c0, s0 = counter.read(), sampled.read()
            n = 0
            while True:
                model(x)
                n += 1
                device.synchronize()
                c1, s1 = counter.read(), sampled.read()
                if c1.t_s - c0.t_s >= args.round_s:
                    break
            wc, ws = window(c0, c1), window(s0, s1)
            diff = ws.energy_mj / wc.energy_mj - 1
            diffs.append(diff)
            print(
                f"round {i}: {n * batch} images, counter {wc.energy_mj / 1000:.2f} J ({wc.power_w:.0f} W), sampled {ws.energy_mj / 1000:.2f} J, difference {diff:+.2%}"
            )
    print(f"median difference {statistics.median(diffs):+.2%}, worst {max(diffs, key=abs):+.2%} (target within 3%)")


if __name__ == "__main__":
    main()
