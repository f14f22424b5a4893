"""Token Merging (ToMe; Bolya, Fu, Dai, Zhang, Feichtenhofer, Hoffman, "Token Merging: Your ViT but
Faster", ICLR 2023) on a timm VisionTransformer / DeiT with a class token, without retraining.

In every block, between attention and MLP, r tokens are merged away by bipartite soft matching:

1. similarity: cosine similarity of the tokens' attention keys, averaged over heads (the keys
   already summarise what a token contains, and cost nothing extra to get);
2. the tokens are split alternately into sets A (even positions) and B (odd positions); each A
   token finds its most similar B token;
3. the r A tokens with the most similar partners are merged into them; the class token (position
   0, in A) never is, and r is capped at half of the other tokens;
4. a merge is an average weighted by token size (how many patches a token already stands for), and
   the sizes add up;
5. proportional attention: later blocks add log(size) to the attention logits of each key, so a
   merged token is attended to as much as the tokens it replaced together.

The kept A tokens stay in their order (class token first), then B. With r tokens merged per block
a 197-token DeiT block stack ends with 197 - 12 r tokens, and attention and MLP MACs shrink with it.
The model and weights are unchanged (params_m None); the MACs are counted again on the merging
model. Written from the paper's description of the algorithm.

Applies to plain timm VisionTransformer models: class token, no register or distillation token,
token pooling, standard Block / Attention. Anything else is VariantUnavailable with the reason."""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F

from ..models.complexity import count_gmacs
from .base import PreparedVariant, VariantRequest, VariantUnavailable, module_forward


def merge_tokens(x: torch.Tensor, size: torch.Tensor, keys: torch.Tensor, r: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Bipartite soft matching: merge r tokens of x (B, N, C) away, the class token (index 0) kept.

    size (B, N, 1): patches each token stands for; keys (B, N, D): the similarity features.
    Returns the merged tokens (B, N - r, C) and their sizes."""
    n = x.shape[1]
    r = min(r, (n - 1) // 2)
    if r <= 0:
        return x, size
    keys = keys / keys.norm(dim=-1, keepdim=True)
    similarity = keys[:, 0::2] @ keys[:, 1::2].transpose(1, 2)  # (B, |A|, |B|)
    similarity[:, 0, :] = -torch.inf  # the class token is in A and never merges
    best, partner = similarity.max(dim=-1)  # each A token's most similar B token
    order = best.argsort(dim=-1, descending=True)
    merged, kept = order[:, :r], order[:, r:].sort(dim=-1).values  # kept A tokens in their order: class token first
    into = partner.gather(1, merged)

    c = x.shape[-1]
    weighted = x * size  # a size-weighted average: sum x * size and size, divide at the end
    a_x, b_x = weighted[:, 0::2], weighted[:, 1::2]
    a_s, b_s = size[:, 0::2], size[:, 1::2]
    b_x = b_x.scatter_add(1, into[..., None].expand(-1, -1, c), a_x.gather(1, merged[..., None].expand(-1, -1, c)))
    b_s = b_s.scatter_add(1, into[..., None], a_s.gather(1, merged[..., None]))
    out_x = torch.cat([a_x.gather(1, kept[..., None].expand(-1, -1, c)), b_x], dim=1)
    out_s = torch.cat([a_s.gather(1, kept[..., None]), b_s], dim=1)
    return out_x / out_s, out_s


class TokenMergingViT(torch.nn.Module):
    """A timm VisionTransformer run with r tokens merged per block (the ViT's own modules and weights)."""

    def __init__(self, vit: torch.nn.Module, r: int):
        super().__init__()
        self.vit: Any = vit  # Any: timm's attributes (blocks, patch_embed, ...) are not typed on nn.Module
        self.r = r
        self.pretrained_cfg = getattr(vit, "pretrained_cfg", {})

    def block(self, blk: Any, x: torch.Tensor, size: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        attn = blk.attn
        b, n, _ = x.shape
        qkv = attn.qkv(blk.norm1(x)).reshape(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = attn.q_norm(q), attn.k_norm(k)
        # proportional attention: log(size) added to every query's logit of each key
        bias = None if size is None else size.log().reshape(b, 1, 1, n).to(q.dtype)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=attn.scale)
        y = attn.proj(attn.norm(y.transpose(1, 2).reshape(b, n, attn.attn_dim)))
        x = x + blk.drop_path1(blk.ls1(y))
        if size is None:
            size = torch.ones(b, n, 1, dtype=x.dtype, device=x.device)
        x, size = merge_tokens(x, size, k.mean(dim=1), self.r)
        x = x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))
        return x, size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        vit = self.vit
        x = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(x))))
        size: torch.Tensor | None = None
        for blk in vit.blocks:
            x, size = self.block(blk, x, size)
        return vit.forward_head(vit.norm(x))

    def tokens_per_block(self, n: int) -> list[int]:
        """Tokens entering the MLP of each block, from n tokens after the embedding."""
        out = []
        for _ in self.vit.blocks:
            n -= max(0, min(self.r, (n - 1) // 2))
            out.append(n)
        return out


def why_not(model: Any) -> str | None:
    """Why ToMe does not apply to this model, or None when it does."""
    from timm.models.vision_transformer import Attention, Block, VisionTransformer

    arch = getattr(model, "pretrained_cfg", {}).get("architecture") or type(model).__name__
    if not isinstance(model, VisionTransformer):
        return f"tome applies to ViT/DeiT models with a class token; {arch} is a {type(model).__name__}"
    if getattr(model, "cls_token", None) is None or model.global_pool != "token":
        return f"tome applies to ViT/DeiT models with a class token; {arch} pools with {model.global_pool!r}, not its class token"
    if model.num_prefix_tokens != 1:
        return f"tome applies to ViT/DeiT models with one class token; {arch} has {model.num_prefix_tokens} prefix tokens (register or distillation tokens)"
    if getattr(model, "attn_pool", None) is not None:
        return f"tome applies to ViT/DeiT models with a class token; {arch} pools with attention"
    for blk in model.blocks:
        if type(blk) is not Block or type(blk.attn) is not Attention or getattr(blk.attn, "gate", None) is not None:
            return f"tome applies to plain timm ViT blocks; {arch} has {type(blk).__name__} / {type(getattr(blk, 'attn', None)).__name__}"
    return None


def prepare(request: VariantRequest) -> PreparedVariant:
    assert request.param is not None  # tome-R always has its R
    r, model, example_input, torch_device = request.param, request.model, request.example_input, request.torch_device
    reason = why_not(model)
    if reason:
        raise VariantUnavailable(reason)
    net = TokenMergingViT(copy.deepcopy(model).to(torch_device).eval(), r).eval()
    c, h, w = (int(d) for d in example_input.shape[1:])
    with torch.inference_mode():
        tokens = int(net.vit._pos_embed(net.vit.patch_embed(example_input[:1].to(torch_device))).shape[1])
    schedule = net.tokens_per_block(tokens)
    gmacs = count_gmacs(net, (c, h, w))
    return PreparedVariant(
        name=request.name,
        forward=module_forward(net, torch.float32),
        gmacs=gmacs,
        detail=f"token merging r={r} per block (own implementation of Bolya et al. 2023, proportional attention): tokens {tokens} -> {' '.join(map(str, schedule))}",
        bound=request.bound,
        runtime=net,
    )
