"""--e3p-attribution for one case, after its measured passes: the case's model split into its parts
(models.parts) and attributed by measure.attribution's two methods on the case's bench."""

from __future__ import annotations

from typing import Any

import torch

from ..measure.attribution import CaseFigures, attribute
from ..models.parts import ModelParts, UnsupportedModel, model_parts
from ..storage.records import Attribution
from ..storage.results import CaseResult
from ..text import first_line
from .bench import Bench
from .case import Case
from .loading import LoadedModel, input_batch


def attributed_module(loaded: LoadedModel) -> tuple[torch.nn.Module | None, str]:
    """The torch module the case runs (the eager model, or a variant's module), or None and why not."""
    if loaded.variant is None:
        return loaded.module, ""
    runtime: Any = loaded.variant.runtime
    if not isinstance(runtime, torch.nn.Module):
        kind = type(runtime).__name__ if runtime is not None else "a runtime outside torch"
        return None, f"the {loaded.variant.name} variant runs in {kind}, not a torch module: its parts cannot be timed or truncated"
    if hasattr(runtime, "_orig_mod"):  # torch.compile's wrapper: the compiled graph runs no module hooks
        return None, f"the {loaded.variant.name} variant is compiled: its modules' hooks do not run inside the compiled graph"
    return runtime, ""


def attribute_case(bench: Bench, case: Case, loaded: LoadedModel, result: CaseResult, mode: str) -> Attribution:
    """The case's attribution (mode "both" or "time"); a model without known parts gets a record
    that says why, so the case's own figures stand either way."""
    module, why = attributed_module(loaded)
    figures = CaseFigures(
        result.energy_mj_per_image,
        list(result.energy_mj_per_image_passes),
        str(result.energy_kind),
        result.total_rail,
        tuple(sorted(result.rails_mj_per_image)),
    )
    if module is None:
        return Attribution(mode=mode, energy_kind=figures.energy_kind, notes=[why])
    try:
        parts = model_parts(module)
    except UnsupportedModel as exc:
        return Attribution(mode=mode, energy_kind=figures.energy_kind, notes=[str(exc)])
    x = input_batch(case, loaded.input_size, bench.device.torch_device, loaded.input_dtype)
    forward = loaded.forward
    assert forward is not None  # set in LoadedModel.__post_init__
    # the truncated models take what the module takes: a variant's forward casts the fp32 batch first
    dtype = loaded.variant.input_dtype if loaded.variant is not None else loaded.input_dtype
    xin = x.to(dtype)
    try:
        with torch.inference_mode():
            return _attribute(parts, mode, forward, x, xin, case, bench, figures)
    except Exception as exc:  # a model whose parts do not run as found: the case's own figures stand
        return Attribution(
            mode=mode, energy_kind=figures.energy_kind, notes=[f"attribution failed on this model: {type(exc).__name__}: {first_line(str(exc))}"]
        )


def _attribute(parts: ModelParts, mode: str, forward: Any, x: torch.Tensor, xin: torch.Tensor, case: Case, bench: Bench, figures: CaseFigures) -> Attribution:
    return attribute(
        parts,
        mode,
        lambda: forward(x),
        parts.prefixes(),
        xin,
        case.batch_size,
        bench.context,
        bench.protocol,
        figures,
        on_fault=bench.reopen_sensor,
    )
