"""The accuracy pass keeps the model busy: its throughput against the steady-state throughput of the
same model and batch on the same device, with the default data-loading settings. Also checks that the
pass's top-1 equals a plain-torch loop over the same images, image for image.

The images are ImageNet-like JPEGs (500 x 375, varied content) written to a temporary folder, so
decoding and resizing cost what they cost on real data.

    python scripts/bench_eval.py [--device cpu] [--models levit_128s,deit_tiny_patch16_224] [--images 512] [--passes 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import timm
import torch
from PIL import Image

from pytest_e3p.hardware.devices import resolve
from pytest_e3p.measure.accuracy import default_workers, evaluate, make_loader
from pytest_e3p.measure.context import MeasureContext
from pytest_e3p.measure.protocols import Protocol, run_protocol
from pytest_e3p.models import datasets as data


def write_images(root: Path, n: int, classes: int = 4) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / f"class_{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        # smooth gradients plus noise: compresses and decodes like a photograph, not like flat colour
        y, x = np.mgrid[0:375, 0:500]
        base = np.stack([(x * (i % 7 + 1)) % 256, (y * (i % 5 + 1)) % 256, ((x + y) * (i % 3 + 1)) % 256], axis=-1)
        img = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"img_{i:05d}.JPEG", quality=90)


def plain_top1(model, items, torch_device: str) -> float:
    """An independent loop: timm's own transform on each image, one image at a time."""
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    hits = 0
    with torch.inference_mode():
        for path, label in items:
            with Image.open(path) as img:
                hits += int(model(transform(img.convert("RGB"))[None].to(torch_device)).argmax(1).item() == label)
    return 100.0 * hits / len(items)


def steady_images_per_s(model, x, batch, device) -> float:
    with torch.inference_mode():
        steady = run_protocol(
            lambda: model(x), batch, MeasureContext(device.synchronize, torch_device=device.torch_device), Protocol(batch, rounds=5, warmup_s=1.0, idle_s=0)
        )
    return sum(r.images for r in steady.rounds) / sum(r.duration_s for r in steady.rounds)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--models", default="levit_128s,deit_tiny_patch16_224")
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--passes", type=int, default=3)
    args = ap.parse_args()
    device = resolve(args.device)
    batch = device.default_batch_size
    workers = default_workers(device.torch_device)
    print(
        f"device {device.name} ({device.identity.get('name')}), batch {batch}, loader workers {workers} (the default{'; 0 = a decode thread per core between forward passes' if workers == 0 else ''})"
    )
    with tempfile.TemporaryDirectory() as d:
        write_images(Path(d), args.images)
        spec = data.DatasetSpec(data.FOLDER, Path(d))
        for name in args.models.split(","):
            torch.manual_seed(0)
            model = timm.create_model(name, pretrained=False, num_classes=4).eval().to(device.torch_device)
            transform = data.eval_transform(spec, model)
            ds = data.open_dataset(spec, transform.per_image)
            loader = make_loader(ds, batch, workers, pin_memory=device.torch_device.startswith("cuda"))
            x = torch.randn(batch, *model.pretrained_cfg["input_size"], device=device.torch_device)
            evaluate(
                model, make_loader(ds, batch, workers), MeasureContext(device.synchronize, torch_device=device.torch_device), prepare=transform.normalize
            )  # warm the page cache
            # Passes alternate with steady-state runs and each pass is set against the steady state
            # on either side of it: this VM's speed drifts by several percent within a minute.
            steady = [steady_images_per_s(model, x, batch, device)]
            ratios, passes = [], []
            for _ in range(args.passes):
                ev = evaluate(model, loader, MeasureContext(device.synchronize, torch_device=device.torch_device), prepare=transform.normalize)
                steady.append(steady_images_per_s(model, x, batch, device))
                passes.append(ev.images_per_s)
                ratios.append(ev.images_per_s / ((steady[-2] + steady[-1]) / 2))
            steady_ips = statistics.median(steady)
            print(
                f"{name:26s} steady {steady_ips:7.1f} img/s   evaluation pass {statistics.median(passes):7.1f} img/s   "
                f"ratio {statistics.median(ratios):.3f} (median of {len(ratios)}, range {min(ratios):.3f}-{max(ratios):.3f}; target >= 0.80)"
            )
            t0 = time.monotonic()
            n = sum(len(labels) for _, labels in make_loader(ds, batch, workers))
            loader_ips = n / (time.monotonic() - t0)
            # On a CPU device decoding shares the cores with the model: with c_m and c_d core-seconds
            # per image for model and decoding, the pass cannot beat c_m / (c_m + c_d) of steady state.
            cores = os.cpu_count() or 1
            decoders = workers if workers > 0 else cores  # processes, or a thread per core
            c_m, c_d = cores / steady_ips, decoders / loader_ips
            bound = c_m / (c_m + c_d) if device.torch_device == "cpu" else 1.0
            print(f"{'':26s} loader alone {loader_ips:7.1f} img/s ({c_d * 1e3:.1f} core-ms per image); bound on this device {bound:.2f}")
            print(f"{'':26s} top-1 of the pass {ev.top1:.3f} %, plain loop {plain_top1(model, ds.items, device.torch_device):.3f} %")


if __name__ == "__main__":
    main()
