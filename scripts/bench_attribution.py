"""Both attribution methods on deit_tiny, levit_128s and edgevit_xxs (random weights, this CPU), and
what attribution costs the case's own figures.

For each model: the case's passes (the e3p protocol, short), then the attribution (both methods) on
the same sensor the passes used. Printed per group: Method 1's share of the energy ("attributed by
time share"), Method 2's share ("differential measurement" of truncated models, with its noise), their
difference in points and the flag where they disagree beyond the noise. Then the overhead: the case's
latency in passes that attribution follows against passes it does not, alternating, repeated, as a
ratio (attribution runs after the passes, so it should be 1 within noise), and the profiler's own
slow-down of the profiled forward.

On a CPU without readable RAPL the sensor is the labelled CPU-time estimate: the figures are
estimates. On a shared machine the figures are noisy; the script says how noisy.

    python scripts/bench_attribution.py [--batch 4] [--repeats 3] [--models deit_tiny_patch16_224,levit_128s,edgevit_xxs]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

import pytest_e3p  # noqa: F401 - registers EdgeViT with timm
from pytest_e3p.hardware.devices import resolve
from pytest_e3p.hardware.sensors import NullSensor
from pytest_e3p.measure.attribution import CaseFigures, attribute
from pytest_e3p.measure.context import MeasureContext
from pytest_e3p.measure.protocols import Protocol, run_protocol
from pytest_e3p.models.parts import model_parts
from pytest_e3p.report.attribution import ROLE_NAMES


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="deit_tiny_patch16_224,levit_128s,edgevit_xxs")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3, help="alternations of the overhead measurement")
    ap.add_argument("--round-s", type=float, default=0.5)
    args = ap.parse_args(argv)
    import timm

    device = resolve("cpu")
    sensor, note = device.open_sensor()
    sensor = sensor or NullSensor(note)
    sensor.start()
    print(f"sensor: {sensor.info.name} ({sensor.info.kind}){'; ' + note if note else ''}")
    print(f"torch threads: {torch.get_num_threads()}; batch {args.batch}; random weights")
    protocol = Protocol(batch_size=args.batch, rounds=3, passes=3, min_round_s=args.round_s, warmup_s=args.round_s, idle_s=0.0)

    def context() -> MeasureContext:
        return MeasureContext(sensor=sensor)

    try:
        for name in args.models.split(","):
            torch.manual_seed(0)
            model = timm.create_model(name, pretrained=False).eval()
            x = torch.randn(args.batch, 3, 224, 224)
            with torch.inference_mode():
                bench_model(name, model, x, protocol, context, args.repeats)
    finally:
        sensor.close()
    return 0


def case_pass(model: torch.nn.Module, x: torch.Tensor, protocol: Protocol, context) -> tuple[float | None, float]:
    steady = run_protocol(lambda: model(x), x.shape[0], context(), protocol, measure_idle=False)
    return steady.energy_mj_per_image, steady.latency_ms_per_image


def bench_model(name: str, model: torch.nn.Module, x: torch.Tensor, protocol: Protocol, context, repeats: int) -> None:
    mp = model_parts(model)
    passes = [case_pass(model, x, protocol, context) for _ in range(protocol.passes)]
    energies = [e for e, _ in passes if e is not None]
    energy = statistics.median(energies) if energies else None
    kind = str(context().sensor.info.kind)
    started = time.monotonic()
    a = attribute(mp, "both", lambda: model(x), mp.prefixes(), x, x.shape[0], context, protocol, CaseFigures(energy, energies, kind))
    print(
        f"\n== {name}: case {energy:.4g} mJ/img ({kind}), {statistics.median(lat for _, lat in passes):.4g} ms/img; attribution took {time.monotonic() - started:.0f} s"
    )
    print("   M1 share: of the case's energy; M2 share: of the whole model's energy in Method 2; the flag compares the two in mJ/img against M2's noise")
    print(f"   {'group':<14} {'M1 share %':>10} {'M2 share %':>11} {'M2 noise %':>10} {'M1-M2 pts':>9}  flag")
    whole = a.prefixes[-1].energy_mj_per_image if a.prefixes else None
    agree = []
    for g in a.groups:
        m1 = 100 * (g.time_share or 0.0)
        m2 = 100 * g.method2_mj_per_image / whole if whole and g.method2_mj_per_image is not None else None
        noise = 100 * g.method2_noise_mj_per_image / whole if whole and g.method2_noise_mj_per_image is not None else None
        if m2 is not None:
            agree.append(abs(m1 - m2))
        m2_text = f"{m2:11.1f}" if m2 is not None else f"{'-':>11}"
        noise_text = f"{noise:10.1f}" if noise is not None else f"{'-':>10}"
        diff_text = f"{m1 - m2:+9.1f}" if m2 is not None else f"{'-':>9}"
        print(f"   {g.name:<14} {m1:10.1f} {m2_text} {noise_text} {diff_text}  {'power not proportional to time' if g.disagree else ''}")
    roles: dict[str, float] = {}
    for p in a.parts:
        roles[p.role] = roles.get(p.role, 0.0) + (p.time_share or 0.0)
    print("   Method 1 by role: " + ", ".join(f"{ROLE_NAMES.get(r, r)} {100 * s:.1f} %" for r, s in sorted(roles.items(), key=lambda rs: -rs[1])))
    if a.prefixes:
        # the estimate's static term follows wall time: a busier machine makes the same work dearer
        print(
            f"   latency: case {statistics.median(lat for _, lat in passes):.4g} ms/img, the whole model in Method 2 "
            f"{statistics.median(a.prefixes[-1].latency_ms_per_image_passes):.4g} ms/img (passes {', '.join(f'{v:.4g}' for v in a.prefixes[-1].latency_ms_per_image_passes)})"
        )
    if agree:
        print(f"   agreement: mean |M1 - M2| {statistics.fmean(agree):.1f} points over {len(agree)} groups; flagged {sum(bool(g.disagree) for g in a.groups)}")
    print(
        f"   checks: M1 sum {100 * (a.method1_sum_ratio or 0):.1f} % ({'ok' if a.method1_sum_ok else 'off'}); prefixes monotone {a.prefixes_monotone}; "
        f"whole = case within noise {a.whole_matches_case}" + "".join(f"\n   note: {n}" for n in a.notes)
    )
    # the overhead: passes followed by an attribution (Method 1, the profiler) against passes that are not
    plain, followed = [], []
    for _ in range(repeats):
        plain.append(case_pass(model, x, protocol, context)[1])
        followed.append(case_pass(model, x, protocol, context)[1])
        attribute(mp, "time", lambda: model(x), [], x, x.shape[0], context, protocol, CaseFigures(energy, energies, kind))
    ratio = statistics.median(followed) / statistics.median(plain)
    spread = (max(plain) - min(plain)) / 2 / statistics.median(plain)
    print(
        f"   overhead: case latency with attribution afterwards / without = {ratio:.3f} (median of {repeats} alternations; "
        f"the plain passes' own half-range is {100 * spread:.1f} %); the profiled forward is {a.profiler_overhead_ratio or float('nan'):.2f}x the unprofiled one"
    )


if __name__ == "__main__":
    sys.exit(main())
