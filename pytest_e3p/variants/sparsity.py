"""Unstructured sparsity: the P % smallest-magnitude weights of every Linear layer set to zero with
torch.nn.utils.prune.l1_unstructured, then made permanent with prune.remove.

The tensors stay dense and the kernels are the same dense kernels, so latency and energy are not
expected to move: this variant measures exactly that (a sparse model only gets faster with sparse
kernels or 2:4 sparse tensor cores, which this variant does not use). Parameter and MAC counts are
unchanged (zeros are still stored and multiplied), so params_m and gmacs are None. The classifier
head is left dense, as pruning practice does for the last layer."""

from __future__ import annotations

import copy

import torch
from torch.nn.utils import prune

from .base import PreparedVariant, VariantRequest, module_forward


def prepare(request: VariantRequest) -> PreparedVariant:
    assert request.param is not None  # sparse-P always has its P
    percent, model, torch_device = request.param, request.model, request.torch_device
    net = copy.deepcopy(model).to(torch_device).eval()
    get_classifier = getattr(net, "get_classifier", None)
    head = get_classifier() if callable(get_classifier) else None
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear) and m is not head]
    with torch.no_grad():
        for layer in linears:
            prune.l1_unstructured(layer, "weight", amount=percent / 100)
            prune.remove(layer, "weight")  # the mask is applied into the weight: plain Linear again
    zeros = sum(int((m.weight == 0).sum()) for m in linears)
    total = sum(m.weight.numel() for m in linears)
    return PreparedVariant(
        name=request.name,
        forward=module_forward(net, torch.float32),
        detail=f"torch.nn.utils.prune.l1_unstructured: {100 * zeros / max(total, 1):.1f} % of the weights of {len(linears)} Linear layers zero, stored dense (dense kernels: latency not expected to move)",
        bound=request.bound,
        runtime=net,
    )
