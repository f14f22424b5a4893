"""Where a case's energy goes: its parts (models.parts), by two methods that check each other.

Method 1, "attributed by time share": the case's forward is run a few times under torch.profiler with
a record_function range around each part (module hooks); on CUDA a range's time is that of the
kernels launched inside it. A part's own time is its range less the ranges inside it; "other" is
what no part covers (the glue code between modules). Each share of the whole forward's time, times
the case's measured energy per image, is the part's energy: this assumes power is the same whatever
runs, which memory-bound and compute-bound kernels break.

Method 2, "differential measurement": each truncated model (stem, stem + first group, ..., the whole
model) is measured by the bench's sensor under the case's protocol (warm-up, rounds, one value per
pass; the passes interleaved over the prefixes, so a drift touches them all alike), and a group's
energy is the difference of two consecutive prefixes. Its noise is the root-sum-square of the two
prefixes' spreads, a prefix's spread being half the range of its pass values. No assumption about
power is made, only that a prefix costs what the same modules cost inside the whole model.

Both run after the case's measured passes, so the case's own figures do not move. On an estimating
sensor both are estimates, and labelled so (the record's energy_kind)."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..hardware.sensors import SensorFault, measures_energy
from ..models.parts import HEAD, OTHER, STEM, ModelParts, TruncatedModel
from ..storage.records import AttributedPart, Attribution, PrefixEnergy
from .context import MeasureContext
from .protocols import EDGEVIT, Protocol, SteadyState, run_edgevit, run_protocol

METHOD1, METHOD2 = "attributed by time share", "differential measurement"
SUM_TOLERANCE = 0.02  # Method 1's parts (with "other") must sum to the whole within 2 %
PROFILED_CALLS = 5  # forward calls under the profiler, after two unprofiled ones
RANGE = "e3p::"
WHOLE = RANGE + "<whole>"
NOISE_RULE = "root-sum-square of the two prefixes' spreads (half the range of each prefix's pass values)"


@dataclass(frozen=True)
class TimeProfile:
    """Method 1's times: each part's own time and the whole forward's, in microseconds (summed over
    the profiled calls), and the unprofiled forward's time for the profiler's overhead."""

    own_us: dict[str, float]
    whole_us: float
    raw_sum_us: float  # the parts' own times plus "other" before it is clamped at zero
    unprofiled_s: float | None = None
    profiled_s: float | None = None
    device_time: bool = False  # the ranges' times are CUDA kernel times

    def share(self, path: str) -> float:
        return self.own_us.get(path, 0.0) / self.whole_us if self.whole_us > 0 else 0.0


def profile_parts(mp: ModelParts, forward: Callable[[], Any], synchronize: Callable[[], None], cuda: bool = False, calls: int = PROFILED_CALLS) -> TimeProfile:
    """Run `forward` `calls` times under torch.profiler with a range per part; each part's own time."""
    from torch.autograd.profiler import record_function
    from torch.profiler import ProfilerActivity, profile

    for _ in range(2):  # the first calls allocate and pick kernels
        forward()
    synchronize()
    t0 = time.perf_counter()
    for _ in range(calls):
        forward()
    synchronize()
    unprofiled_s = (time.perf_counter() - t0) / calls
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof, mp.ranged(lambda path: record_function(RANGE + path)):
        t0 = time.perf_counter()
        for _ in range(calls):
            with record_function(WHOLE):
                forward()
            synchronize()
        profiled_s = (time.perf_counter() - t0) / calls
    inclusive = _range_times(prof.events(), cuda)
    device_time = cuda and inclusive.get(WHOLE[len(RANGE) :], 0.0) > 0
    if cuda and not device_time:  # no kernel reached the ranges (a CPU-only run on a CUDA build)
        inclusive = _range_times(prof.events(), False)
    whole = inclusive.pop(WHOLE[len(RANGE) :], 0.0)
    own = own_times(mp, inclusive)
    top = sum(own.values())
    own[OTHER] = max(0.0, whole - top)
    return TimeProfile(own, whole, top + own[OTHER], unprofiled_s, profiled_s, device_time)


def _range_times(events: Any, device: bool) -> dict[str, float]:
    """Each range's time, summed over its calls: the CPU-side range events only (on CUDA the profiler
    also lists each range's span on the GPU, which would count it twice); with `device`, the time of
    the kernels launched inside the range (torch's device_time_total of a CPU event includes its
    children's kernels), else its CPU wall time."""
    from torch.autograd import DeviceType

    out: dict[str, float] = {}
    for evt in events:
        if not evt.name.startswith(RANGE) or evt.device_type != DeviceType.CPU:
            continue
        name = evt.name[len(RANGE) :]
        out[name] = out.get(name, 0.0) + float(evt.device_time_total if device else evt.cpu_time_total)
    return out


def own_times(mp: ModelParts, inclusive: dict[str, float]) -> dict[str, float]:
    """Each part's time less that of the parts directly inside it (never below zero)."""
    children: dict[str, float] = {}
    for p in mp.parts:
        if p.parent:
            children[p.parent] = children.get(p.parent, 0.0) + inclusive.get(p.path, 0.0)
    return {p.path: max(0.0, inclusive.get(p.path, 0.0) - children.get(p.path, 0.0)) for p in mp.parts}


def _spread(values: list[float]) -> float:
    return (max(values) - min(values)) / 2 if len(values) > 1 else 0.0


def _caller(prefix: TruncatedModel, x: torch.Tensor) -> Callable[[], Any]:
    return lambda: prefix(x)


def measure_prefixes(
    prefixes: list[TruncatedModel],
    x: torch.Tensor,
    images: int,
    context: Callable[[], MeasureContext],
    protocol: Protocol,
) -> list[PrefixEnergy]:
    """Method 2's measurements: protocol.passes passes, each over every prefix in turn."""
    runs: list[list[SteadyState]] = [[] for _ in prefixes]
    for _ in range(max(1, protocol.passes)):
        for k, prefix in enumerate(prefixes):
            ctx = context()
            call = _caller(prefix, x)
            with torch.inference_mode():
                if protocol.name == EDGEVIT:
                    runs[k].append(run_edgevit(call, ctx, protocol))
                else:
                    runs[k].append(run_protocol(call, images, ctx, protocol, measure_idle=False))
    out = []
    for prefix, passes in zip(prefixes, runs):
        energies = [v for p in passes if (v := p.energy_mj_per_image) is not None]
        spread = _spread(energies) if len(energies) > 1 else _spread([s for p in passes for s in p.energy_mj_per_image_samples])
        out.append(
            PrefixEnergy(
                prefix.name,
                energies,
                [p.latency_ms_per_image for p in passes],
                statistics.median(energies) if energies else None,
                spread if energies else None,
            )
        )
    return out


def clock_moves(prefix: TruncatedModel, x: torch.Tensor, clock: Callable[[], float], synchronize: Callable[[], None]) -> bool:
    """Whether the measuring clock advances over a prefix's call: a clock that does not (a scripted
    one that only the case's own forward moves) would make the protocol's rounds never end."""
    t0 = clock()
    with torch.inference_mode():
        for _ in range(3):
            prefix(x)
    synchronize()
    return clock() > t0


@dataclass(frozen=True)
class CaseFigures:
    """What the attribution takes from the case's own record."""

    energy_mj_per_image: float | None
    energy_mj_per_image_passes: list[float]
    energy_kind: str
    total_rail: str | None = None
    rails: tuple[str, ...] = ()


def spread_text(case: CaseFigures) -> str:
    """Which energy Method 1 spreads over the parts."""
    if case.rails:
        total = case.total_rail or "sum"
        what = "the sum of the rails" if total == "sum" else f"the {total} rail"
        return f"{what} (the case's total); the other rails ({', '.join(r for r in case.rails if r != total)}) are not spread per part"
    return "the case's energy per image"


def attribute(
    mp: ModelParts,
    mode: str,
    forward: Callable[[], Any],
    prefixes: list[TruncatedModel],
    x: torch.Tensor,
    images: int,
    context: Callable[[], MeasureContext],
    protocol: Protocol,
    case: CaseFigures,
    on_fault: Callable[[], None] = lambda: None,
) -> Attribution:
    """The case's attribution: Method 1 always, Method 2 where mode is "both" and energy is read.
    `on_fault` is called after a sensor fault in Method 2 (the bench reopens its sensor)."""
    started = time.monotonic()
    ctx = context()
    cuda = ctx.torch_device.startswith("cuda")
    notes: list[str] = []
    prof = profile_parts(mp, forward, ctx.synchronize, cuda)
    if cuda and not prof.device_time:
        notes.append("the profiler saw no CUDA kernel in the ranges: Method 1 uses CPU time")
    energy = case.energy_mj_per_image
    if energy is None:
        notes.append("the case has no energy: Method 1 gives time shares only")
    parts = [AttributedPart(p.path, p.group, p.role, prof.share(p.path), energy * prof.share(p.path) if energy is not None else None) for p in mp.parts]
    parts.append(AttributedPart(OTHER, OTHER, OTHER, prof.share(OTHER), energy * prof.share(OTHER) if energy is not None else None))
    ratio = prof.raw_sum_us / prof.whole_us if prof.whole_us > 0 else None
    measured: list[PrefixEnergy] = []
    if mode == "both":
        if not measures_energy(ctx.sensor):
            notes.append(f"Method 2 needs an energy sensor; {ctx.sensor.info.name} reads none")
        elif not clock_moves(prefixes[0], x, ctx.clock, ctx.synchronize):
            notes.append("Method 2 not run: the measuring clock does not advance over a truncated model's call")
        else:
            try:
                measured = measure_prefixes(prefixes, x, images, context, protocol)
            except SensorFault as exc:
                notes.append(f"Method 2 stopped by a sensor fault: {exc}")
                on_fault()
    groups = _groups(mp, parts, measured)
    monotone = whole_ok = None
    if measured and all(m.energy_mj_per_image is not None for m in measured):
        monotone = all(
            (b.energy_mj_per_image or 0.0) >= (a.energy_mj_per_image or 0.0) - math.hypot(a.spread_mj_per_image or 0.0, b.spread_mj_per_image or 0.0)
            for a, b in zip(measured, measured[1:])
        )
        whole = measured[-1]
        if energy is not None and whole.energy_mj_per_image is not None:
            case_spread = _spread(case.energy_mj_per_image_passes)
            whole_ok = abs(whole.energy_mj_per_image - energy) <= math.hypot(whole.spread_mj_per_image or 0.0, case_spread)
            if not whole_ok:
                notes.append(
                    f"the whole model measured again gives {whole.energy_mj_per_image:.4g} mJ/img against the case's {energy:.4g}: "
                    "the machine's state changed between them (load, clocks, temperature)"
                )
    return Attribution(
        mode=mode,
        energy_kind=case.energy_kind,
        method1_label=METHOD1,
        method2_label=METHOD2,
        spread=spread_text(case),
        case_energy_mj_per_image=energy,
        groups=groups,
        parts=parts,
        prefixes=measured,
        method1_sum_ratio=ratio,
        method1_sum_ok=None if ratio is None else abs(ratio - 1.0) <= SUM_TOLERANCE,
        prefixes_monotone=monotone,
        whole_matches_case=whole_ok,
        profiler_overhead_ratio=prof.profiled_s / prof.unprofiled_s if prof.profiled_s and prof.unprofiled_s else None,
        noise_rule=NOISE_RULE if measured else "",
        notes=notes,
        cost_s=time.monotonic() - started,
    )


def _groups(mp: ModelParts, parts: list[AttributedPart], measured: list[PrefixEnergy]) -> list[AttributedPart]:
    """Each group with Method 1's sum over its parts and Method 2's prefix difference."""
    out = []
    previous: PrefixEnergy | None = None
    for k, group in enumerate(mp.groups):
        mine = [p for p in parts if p.group == group]
        share = sum(p.time_share or 0.0 for p in mine)
        m1 = sum(p.method1_mj_per_image for p in mine if p.method1_mj_per_image is not None) if any(p.method1_mj_per_image is not None for p in mine) else None
        m2 = noise = None
        disagree = None
        if k < len(measured) and measured[k].energy_mj_per_image is not None:
            here = measured[k]
            assert here.energy_mj_per_image is not None
            base = previous.energy_mj_per_image if previous is not None and previous.energy_mj_per_image is not None else 0.0
            m2 = here.energy_mj_per_image - base
            noise = math.hypot(here.spread_mj_per_image or 0.0, previous.spread_mj_per_image or 0.0 if previous is not None else 0.0)
            if m1 is not None:
                disagree = abs(m1 - m2) > noise
            previous = here
        out.append(AttributedPart(group, group, group if group in (STEM, HEAD) else "group", share, m1, m2, noise, disagree))
    other = next((p for p in parts if p.name == OTHER), None)
    if other is not None:
        out.append(other)
    return out


def cost_note(mode: str, protocol: Protocol, prefixes: int = 6) -> str:
    """The start-of-run line stating what --e3p-attribution adds to each case."""
    profiled = "the profiler runs 7 batches per case after its passes"
    if mode == "time":
        return f"attribution: time share only (Method 1): {profiled}, a few seconds per case"
    per_prefix_s = protocol.warmup_s + protocol.rounds * protocol.min_round_s + (protocol.idle_s if protocol.name == EDGEVIT else 0.0)
    if protocol.name == EDGEVIT:
        per_prefix_s = protocol.warmup_s + protocol.idle_s  # plus its inferences, each one batch
    total_s = prefixes * max(1, protocol.passes) * per_prefix_s
    return (
        f"attribution: both methods: up to {prefixes - 1} truncated models and the whole model per case measured after the passes "
        f"({max(1, protocol.passes)} passes each), at least {total_s:.0f} s per case (longer where the sensor's update period lengthens the rounds); {profiled}"
    )
