"""Names of cases that tell them apart, and the one way a variant's change against fp32 is written.

A run of one model in three forms at two batch sizes holds six cases of the same model: naming each
by its model alone made the plots, tables and "rank moves" lines list one name six times. A label is
the model's short name (as in the test id) plus only the axes that differ among the cases shown
together, so a plain ranking of 13 models stays 13 bare names.

`format_change` is shared by every table that shows a variant against fp32 (the terminal's, the
variants table, the dashboard): a change whose per-pass interval holds 1.0 is within the noise and
is written "~", never as a saving a ranking could rest on.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence

from ..storage.records import VsReference
from ..storage.results import CaseResult

FP32 = "fp32"


def short_name(c: CaseResult) -> str:
    """The model as in the test id (`run/case.py`: model-device-dataset[-variant][-bsN][-Npx]): the
    bare arch where the tag is timm's default, arch.tag otherwise; the full model name when the id
    is not of that form."""
    marker = f"-{c.device}-{c.dataset}"
    head, found, _ = c.case_id.partition(marker)
    return head if found and head else c.model


def _size(c: CaseResult) -> str:
    return f"{c.image_size[-1]}px" if c.image_size else "?px"


# Each axis a case can differ on, in the order a label names them, and how it is written.
AXES: tuple[tuple[str, Callable[[CaseResult], str]], ...] = (
    ("variant", lambda c: c.variant),
    ("batch", lambda c: f"b{c.batch_size}"),
    ("size", _size),
    ("dataset", lambda c: c.dataset),
    ("device", lambda c: c.device),
)


def case_axes(cases: Sequence[CaseResult]) -> dict[str, list[str]]:
    """case_id -> the values of the axes (variant, batch "b64", size "384px", dataset, device) on
    which the given cases of the same model differ, in that order; [] for a model shown once."""
    by_model: dict[str, list[CaseResult]] = defaultdict(list)
    for c in cases:
        by_model[short_name(c)].append(c)
    axes: dict[str, list[str]] = {}
    for group in by_model.values():
        differing = [fmt for _axis, fmt in AXES if len({fmt(c) for c in group}) > 1]
        for c in group:
            axes[c.case_id] = [fmt(c) for fmt in differing]
    return axes


def case_labels(cases: Sequence[CaseResult]) -> dict[str, str]:
    """case_id -> the shortest label that tells the given cases apart: the model's short name, plus
    each axis (variant, batch "b64", size "384px", dataset, device) on which the cases of that model
    differ. Cases that still share a label (the same case in two results files) keep their ids."""
    by_id = {c.case_id: c for c in cases}
    labels = {cid: " ".join([short_name(by_id[cid]), *values]) for cid, values in case_axes(cases).items()}
    counts = Counter(labels.values())
    return {cid: (cid if counts[label] > 1 else label) for cid, label in labels.items()}


def _ratios(vs: VsReference, metric: str) -> tuple[float | None, float | None, float | None]:
    """(median, low, high) of the per-pass ratios variant / fp32 of "energy" or "latency"."""
    if metric == "energy":
        return vs.energy_ratio, vs.energy_ratio_low, vs.energy_ratio_high
    if metric == "latency":
        return vs.latency_ratio, vs.latency_ratio_low, vs.latency_ratio_high
    raise ValueError(f"format_change compares 'energy' or 'latency', not {metric!r}")


def change_within_noise(vs: VsReference, metric: str) -> bool | None:
    """Whether the per-pass interval of `metric`'s ratio holds 1.0 (or fewer than 2 passes gave
    one); None when the ratio was not measured."""
    ratio, low, high = _ratios(vs, metric)
    if ratio is None:
        return None
    if vs.passes < 2 or low is None or high is None:
        return True
    return low <= 1.0 <= high


def format_change(vs: VsReference | None, metric: str) -> str:
    """A variant's change against fp32 from its per-pass ratios ("energy" or "latency"):
    "-10.2% [-12.0%, -8.1%]" (median of the per-pass changes, then their min and max), "~ [...]"
    when that interval holds no change (within the noise: no saving is claimed), "~ (1 pass)" when
    one pass gives no interval, "-" when not measured."""
    if vs is None:
        return "-"
    ratio, low, high = _ratios(vs, metric)
    within = change_within_noise(vs, metric)
    if ratio is None or within is None:
        return "-"
    if vs.passes < 2 or low is None or high is None:
        return "~ (1 pass)"
    interval = f"[{low - 1.0:+.1%}, {high - 1.0:+.1%}]"
    return f"~ {interval}" if within else f"{ratio - 1.0:+.1%} {interval}"
