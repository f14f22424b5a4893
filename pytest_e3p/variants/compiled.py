"""torch.compile (TorchInductor): the same fp32 model, compiled for the input shape of the run.

Compilation happens in the first calls; prepare() makes them, so their time is prepare_s and never
part of a measured round. A machine where Inductor cannot build (no C++ compiler for the CPU
backend, no Triton for CUDA) gets a skip with the compiler's own first line, not a failed case."""

from __future__ import annotations

import copy

import torch

from ..text import error_line
from .base import PreparedVariant, VariantRequest, VariantUnavailable


def prepare(request: VariantRequest) -> PreparedVariant:
    import torch._dynamo

    model, example_input, torch_device = request.model, request.example_input, request.torch_device
    net = copy.deepcopy(model).to(torch_device).eval()
    # Dynamo stops compiling a code object after `recompile_limit` (8) shapes, across all
    # torch.compile calls of the process, and then runs it eagerly without a word: a run of many
    # models, batches or sizes would measure eager time labelled "compile". Lift the limits, and
    # check below that this preparation really compiled a graph.
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 1024)
    torch._dynamo.config.accumulated_recompile_limit = max(torch._dynamo.config.accumulated_recompile_limit, 4096)
    graphs_before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    # dynamic=False: one graph for the run's batch shape, which is what the protocol feeds it
    compiled = torch.compile(net, dynamic=False)

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return compiled(x)

    try:
        forward(example_input.to(torch_device))
    except Exception as exc:  # Inductor's failures come as many types (BackendCompilerFailed, CalledProcessError, ...)
        raise VariantUnavailable(f"torch.compile does not work on this machine ({error_line(exc, 200)})") from None
    if torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs_before:
        raise VariantUnavailable("torch.compile compiled no graph for this model (Dynamo fell back to eager): its time would not be compile's")
    return PreparedVariant(
        name=request.name,
        forward=forward,
        detail=f"torch.compile (inductor, dynamic=False), torch {torch.__version__}",
        bound=request.bound,
        batch_size=int(example_input.shape[0]),
        runtime=compiled,
    )
