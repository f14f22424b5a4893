"""torch.compile (TorchInductor): the same fp32 model, compiled for the input shape of the run.

Compilation happens in the first calls; prepare() makes them, so their time is prepare_s and never
part of a measured round. A machine where Inductor cannot build (no C++ compiler for the CPU
backend, no Triton for CUDA) gets a skip with the compiler's own first line, not a failed case."""

from __future__ import annotations

import copy

import torch

from .base import Bound, PreparedVariant, VariantUnavailable, first_line


def prepare(name: str, model: torch.nn.Module, example_input: torch.Tensor, torch_device: str, bound: Bound) -> PreparedVariant:
    net = copy.deepcopy(model).to(torch_device).eval()
    # dynamic=False: one graph for the run's batch shape, which is what the protocol feeds it
    compiled = torch.compile(net, dynamic=False)

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return compiled(x)

    try:
        forward(example_input.to(torch_device))
    except Exception as exc:  # Inductor's failures come as many types (BackendCompilerFailed, CalledProcessError, ...)
        raise VariantUnavailable(f"torch.compile does not work on this machine ({first_line(exc)})") from None
    return PreparedVariant(
        name=name,
        forward=forward,
        input_dtype=torch.float32,
        params_m=None,
        gmacs=None,
        prepare_s=0.0,
        detail=f"torch.compile (inductor, dynamic=False), torch {torch.__version__}",
        bound=bound,
        batch_size=int(example_input.shape[0]),
        runtime=compiled,
    )
