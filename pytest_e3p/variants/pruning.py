"""Structured pruning with torch-pruning: whole attention heads (prune-heads-P) or MLP hidden
channels (prune-mlp-P) removed from a timm VisionTransformer, giving a smaller dense model whose
parameters and MACs are counted again (pytest_e3p.models.complexity).

torch-pruning builds a dependency graph of the model and removes coupled channels together: for a
head, its rows in the fused qkv Linear (in q, k and v alike) and the matching input columns of the
attention's proj; for an MLP channel, a row of fc1 and a column of fc2. Which heads / channels go
is decided by GroupMagnitudeImportance (L2 norm of the whole coupled group's weights), the
data-free criterion, so the result does not depend on the calibration images. Every other layer
is in ignored_layers, so the embedding width and the other sub-layer stay as they are.

timm's Attention reshapes with its num_heads / head_dim / attn_dim attributes; they are set to the
pruned sizes afterwards, as torch-pruning's timm ViT example does.

The pruned model is not fine-tuned: its accuracy drop is that of pruning alone, and its logits are
not expected to agree with the fp32 model's (the agreement is reported, not bounded)."""

from __future__ import annotations

import copy
import warnings
from typing import Any

import torch

from ..models.complexity import count_gmacs, count_params_m
from .base import PreparedVariant, VariantRequest, VariantUnavailable, module_forward, require, version_of


def _vit_parts(model: torch.nn.Module, name: str) -> tuple[list[Any], list[Any]]:
    from timm.models.vision_transformer import Attention, Mlp

    attns = [m for m in model.modules() if type(m) is Attention]
    mlps = [m for m in model.modules() if type(m) is Mlp]
    if not attns or not mlps:
        arch = getattr(model, "pretrained_cfg", {}).get("architecture") or type(model).__name__
        raise VariantUnavailable(f"{name} prunes timm ViT/DeiT blocks (Attention with fused qkv, Mlp); {arch} is a {type(model).__name__}")
    return attns, mlps


def prepare(request: VariantRequest) -> PreparedVariant:
    assert request.param is not None  # prune-*-P always has its P
    name, percent, model, example_input, torch_device = request.name, request.param, request.model, request.example_input, request.torch_device
    tp = require("torch_pruning", "torch-pruning", "prune")
    heads = name.startswith("prune-heads-")
    net = copy.deepcopy(model).to("cpu").float().eval()
    attns, mlps = _vit_parts(net, name)
    x = example_input[:1].detach().to("cpu").float()

    if heads:
        num_heads = attns[0].num_heads
        removed = percent * num_heads // 100  # at most P % of the heads (floor), so at least one stays
        if removed == 0:
            least = "no P: there is one" if num_heads == 1 else f"P >= {-(-100 // num_heads)}"
            raise VariantUnavailable(f"{name} removes no head of {num_heads} per block (floor of P % of them); it needs {least}")
        keep = {a.qkv for a in attns}
        # torch-pruning removes ceil(ratio x heads) heads; a ratio half a head below the count gives exactly `removed`
        ratio = (removed - 0.5) / num_heads
        kwargs = dict(
            num_heads={a.qkv: a.num_heads for a in attns},
            prune_num_heads=True,
            prune_head_dims=False,
            head_pruning_ratio=ratio,
            pruning_ratio=ratio,  # must be > 0 for head groups to be visited at all; prune_head_dims=False keeps head_dim
        )
        what = f"{removed} of {num_heads} attention heads removed per block"
    else:
        keep = {m.fc1 for m in mlps}
        kwargs = dict(pruning_ratio=percent / 100)
        hidden = mlps[0].fc1.out_features
    ignored = [m for m in net.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)) and m not in keep]
    with torch.inference_mode(False), warnings.catch_warnings():
        # cls_token and pos_embed are "unwrapped parameters" (no layer of their own) that torch-pruning
        # would prune with the embedding width; the width is never pruned here (every layer that
        # sets it is ignored), so its warning about them does not apply
        warnings.filterwarnings("ignore", message="Unwrapped parameters detected")
        pruner = tp.pruner.MetaPruner(net, x, importance=tp.importance.GroupMagnitudeImportance(p=2), ignored_layers=ignored, **kwargs)
        pruner.step()
    if heads:
        for a in attns:
            a.num_heads = pruner.num_heads[a.qkv]
            a.attn_dim = a.qkv.out_features // 3
            a.head_dim = a.attn_dim // a.num_heads
    else:
        what = f"MLP hidden channels {hidden} -> {mlps[0].fc1.out_features} per block"
    c, h, w = (int(d) for d in example_input.shape[1:])
    params_m, gmacs = count_params_m(net), count_gmacs(net, (c, h, w))
    net = net.to(torch_device)
    return PreparedVariant(
        name=name,
        forward=module_forward(net, torch.float32),
        params_m=params_m,
        gmacs=gmacs,
        detail=f"torch-pruning {version_of(tp, 'torch-pruning')} MetaPruner, L2 group magnitude: {what}; {count_params_m(model):.3f} -> {params_m:.3f} M params; not fine-tuned",
        bound=request.bound,
        runtime=net,
    )
