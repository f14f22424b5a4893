"""Stage 1, device-agnostic: complexity, NetScore, and Pareto screening of a model pool.

Screening keeps the models on the Pareto front of (reference top-1 up, GMACs down, parameters down),
plus a fixed keep-list; every dropped model is reported with the models that dominate it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass

from ..metrics import netscore
from .complexity import Complexity, measure_complexity
from .zoo import ModelName, reference

OBJECTIVES = {"top1": True, "gmacs": False, "params": False}  # name -> higher is better


@dataclass
class Stage1Row:
    model: str
    params_m: float
    gmacs: float
    top1_ref: float | None  # timm's ImageNet-1k top-1 (%) for these weights
    netscore: float | None
    kept: bool = True
    why: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def complexity_of(model: ModelName, cache: MutableMapping | None = None, built=None) -> Complexity:
    """Parameters and GMACs of the ImageNet (1000-class) model, counted once and cached.

    `cache` is any mapping (pytest's cache, a dict); keys carry the torch and timm versions.
    `built` is the 1000-class model when the caller has it already (saves building it again)."""
    import timm
    import torch

    key = f"e3p/complexity/v2/{model.arch}/{torch.__version__}/{timm.__version__}"
    hit = cache.get(key) if cache is not None else None
    if hit:
        return Complexity(hit["params_m"], hit["gmacs"], tuple(hit["input_size"]))
    # num_classes=1000: some default tags (tiny_vit's dist_in22k) carry a 21,841-class head
    net = built if built is not None else timm.create_model(model.arch, pretrained=False, num_classes=1000)
    result = measure_complexity(net)
    if cache is not None:
        cache[key] = {"params_m": result.params_m, "gmacs": result.gmacs, "input_size": list(result.input_size)}
    return result


def stage1_row(model: ModelName, cx: Complexity) -> Stage1Row:
    ref = reference(model)
    top1 = ref.top1 if ref else None
    score = netscore(top1, cx.params_m, cx.gmacs) if top1 else None
    return Stage1Row(model.full, cx.params_m, cx.gmacs, top1, score)


# Dominance needs a margin beyond the precision of the reference data: a top-1 on ImageNet's 50,000
# validation images has a standard error of about 0.2 points (and timm's table rounds to 0.001), and
# counted parameters and MACs of two variants of one architecture (levit_192 and levit_conv_192) agree
# to well under 1 %. Within these margins two models are equal in that objective.
MARGINS = {"top1": ("abs", 0.2), "gmacs": ("rel", 0.01), "params": ("rel", 0.01)}


def _better_by(a: float, b: float, up: bool, margin: tuple[str, float]) -> float:
    """How much a is better than b, in units of the margin (> 1: clearly better, < -1: clearly worse)."""
    kind, size = margin
    diff = (a - b) if up else (b - a)
    scale = size if kind == "abs" else size * max(abs(a), abs(b), 1e-12)
    return diff / scale


def _dominates(p: list[float], q: list[float], maximize: list[bool], margins: list[tuple[str, float]]) -> bool:
    """p dominates q: nowhere clearly worse, and somewhere clearly better."""
    scores = [_better_by(a, b, up, m) for a, b, up, m in zip(p, q, maximize, margins)]
    return all(x >= -1 for x in scores) and any(x > 1 for x in scores)


def screen(rows: list[Stage1Row], objectives: Iterable[str] = tuple(OBJECTIVES), keep: Iterable[str] = ()) -> list[Stage1Row]:
    """Mark each row kept or dropped (in place) by Pareto dominance; returns the rows."""
    objectives = list(objectives)
    keep = set(keep)
    scored = [r for r in rows if r.top1_ref is not None]
    values = {"top1": lambda r: r.top1_ref, "gmacs": lambda r: r.gmacs, "params": lambda r: r.params_m}
    points = [[values[o](r) for o in objectives] for r in scored]
    maximize = [OBJECTIVES[o] for o in objectives]
    margins = [MARGINS[o] for o in objectives]
    for i, row in enumerate(scored):
        better = [j for j in range(len(scored)) if j != i and _dominates(points[j], points[i], maximize, margins)]
        if not better:
            row.kept, row.why = True, "on the Pareto front"
        elif row.model in keep or row.model.split(".")[0] in keep:
            row.kept, row.why = True, "kept by the keep-list"
        else:
            names = ", ".join(scored[j].model for j in better[:2])
            row.kept, row.why = False, f"dominated by {names}{f' (+{len(better) - 2} more)' if len(better) > 2 else ''}"
    for row in rows:
        if row.top1_ref is None:
            row.kept, row.why = True, "no reference accuracy: not screened"
    return rows
