"""Harness overhead: the suite's measured throughput against a bare loop of the same model.

The bare loop is timm's benchmark.py style: random input, inference_mode, no harness, a monotonic
clock around N batches. The harness is pytest-e3p's protocol (run_protocol) with the device's sensor.
Both run in this process, alternating, so drift hits them alike. Prints the ratio per model.

    python scripts/bench_overhead.py [--device cpu] [--models levit_128s,deit_tiny_patch16_224,efficientvit_b0]

With --variant NAME (pytest_e3p.variants), the harness runs the prepared variant's forward and the
bare loop calls the runtime behind it directly: the ONNX Runtime session's run() on a numpy batch,
the OpenVINO compiled model on a numpy batch, or the torch module on the cast batch. The ratio is
then the cost of the variant wrapper and the harness together (target >= 0.98).

    python scripts/bench_overhead.py --variant onnxruntime --models deit_tiny_patch16_224
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import timm
import torch

from pytest_e3p.hardware.devices import resolve
from pytest_e3p.hardware.sensors import NullSensor
from pytest_e3p.measure.context import MeasureContext
from pytest_e3p.measure.protocols import Protocol, run_protocol


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


def bare_loop_samples(call: Callable[[], Any], batch: int, sync, chunks: int, chunk_s: float) -> list[float]:
    """Images/s of `chunks` windows of at least chunk_s each, calling `call` with nothing around it
    but the clock: the bare counterpart of the protocol's rounds (synchronised at both edges)."""
    out = []
    with torch.inference_mode():
        for _ in range(2):
            call()
        for _ in range(chunks):
            sync()
            n, t0 = 0, time.monotonic()
            while time.monotonic() - t0 < chunk_s:
                call()
                n += 1
            sync()
            out.append(n * batch / (time.monotonic() - t0))
    return out


def runtime_call(prepared, x: torch.Tensor) -> tuple[Callable[[], Any], str]:
    """One batch through the runtime behind a prepared variant, called directly, and what it is."""
    runtime = prepared.runtime
    try:
        import onnxruntime

        if isinstance(runtime, onnxruntime.InferenceSession):
            feed = {runtime.get_inputs()[0].name: x.cpu().numpy()}
            outputs = [runtime.get_outputs()[0].name]
            return (lambda: runtime.run(outputs, feed)), "onnxruntime InferenceSession.run"
    except ImportError:
        pass
    try:
        import openvino

        if isinstance(runtime, openvino.CompiledModel):
            array = x.cpu().numpy()
            return (lambda: runtime(array)), "openvino CompiledModel(...)"
    except ImportError:
        pass
    cast = x.to(prepared.input_dtype)
    return (lambda: runtime(cast)), f"torch module {type(runtime).__name__}"


def bench_variant(args, device, sensor, protocol, batch: int) -> None:
    from pytest_e3p.variants import compare, prepare

    for name in args.models.split(","):
        torch.manual_seed(0)
        model = timm.create_model(name, pretrained=False).eval().to(device.torch_device)
        gen = torch.Generator().manual_seed(0)
        size = model.pretrained_cfg["input_size"]
        x = torch.randn(batch, *size, generator=gen).to(device.torch_device)
        calibration = [torch.randn(batch, *size, generator=gen).to(device.torch_device) for _ in range(2)]
        v = prepare(args.variant, model, x, calibration, device.kind, device.torch_device)
        check = compare(model, v, x)
        bare_call, what = runtime_call(v, x)
        print(f"{name} {args.variant}: prepared in {v.prepare_s:.1f} s; {v.detail}")
        print(f"  agreement with fp32: top-1 {check.top1_pct:.1f} %, max rel err {check.max_rel_err:.2e}, ok {check.ok}; bare loop: {what}")
        # Round by round on both sides: the harness's rounds (protocol.rounds of >= min_round_s) and
        # as many bare windows of the same length, interleaved ABBA across repeats so that a drift or
        # a neighbour's load favours neither side; the ratio is of the medians over all of them.
        bare: list[float] = []
        harness: list[float] = []
        pairs = []
        for k in range(args.repeats):
            got: dict[str, list[float]] = {}
            for side in ("harness", "bare") if k % 2 == 0 else ("bare", "harness"):
                if side == "harness":
                    steady = run_protocol(
                        lambda v=v, x=x: v.forward(x), batch, MeasureContext(device.synchronize, sensor or NullSensor()), protocol, measure_idle=False
                    )
                    got[side] = [r.images / r.duration_s for r in steady.rounds]
                else:
                    got[side] = bare_loop_samples(bare_call, batch, device.synchronize, protocol.rounds, protocol.min_round_s)
            harness += got["harness"]
            bare += got["bare"]
            pairs.append(statistics.median(got["harness"]) / statistics.median(got["bare"]))
        b, h = statistics.median(bare), statistics.median(harness)
        print(
            f"  bare {b:8.1f} img/s   harness {h:8.1f} img/s   ratio {h / b:.3f} (medians of {len(harness)} rounds each; target >= 0.98)"
            f"  per repeat {' '.join(f'{r:.3f}' for r in pairs)}"
        )
        del v


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--models", default="levit_128s,deit_tiny_patch16_224,efficientvit_b0")
    ap.add_argument("--batch-size", type=int, default=0, help="0: the device's default")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--variant", default="", help="an optimised variant (pytest_e3p.variants), e.g. onnxruntime or openvino")
    args = ap.parse_args()
    if args.variant:
        from pytest_e3p.variants import parse_variants

        (args.variant,) = parse_variants(args.variant)
    device = resolve(args.device)
    batch = args.batch_size or device.default_batch_size
    sensor, note = device.open_sensor()
    sensor.start()
    print(f"device {device.name} ({device.identity.get('name')}), batch {batch}, sensor {sensor.info.name if sensor else 'none'} {note}")
    protocol = Protocol(batch_size=batch, rounds=5, min_round_s=1.0, warmup_s=1.0, idle_s=0)
    if args.variant:
        bench_variant(args, device, sensor, protocol, batch)
        sensor.close()
        return
    for name in args.models.split(","):
        model = timm.create_model(name, pretrained=False).eval().to(device.torch_device)
        x = torch.randn(batch, *model.pretrained_cfg["input_size"], device=device.torch_device)
        bare, harness = [], []
        for _ in range(args.repeats):
            with torch.inference_mode():
                steady = run_protocol(
                    lambda model=model, x=x: model(x), batch, MeasureContext(device.synchronize, sensor or NullSensor()), protocol, measure_idle=False
                )
            harness.append(sum(r.images for r in steady.rounds) / sum(r.duration_s for r in steady.rounds))
            bare.append(bare_images_per_s(model, x, device.synchronize, seconds=5.0))
        b, h = statistics.median(bare), statistics.median(harness)
        print(f"{name:28s} bare {b:8.1f} img/s   harness {h:8.1f} img/s   ratio {h / b:.3f}  (target >= 0.97)")
    sensor.close()


if __name__ == "__main__":
    main()
