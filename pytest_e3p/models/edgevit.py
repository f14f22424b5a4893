"""EdgeViT-XXS, -XS and -S (Pan et al., "EdgeViTs: Competing Light-weight CNNs on Mobile Devices with
Vision Transformers", ECCV 2022, arXiv:2205.03436), built with timm's layers and registered with timm.

Importing this module registers `edgevit_xxs`, `edgevit_xs` and `edgevit_s` with timm; `import
pytest_e3p` arranges that (see pytest_e3p/__init__.py), so `timm.create_model("edgevit_xxs")` works
wherever a timm name does: `--e3p-models`, the CLI, finetune.

**No official pretrained weights were ever released** for EdgeViT: a model built without a weights
file has random weights. Weights trained elsewhere load the timm way,
`timm.create_model("edgevit_xxs", pretrained=True, pretrained_cfg_overlay=dict(file=PATH))`, or as a
pytest-e3p checkpoint (`--e3p-checkpoints`). A state dict in the authors' parameter names (their
`src/edgevit.py`: `patch_embed1.proj`, `blocks1.0.LocalAgg.conv1`, `blocks3.2.SelfAttn.attn.LocalProp`,
...) is renamed by `checkpoint_filter_fn`, which the model also runs from `load_state_dict` (a load
pre-hook), so a plain `model.load_state_dict(authors_state_dict)` works too. A state dict of another
variant is refused in one line naming both variants (`EdgeViTVariantError`, a RuntimeError).

Architecture (paper Sec. 3, Table 1, Appendix A.2 Algorithm 1). Where the paper and the authors' public
implementation (github.com/saic-fi/edgevit, src/edgevit.py, Apache-2.0) differ, the implementation is
followed; this file is written anew, none of that code is copied:
- depths XXS (1,1,3,2), XS (1,1,3,1), S (1,2,5,3); Table 1 prints XS (1,1,2,2) and S (1,2,3,2).
- channels XXS (36,72,144,288), XS and S (48,96,240,384); heads = channels / head dim, with head dim
  36 (XXS) and 48 (XS, S): XS and S have 5 heads in stage 3 where Table 1 prints 4. MLP ratio 4,
  qkv with bias.
- down-sampling: a 4x4 stride-4 conv before stage 1, 2x2 stride-2 before stages 2-4 (bias), each
  followed by a LayerNorm over channels (eps 1e-5).
- an LGL block of stages 1-3, each step a residual: 3x3 depthwise conv positional encoding; LocalAgg =
  BatchNorm2d, 1x1 conv, 5x5 depthwise conv, 1x1 conv (Algorithm 1: 3x3, and a second BatchNorm);
  conv MLP (BatchNorm2d, 1x1 to 4C, GELU, 1x1 back); a second positional encoding; global sparse
  attention on tokens = LayerNorm (eps 1e-6), every r-th position of the map (r = 4, 2, 2), multi-head
  attention (scale head_dim^-0.5), LocalProp = depthwise transposed conv with kernel and stride r,
  LayerNorm (eps 1e-5), linear projection; token MLP (LayerNorm eps 1e-6, 4C, GELU, C).
- stage 4 (r = 1): positional encoding, plain multi-head self-attention, MLP; no LocalAgg.
- head: BatchNorm2d on the last map, global average, linear classifier.
- drop path rises linearly over all blocks (0 by default; the authors trained with 0.1); no layer
  scale; linear layers truncated-normal std 0.02, biases 0; convolutions keep PyTorch's init.
- Inputs: any size divisible by 32 (224 in the paper); sampling and LocalProp crop back to the map.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from typing import Any, cast

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, LayerNorm2d, Mlp, calculate_drop_path_rates, trunc_normal_, use_fused_attn
from timm.models import build_model_with_cfg, checkpoint_seq, generate_default_cfgs, is_model, model_entrypoint, register_model
from timm.models._features import feature_take_indices

__all__ = ["EdgeViT", "EdgeViTVariantError", "VARIANTS", "checkpoint_filter_fn", "to_authors_state_dict"]

# name -> (paper name, configuration); the configurations are the authors' implementation's.
VARIANTS: dict[str, tuple[str, dict]] = {
    "edgevit_xxs": ("EdgeViT-XXS", dict(embed_dims=(36, 72, 144, 288), depths=(1, 1, 3, 2), head_dim=36)),
    "edgevit_xs": ("EdgeViT-XS", dict(embed_dims=(48, 96, 240, 384), depths=(1, 1, 3, 1), head_dim=48)),
    "edgevit_s": ("EdgeViT-S", dict(embed_dims=(48, 96, 240, 384), depths=(1, 2, 5, 3), head_dim=48)),
}


class EdgeViTVariantError(RuntimeError):
    """A state dict of one EdgeViT variant given to another."""


class LocalAggBlock(nn.Module):
    """The local half of an LGL block on the (B, C, H, W) map: positional encoding, LocalAgg, conv MLP."""

    def __init__(self, dim: int, mlp_ratio: float, drop_path: float, proj_drop: float, act_layer, dd: dict):
        super().__init__()
        self.pos_embed = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, **dd)
        self.norm1 = nn.BatchNorm2d(dim, **dd)
        self.pw_conv1 = nn.Conv2d(dim, dim, 1, **dd)
        self.dw_conv = nn.Conv2d(dim, dim, 5, padding=2, groups=dim, **dd)
        self.pw_conv2 = nn.Conv2d(dim, dim, 1, **dd)
        self.drop_path1 = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.BatchNorm2d(dim, **dd)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=proj_drop, use_conv=True, **dd)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embed(x)
        x = x + self.drop_path1(self.pw_conv2(self.dw_conv(self.pw_conv1(self.norm1(x)))))
        x = x + self.drop_path2(self.mlp(self.norm2(x)))
        return x


class GlobalSparseAttn(nn.Module):
    """Multi-head attention among every `sample_rate`-th token of the map, spread back by LocalProp.

    With sample_rate 1 it is plain multi-head self-attention (no LocalProp, no norm)."""

    def __init__(self, dim: int, num_heads: int, sample_rate: int, qkv_bias: bool, attn_drop: float, proj_drop: float, dd: dict):
        super().__init__()
        assert dim % num_heads == 0, f"dim {dim} is not a multiple of {num_heads} heads"
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.sample_rate = sample_rate
        self.fused_attn = use_fused_attn()
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias, **dd)
        self.attn_drop = nn.Dropout(attn_drop)
        self.local_prop: nn.ConvTranspose2d | None
        self.norm: nn.Module
        if sample_rate > 1:
            self.local_prop = nn.ConvTranspose2d(dim, dim, sample_rate, stride=sample_rate, groups=dim, **dd)
            self.norm = nn.LayerNorm(dim, eps=1e-5, **dd)
        else:
            self.local_prop = None
            self.norm = nn.Identity()
        self.proj = nn.Linear(dim, dim, **dd)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        B, N, C = x.shape
        H, W = size
        r = self.sample_rate
        h, w = H, W
        if r > 1:  # the paper's uniform sampler, AvgPool2d(1, stride=r): every r-th row and column
            x = x.transpose(1, 2).reshape(B, C, H, W)[:, :, ::r, ::r]
            h, w = x.shape[-2:]
            x = x.flatten(2).transpose(1, 2)
        q, k, v = self.qkv(x).reshape(B, h * w, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        if self.fused_attn:
            x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop.p if self.training else 0.0)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            x = self.attn_drop(attn.softmax(dim=-1)) @ v
        x = x.transpose(1, 2).reshape(B, h * w, C)
        if self.local_prop is not None:
            x = self.local_prop(x.transpose(1, 2).reshape(B, C, h, w))[:, :, :H, :W]
            x = self.norm(x.flatten(2).transpose(1, 2))
        return self.proj_drop(self.proj(x))


class GlobalAttnBlock(nn.Module):
    """The global half of an LGL block: positional encoding on the map, then on tokens the (sparse)
    attention and the MLP, each pre-norm and residual."""

    def __init__(self, dim, num_heads, sample_rate, mlp_ratio, qkv_bias, drop_path, proj_drop, attn_drop, act_layer, dd):
        super().__init__()
        self.pos_embed = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, **dd)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6, **dd)
        self.attn = GlobalSparseAttn(dim, num_heads, sample_rate, qkv_bias, attn_drop, proj_drop, dd)
        self.drop_path1 = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6, **dd)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=proj_drop, **dd)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embed(x)
        B, C, H, W = x.shape
        x = x.flatten(2).transpose(1, 2)
        x = x + self.drop_path1(self.attn(self.norm1(x), (H, W)))
        x = x + self.drop_path2(self.mlp(self.norm2(x)))
        return x.transpose(1, 2).reshape(B, C, H, W)


class LGLBlock(nn.Module):
    """Local-global-local bottleneck: LocalAgg (stages with sample rate > 1), then global attention."""

    def __init__(self, dim, num_heads, sample_rate, mlp_ratio, qkv_bias, drop_path, proj_drop, attn_drop, act_layer, dd):
        super().__init__()
        self.local_agg = LocalAggBlock(dim, mlp_ratio, drop_path, proj_drop, act_layer, dd) if sample_rate > 1 else nn.Identity()
        self.global_attn = GlobalAttnBlock(dim, num_heads, sample_rate, mlp_ratio, qkv_bias, drop_path, proj_drop, attn_drop, act_layer, dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.global_attn(self.local_agg(x))


class Downsample(nn.Module):
    """Strided conv (kernel = stride) and a LayerNorm over channels."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, dd: dict):
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, stride, stride=stride, **dd)
        self.norm = LayerNorm2d(out_chs, eps=1e-5, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class EdgeViTStage(nn.Module):
    def __init__(self, in_chs, out_chs, stride, depth, num_heads, sample_rate, mlp_ratio, qkv_bias, drop_paths, proj_drop, attn_drop, act_layer, dd):
        super().__init__()
        self.grad_checkpointing = False
        self.downsample = Downsample(in_chs, out_chs, stride, dd)
        self.blocks = nn.Sequential(
            *[LGLBlock(out_chs, num_heads, sample_rate, mlp_ratio, qkv_bias, drop_paths[i], proj_drop, attn_drop, act_layer, dd) for i in range(depth)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.blocks, x)
        return self.blocks(x)


class EdgeViT(nn.Module):
    """EdgeViT: four stages of LGL blocks, BatchNorm on the last map, average pool, linear classifier.

    drop_rate drops before the classifier; proj_drop_rate inside the MLPs and after the attention
    projection; attn_drop_rate on the attention weights; drop_path_rate is the last block's rate."""

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        embed_dims: tuple[int, ...] = (48, 96, 240, 384),
        depths: tuple[int, ...] = (1, 2, 5, 3),
        head_dim: int = 48,
        sample_rates: tuple[int, ...] = (4, 2, 2, 1),
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        act_layer: Callable[..., nn.Module] = nn.GELU,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        assert global_pool in ("avg", ""), "only average pooling (or none) is supported"
        assert len(embed_dims) == len(depths) == len(sample_rates) == 4
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.global_pool = global_pool
        self.embed_dims = tuple(embed_dims)
        self.depths = tuple(depths)
        self.head_dim = head_dim
        self.drop_path_rate = drop_path_rate

        rates = calculate_drop_path_rates(drop_path_rate, sum(depths))  # linear over all blocks
        stages, prev, start = [], in_chans, 0
        self.feature_info = []
        for i, (dim, depth, r) in enumerate(zip(embed_dims, depths, sample_rates)):
            stride = 4 if i == 0 else 2
            stages.append(
                EdgeViTStage(
                    prev,
                    dim,
                    stride,
                    depth,
                    dim // head_dim,
                    r,
                    mlp_ratio,
                    qkv_bias,
                    rates[start : start + depth],
                    proj_drop_rate,
                    attn_drop_rate,
                    act_layer,
                    dd,
                )
            )
            self.feature_info.append(dict(num_chs=dim, reduction=4 * 2**i, module=f"stages.{i}"))
            prev, start = dim, start + depth
        self.stages = nn.Sequential(*stages)
        self.num_features = self.head_hidden_size = embed_dims[-1]
        self.norm: nn.Module = nn.BatchNorm2d(self.num_features, **dd)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.num_features, num_classes, **dd) if num_classes > 0 else nn.Identity()

        self.apply(self._init_weights)
        # Accept the authors' parameter names and refuse other variants in load_state_dict itself, so
        # every loader (timm, pytest-e3p's --e3p-checkpoints, plain torch) goes through the same check.
        self.register_load_state_dict_pre_hook(_load_state_dict_pre_hook)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    @torch.jit.ignore
    def no_weight_decay(self):
        return set()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(stem=r"^stages\.0\.downsample", blocks=r"^stages\.(\d+)")

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for stage in self.stages:
            cast(EdgeViTStage, stage).grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            assert global_pool in ("avg", "")
            self.global_pool = global_pool
        ref = self.norm.weight if isinstance(self.norm, nn.BatchNorm2d) else None
        dd: dict[str, Any] = {"device": ref.device, "dtype": ref.dtype} if ref is not None else {}
        self.head = nn.Linear(self.num_features, num_classes, **dd) if num_classes > 0 else nn.Identity()

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """The output of each stage taken (NCHW); `norm` applies the head's BatchNorm to the last."""
        assert output_fmt == "NCHW", "output shape must be NCHW"
        take, last = feature_take_indices(len(self.stages), indices)
        stages = self.stages if torch.jit.is_scripting() or not stop_early else self.stages[: last + 1]
        out = []
        for i, stage in enumerate(stages):
            x = stage(x)
            if i in take:
                out.append(self.norm(x) if norm and i == len(self.stages) - 1 else x)
        if intermediates_only:
            return out
        if len(stages) == len(self.stages):
            x = self.norm(x)
        return x, out

    def prune_intermediate_layers(self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True):
        take, last = feature_take_indices(len(self.stages), indices)
        self.stages = self.stages[: last + 1]
        if prune_norm or last < 3:
            self.norm = nn.Identity()
        if last < 3:
            self.num_features = self.head_hidden_size = self.feature_info[last]["num_chs"]
        if prune_head or last < 3:
            self.reset_classifier(0, "")
        return take

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.stages(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == "avg":
            x = x.mean(dim=(2, 3))
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# --- the authors' parameter names <-> ours ------------------------------------------------------
# Authors (src/edgevit.py)                      ours
#   patch_embed{s}.proj / .norm                 stages.{s-1}.downsample.conv / .norm
#   blocks{s}.{j}.LocalAgg.pos_embed, norm1,    stages.{s-1}.blocks.{j}.local_agg.pos_embed, norm1,
#     conv1, attn (5x5 dw), conv2, norm2, mlp     pw_conv1, dw_conv, pw_conv2, norm2, mlp
#   blocks{s}.{j}.SelfAttn.pos_embed, norm1,    stages.{s-1}.blocks.{j}.global_attn.pos_embed, norm1,
#     attn.qkv, attn.LocalProp, attn.norm,        attn.qkv, attn.local_prop, attn.norm, attn.proj,
#     attn.proj, norm2, mlp                       norm2, mlp
#   norm (BatchNorm2d), head                    norm, head
_LOCAL_AGG = {"conv1": "pw_conv1", "attn": "dw_conv", "conv2": "pw_conv2"}
_LOCAL_AGG_BACK = {v: k for k, v in _LOCAL_AGG.items()}
_AUTHORS_MARK = "patch_embed1.proj.weight"


def _from_authors(key: str) -> str:
    m = re.match(r"patch_embed(\d)\.(proj|norm)\.(.*)", key)
    if m:
        return f"stages.{int(m[1]) - 1}.downsample.{'conv' if m[2] == 'proj' else 'norm'}.{m[3]}"
    m = re.match(r"blocks(\d)\.(\d+)\.(LocalAgg|SelfAttn)\.(\w+)\.(.*)", key)
    if m:
        stage, block, part, name, rest = int(m[1]) - 1, m[2], m[3], m[4], m[5]
        if part == "LocalAgg":
            part, name = "local_agg", _LOCAL_AGG.get(name, name)
        else:
            part, rest = "global_attn", rest.replace("LocalProp.", "local_prop.")
        return f"stages.{stage}.blocks.{block}.{part}.{name}.{rest}"
    return key


def _to_authors(key: str) -> str:
    m = re.match(r"stages\.(\d)\.downsample\.(conv|norm)\.(.*)", key)
    if m:
        return f"patch_embed{int(m[1]) + 1}.{'proj' if m[2] == 'conv' else 'norm'}.{m[3]}"
    m = re.match(r"stages\.(\d)\.blocks\.(\d+)\.(local_agg|global_attn)\.(\w+)\.(.*)", key)
    if m:
        stage, block, part, name, rest = int(m[1]) + 1, m[2], m[3], m[4], m[5]
        if part == "local_agg":
            part, name = "LocalAgg", _LOCAL_AGG_BACK.get(name, name)
        else:
            part, rest = "SelfAttn", rest.replace("local_prop.", "LocalProp.")
        return f"blocks{stage}.{block}.{part}.{name}.{rest}"
    return key


def to_authors_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our state dict in the authors' parameter names (what their EdgeVit.state_dict() holds)."""
    return {_to_authors(k): v for k, v in state_dict.items()}


def _variant_of(state_dict: dict[str, torch.Tensor]) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """(channels, depths) of an EdgeViT state dict in our names; None if it does not look like one."""
    dims = []
    for i in range(4):
        w = state_dict.get(f"stages.{i}.downsample.conv.weight")
        if not isinstance(w, torch.Tensor) or w.ndim != 4:
            return None
        dims.append(int(w.shape[0]))
    depths = [0, 0, 0, 0]
    for k in state_dict:
        m = re.match(r"stages\.(\d)\.blocks\.(\d+)\.", k)
        if m and int(m[1]) < 4:
            depths[int(m[1])] = max(depths[int(m[1])], int(m[2]) + 1)
    return tuple(dims), tuple(depths)


def _describe(dims: tuple[int, ...], depths: tuple[int, ...], head_dim: int | None = None) -> str:
    for name, (paper, cfg) in VARIANTS.items():
        if cfg["embed_dims"] == dims and cfg["depths"] == depths and head_dim in (None, cfg["head_dim"]):
            return f"{paper} ({name})"
    return f"an EdgeViT with channels {'-'.join(map(str, dims))} and depths {'-'.join(map(str, depths))}"


def _check_variant(state_dict: dict[str, torch.Tensor], model: EdgeViT) -> None:
    found = _variant_of(state_dict)
    want = (tuple(model.embed_dims), tuple(model.depths))
    if found is not None and found != want:
        raise EdgeViTVariantError(
            f"state dict of {_describe(*found)} does not fit {_describe(*want, model.head_dim)}: "
            f"channels {'-'.join(map(str, found[0]))} vs {'-'.join(map(str, want[0]))}, "
            f"depths {'-'.join(map(str, found[1]))} vs {'-'.join(map(str, want[1]))}"
        )


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor], model: EdgeViT) -> dict[str, torch.Tensor]:
    """timm's pretrained filter: the authors' names -> ours (ours pass unchanged); another variant is
    refused with EdgeViTVariantError."""
    if _AUTHORS_MARK in state_dict:
        state_dict = {_from_authors(k): v for k, v in state_dict.items()}
    _check_variant(state_dict, model)
    return state_dict


def _load_state_dict_pre_hook(module, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs) -> None:
    """Renames the authors' keys in place (load_state_dict works on its own copy) and checks the variant."""
    own = {k[len(prefix) :]: k for k in state_dict if k.startswith(prefix)}
    if _AUTHORS_MARK in own:
        for short, full in own.items():
            state_dict[prefix + _from_authors(short)] = state_dict.pop(full)
        own = {k[len(prefix) :]: k for k in state_dict if k.startswith(prefix)}
    _check_variant({short: state_dict[full] for short, full in own.items()}, module)


def _create_edgevit(variant: str, pretrained: bool = False, **kwargs) -> EdgeViT:
    out_indices = kwargs.pop("out_indices", (0, 1, 2, 3))
    return build_model_with_cfg(
        EdgeViT,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(flatten_sequential=True, out_indices=out_indices),
        **dict(VARIANTS[variant][1], **kwargs),
    )


_NO_WEIGHTS = (
    "No official pretrained weights were ever released for EdgeViT; pass your own with "
    "pretrained=True, pretrained_cfg_overlay=dict(file=PATH) (the authors' parameter names are accepted).",
)


def _cfg(**kwargs) -> dict:
    # Evaluation transform of the authors' DeiT-based recipe: resize 256, centre crop 224, bicubic.
    return {
        "url": "",
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "crop_pct": 0.875,
        "interpolation": "bicubic",
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": "stages.0.downsample.conv",
        "classifier": "head",
        "license": "apache-2.0",
        "paper_ids": "arXiv:2205.03436",
        "paper_name": "EdgeViTs: Competing Light-weight CNNs on Mobile Devices with Vision Transformers",
        "origin_url": "https://github.com/saic-fi/edgevit",
        "notes": _NO_WEIGHTS,
        **kwargs,
    }


default_cfgs = generate_default_cfgs({name: _cfg() for name in VARIANTS})


def edgevit_xxs(pretrained: bool = False, **kwargs) -> EdgeViT:
    """EdgeViT-XXS: 4.1M parameters, 0.56 GFLOPs, 74.4 % top-1 in the paper (Table 1-2). No official weights."""
    return _create_edgevit("edgevit_xxs", pretrained, **kwargs)


def edgevit_xs(pretrained: bool = False, **kwargs) -> EdgeViT:
    """EdgeViT-XS: 6.7M parameters, 1.1 GFLOPs, 77.5 % top-1 in the paper (Table 1-2). No official weights."""
    return _create_edgevit("edgevit_xs", pretrained, **kwargs)


def edgevit_s(pretrained: bool = False, **kwargs) -> EdgeViT:
    """EdgeViT-S: 11.1M parameters, 1.9 GFLOPs, 81.0 % top-1 in the paper (Table 1-2). No official weights."""
    return _create_edgevit("edgevit_s", pretrained, **kwargs)


# Register with timm, but never over a name timm already has (a future timm may ship its own EdgeViT:
# this plugin is loaded in every pytest run of an environment that has it installed). Our own earlier
# registration is replaced: this module may be imported anew (pytester drops modules after a run), and
# timm must then build the classes that the module now in sys.modules defines.
for _fn in (edgevit_xxs, edgevit_xs, edgevit_s):
    if not is_model(_fn.__name__):
        register_model(_fn)
    elif getattr(model_entrypoint(_fn.__name__), "__module__", None) == __name__:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # timm warns on every overwrite; this one is ours
            register_model(_fn)
del _fn
