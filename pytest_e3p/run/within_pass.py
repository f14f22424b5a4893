"""Variants against their fp32 reference, pass by pass, and the order that makes that fair.

A variant's saving is the ratio of its energy per image to its fp32 reference's. Measured in
different passes, that ratio carries whatever the machine did between them (a turbo budget spent, a
neighbour's job, the room warming): under load, a 10 % gain read as 61 %. So within every pass each
fp32 case is followed at once by its variants (same model, device, dataset, batch and image size),
and the change is the median of the per-pass ratios, with their smallest and largest as its spread:
a drift between passes multiplies both sides of a pass's ratio and cancels.
"""

from __future__ import annotations

import statistics
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import TypeVar

from ..storage import results
from ..storage.records import VsReference
from .case import Case

REFERENCE = "fp32"  # the eager model every variant is compared with
T = TypeVar("T")


def reference_key(case: Case) -> tuple[Hashable, ...]:
    """What a variant shares with its fp32 reference: everything but the variant."""
    return (case.model.full, case.device, case.dataset.name, case.batch_size, case.image_size)


def grouped(items: Sequence[T], key_of: Mapping[int, tuple[Hashable, ...]], variant_of: Mapping[int, str]) -> list[T]:
    """`items` reordered so that each group (same key) is contiguous, at the place of its first
    member, its fp32 first and its variants after it in their own order. Items without a key (not
    e3p cases) keep their place relative to the groups. `key_of`/`variant_of` are by index."""
    order: dict[object, list[int]] = {}
    for i in range(len(items)):
        group: object = key_of.get(i, ("not a case", i))
        order.setdefault(group, []).append(i)
    out: list[T] = []
    for members in order.values():
        # sorted is stable: fp32 first, the variants in the order they were given
        out += [items[i] for i in sorted(members, key=lambda i: variant_of.get(i) != REFERENCE)]
    return out


def pass_order(cases: Iterable[Case]) -> list[Case]:
    """The cases of a pass, each fp32 case followed by its variants."""
    cases = list(cases)
    return grouped(cases, {i: reference_key(c) for i, c in enumerate(cases)}, {i: c.variant for i, c in enumerate(cases)})


def _ratios(variant: list[float], reference: list[float]) -> list[float]:
    """Per-pass ratios variant / reference, where both measured the pass (the same count of passes
    is how a pass is matched: pass k of each ran in the session's pass k)."""
    if not variant or len(variant) != len(reference):
        return []
    return [v / r for v, r in zip(variant, reference) if r > 0]


def vs_reference(variant: results.CaseResult, reference: results.CaseResult) -> VsReference | None:
    """The variant against its fp32 reference, pass by pass; None where there is nothing to compare
    (either did not measure, or their passes do not pair up)."""
    if variant.status != results.OK or reference.status != results.OK:
        return None
    latency = _ratios(variant.latency_ms_per_image_passes, reference.latency_ms_per_image_passes)
    if not latency:
        return None
    energy = _ratios(variant.energy_mj_per_image_passes, reference.energy_mj_per_image_passes)
    # the spread that decides: energy's where energy was measured, latency's otherwise
    decides = energy or latency
    within = len(decides) < 2 or min(decides) <= 1.0 <= max(decides)
    return VsReference(
        reference_case_id=reference.case_id,
        passes=len(latency),
        energy_ratio=statistics.median(energy) if energy else None,
        energy_ratio_low=min(energy) if energy else None,
        energy_ratio_high=max(energy) if energy else None,
        latency_ratio=statistics.median(latency),
        latency_ratio_low=min(latency),
        latency_ratio_high=max(latency),
        within_noise=within,
    )


def result_key(r: results.CaseResult) -> tuple[Hashable, ...]:
    """reference_key of a finished record (its image size as measured)."""
    return (r.model, r.device, r.dataset, r.batch_size, tuple(r.image_size))


def compare_variants(records: Mapping[str, results.CaseResult]) -> None:
    """Set `vs_reference` on every variant whose fp32 reference is among `records` (None where it is
    not, or where the two cannot be compared), in place."""
    references = {result_key(r): r for r in records.values() if r.variant == REFERENCE}
    for r in records.values():
        if r.variant == REFERENCE:
            continue
        reference = references.get(result_key(r))
        r.vs_reference = vs_reference(r, reference) if reference is not None else None
