"""The models layer: the model names and the paper's reference figures (zoo), building a model with
its weights (build), parameter and MAC counting (complexity), stage-1 screening (screening), the
EdgeViT architecture registered with timm (edgevit) and the evaluation datasets (datasets). The
fine-tuning command, which also evaluates, is pytest_e3p.finetune, above the measurement layer.

Everything is imported on first use: most of it needs torch or timm."""

from __future__ import annotations

from typing import Any

from ..lazy import lazy_attribute

__all__ = [
    "CANDIDATES",
    "CHECKPOINT",
    "PAPER13",
    "PRETRAINED",
    "RANDOM",
    "Complexity",
    "DatasetError",
    "DatasetSpec",
    "ImageSizeError",
    "ModelName",
    "Stage1Row",
    "UnknownModel",
    "Weights",
    "WeightsError",
    "build_model",
    "check_image_size",
    "checkpoint_path",
    "complexity_of",
    "count_gmacs",
    "count_params_m",
    "measure_complexity",
    "model_input_size",
    "open_dataset",
    "parse_datasets",
    "parse_model",
    "reference",
    "resolve_models",
    "screen",
    "stage1_row",
]

# Names only: a name equal to a submodule's (edgevit) would be shadowed by the submodule once imported.
_LAZY = {
    "CANDIDATES": "zoo",
    "PAPER13": "zoo",
    "ModelName": "zoo",
    "UnknownModel": "zoo",
    "parse_model": "zoo",
    "reference": "zoo",
    "resolve_models": "zoo",
    "CHECKPOINT": "build",
    "PRETRAINED": "build",
    "RANDOM": "build",
    "Weights": "build",
    "WeightsError": "build",
    "build_model": "build",
    "ImageSizeError": "build",
    "check_image_size": "build",
    "checkpoint_path": "build",
    "Complexity": "complexity",
    "count_gmacs": "complexity",
    "count_params_m": "complexity",
    "measure_complexity": "complexity",
    "model_input_size": "complexity",
    "Stage1Row": "screening",
    "complexity_of": "screening",
    "screen": "screening",
    "stage1_row": "screening",
    "DatasetError": "datasets",
    "DatasetSpec": "datasets",
    "open_dataset": "datasets",
    "parse_datasets": "datasets",
}


def __getattr__(name: str) -> Any:
    return lazy_attribute(__name__, _LAZY, name)
