"""Stage-1 complexity: parameters and multiply-accumulates of one image, counted on the built model."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Complexity:
    params_m: float  # parameters, millions
    gmacs: float  # multiply-accumulates for one image, billions
    input_size: tuple[int, int, int]  # (C, H, W)


def count_params_m(model: torch.nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


def count_gmacs(model: torch.nn.Module, input_size: tuple[int, int, int]) -> float:
    """MACs of one image through FlopCounterMode (FLOPs = 2 x MACs).

    Runs under the MATH attention backend: the fused CPU attention kernel is not counted otherwise
    (vit_tiny reads 1.075 instead of 1.254 GMACs)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    param = next(model.parameters(), None)
    x = torch.zeros((1, *input_size), dtype=param.dtype if param is not None else torch.float32, device=param.device if param is not None else "cpu")
    counter = FlopCounterMode(display=False)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), sdpa_kernel(SDPBackend.MATH), counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 2 / 1e9


def model_input_size(model: torch.nn.Module) -> tuple[int, int, int]:
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", {}) or {}
    return tuple(cfg.get("input_size", (3, 224, 224)))


def measure_complexity(model: torch.nn.Module) -> Complexity:
    size = model_input_size(model)
    return Complexity(count_params_m(model), count_gmacs(model, size), size)
