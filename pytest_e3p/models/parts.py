"""A model's parts, found from what it has, for attributing its energy (measure.attribution).

Two views of one model:

- the fine parts (Method 1, time share): the stem / patch embedding, each block or stage, and within a
  block its attention, MLP and norms (EdgeViT: LocalAgg, the global sparse attention, LocalProp; ToMe:
  the token merging), then the head. Each is a module whose forward is timed; a part's own time is
  its time less that of the parts inside it, so nothing is counted twice.
- the groups and their prefixes (Method 2, differential measurement): the stem, then the body in at
  most MAX_BODY_GROUPS groups of consecutive blocks or stages, then the head. Prefix k runs the model
  up to the end of group k and stops there (a TruncatedModel: the same loaded modules, no weights
  copied); the last prefix is the whole model.

Grouping rule: a body of n blocks (or stages) is cut into ceil(n / ceil(n / MAX_BODY_GROUPS)) groups
of consecutive ones, so a 12-block ViT gives 4 groups of 3, LeViT's 3 stages 3 groups of 1, and every
model at most 1 + 4 + 1 prefixes (stem, stem + each group, the whole model).

The body is found by name (timm's `blocks`, `stages`, `layers`, `levels`), the stem as what runs
before it (`patch_embed`, `stem`, `conv_stem`...; EdgeViT's first downsample), the head as the
top-level modules after it. Roles within a block are read from the child modules' names."""

from __future__ import annotations

import contextlib
import inspect
import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

MAX_BODY_GROUPS = 4
STEM, HEAD, OTHER = "stem", "head", "other"
BODY_NAMES = ("blocks", "stages", "layers", "levels")
STEM_NAMES = ("patch_embed", "stem", "conv_stem", "bn1", "patch_drop", "norm_pre")
WITHIN_BLOCK_DEPTH = 3  # how deep under a block roles are looked for (EdgeViT: block.global_attn.attn.local_prop)
SKIPPED_TYPES = (nn.Identity, nn.Dropout)  # nothing to time


@dataclass(frozen=True)
class Part:
    """A timed module: its path in the model, the group it belongs to, its role (stem, attention,
    mlp, norm, block, ...) and the path of the timed part it runs inside ("" at the top)."""

    path: str
    module: nn.Module = field(compare=False, repr=False)
    group: str
    role: str
    parent: str = ""


class UnsupportedModel(Exception):
    """The model has no part structure this module knows (no blocks/stages); the message says so."""


class _PrefixDone(Exception):
    """Raised by a prefix's end module: the rest of the forward is not run."""

    def __init__(self, output: Any):
        super().__init__()
        self.output = output


class TruncatedModel(nn.Module):
    """The model's forward run up to the end of `end` (a module inside it), and stopped there: the
    output is that module's. The modules are the model's own (nothing copied)."""

    def __init__(self, root: nn.Module, end: nn.Module | None, name: str, call: Callable[[Any], Any] | None = None):
        super().__init__()
        self.root, self.name = root, name
        self._end = [end]  # in a list: not registered as a submodule twice
        self._call = call  # the case's forward through root (a variant's dtype cast); root(x) where None

    def forward(self, x: Any) -> Any:
        call = self._call or self.root
        end = self._end[0]
        if end is None:  # the whole model
            return call(x)

        def stop(module: nn.Module, args: Any, output: Any) -> None:
            raise _PrefixDone(output)

        handle = end.register_forward_hook(stop)
        try:
            return call(x)
        except _PrefixDone as done:
            return done.output
        finally:
            handle.remove()


@dataclass
class ModelParts:
    """The parts of one model (see the module docstring)."""

    root: nn.Module
    parts: list[Part]
    groups: list[str]  # in forward order: STEM (where there is one), the body's groups, HEAD
    group_ends: dict[str, nn.Module]  # the module whose end closes each group but the last
    # (owner, attribute, wrap) for calls that are not module calls (ToMe's block method, its merging):
    # wrap(original, open_range) gives the replacement that opens a range around each call
    patches: list[tuple[Any, str, Callable[[Callable[..., Any], Callable[[str], ContextManager[Any]]], Callable[..., Any]]]] = field(default_factory=list)
    hook_free: set[str] = field(default_factory=set)  # parts whose ranges come from `patches`, not hooks

    def prefixes(self, call: Callable[[Any], Any] | None = None) -> list[TruncatedModel]:
        """The truncated models, shortest first: stem, stem + group 1, ..., the whole model."""
        out, names = [], []
        for g in self.groups:
            names.append(g)
            end = self.group_ends.get(g)
            label = " + ".join(names) if len(names) <= 2 else f"{names[0]} .. {names[-1]}"
            out.append(TruncatedModel(self.root, end, label if end is not None else "whole model", call))
        return out

    @contextlib.contextmanager
    def ranged(self, open_range: Callable[[str], ContextManager[Any]]) -> Iterator[None]:
        """Within it, each part's forward runs inside open_range(part.path) (a torch.profiler
        record_function, in measure.attribution)."""
        handles, stack = [], []
        for part in self.parts:
            if part.path in self.hook_free:
                continue

            def pre(module: nn.Module, args: Any, path: str = part.path) -> None:
                cm = open_range(path)
                cm.__enter__()
                stack.append(cm)

            def post(module: nn.Module, args: Any, output: Any) -> None:
                if stack:
                    stack.pop().__exit__(None, None, None)

            handles.append(part.module.register_forward_pre_hook(pre))
            handles.append(part.module.register_forward_hook(post, always_call=True))
        undo = []
        for owner, name, wrap in self.patches:
            original = getattr(owner, name)
            setattr(owner, name, wrap(original, open_range))
            undo.append((owner, name, original))
        try:
            yield
        finally:
            for h in handles:
                h.remove()
            for owner, name, original in reversed(undo):
                if inspect.ismethod(original) and getattr(original, "__self__", None) is owner:
                    delattr(owner, name)  # back to the class's method
                else:
                    setattr(owner, name, original)


def role_of(name: str, module: nn.Module) -> str | None:
    """A block child's role from its name (and EdgeViT's class names); None: not a part of its own."""
    kind = type(module).__name__
    if kind == "GlobalSparseAttn":
        return "global sparse attention"
    if kind == "GlobalAttnBlock":  # EdgeViT's global half: its own time is the position conv and residuals
        return "block"
    if kind == "LocalAggBlock" or name == "local_agg":
        return "LocalAgg"
    if name == "local_prop":
        return "LocalProp"
    low = name.lower()
    if low.startswith(("mlp", "ffn", "channel_mixer", "conv_mlp")):
        return "mlp"
    if "attn" in low or "attention" in low or low in ("mixer", "token_mixer", "context_module"):
        return "attention"
    if "norm" in low:
        return "norm"
    if low in ("downsample", "patch_merging", "reduction"):
        return "downsample"
    return None


def _timed(module: nn.Module) -> bool:
    return not isinstance(module, SKIPPED_TYPES)


def _body(model: nn.Module) -> tuple[list[str], list[tuple[str, nn.Module]]]:
    """The body's top-level names and its items in order."""
    for name in BODY_NAMES:
        body = getattr(model, name, None)
        if isinstance(body, (nn.Sequential, nn.ModuleList)) and len(body) > 0:
            return [name], [(f"{name}.{i}", m) for i, m in enumerate(body)]
    # ResNet-style: layer1, layer2, ... as stages of their own
    layers = [(n, m) for n, m in model.named_children() if n.startswith("layer") and n[5:].isdigit()]
    if layers:
        return [n for n, _ in layers], layers
    raise UnsupportedModel(f"{type(model).__name__} has none of {', '.join(BODY_NAMES)}: its parts are not known (attribution needs a timm-style body)")


def group_sizes(n: int, max_groups: int = MAX_BODY_GROUPS) -> list[int]:
    """Sizes of the consecutive groups of n blocks (module docstring's rule)."""
    per = math.ceil(n / max_groups)
    groups = math.ceil(n / per)
    return [min(per, n - i * per) for i in range(groups)]


def _group_name(kind: str, first: int, last: int) -> str:
    return f"{kind} {first}" if first == last else f"{kind} {first}-{last}"


def _within(block_path: str, block: nn.Module, group: str, depth: int = WITHIN_BLOCK_DEPTH) -> list[Part]:
    """The role-named modules under a block (nested ones under their part)."""
    out: list[Part] = []

    def visit(path: str, module: nn.Module, parent: str, level: int) -> None:
        if level > depth:
            return
        for name, child in module.named_children():
            child_path = f"{path}.{name}"
            role = role_of(name, child)
            if isinstance(child, (nn.Sequential, nn.ModuleList)) and role is None:
                visit(child_path, child, parent, level + 1)  # a container: its items under the same part
                continue
            if role is not None and _timed(child):
                out.append(Part(child_path, child, group, role, parent))
                visit(child_path, child, child_path, level + 1)
            else:
                visit(child_path, child, parent, level + 1)

    visit(block_path, block, block_path, 1)
    return out


def _children_in_order(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return list(model.named_children())


def _tome_inner(model: nn.Module) -> nn.Module | None:
    """The ViT inside a token-merging model (variants.tome.TokenMergingViT: `vit`, `r`, `block`)."""
    vit = getattr(model, "vit", None)
    if isinstance(vit, nn.Module) and hasattr(model, "r") and callable(getattr(model, "block", None)):
        return vit
    return None


def model_parts(model: nn.Module) -> ModelParts:
    """The parts and groups of `model` (module docstring); UnsupportedModel where it has no body."""
    tome_vit = _tome_inner(model)
    inner, prefix = (tome_vit, "vit.") if tome_vit is not None else (model, "")
    body_names, body = _body(inner)
    parts: list[Part] = []
    groups: list[str] = []
    ends: dict[str, nn.Module] = {}
    children = _children_in_order(inner)
    names = [n for n, _ in children]
    before = [(n, m) for n, m in children[: names.index(body_names[0])] if _timed(m)]
    after = [(n, m) for n, m in children[names.index(body_names[-1]) + 1 :] if _timed(m)]
    stem = [(n, m) for n, m in before if n in STEM_NAMES or role_of(n, m) in (None, "norm")]
    first_stage = body[0][1]
    stem_inside = getattr(first_stage, "downsample", None)
    kind = "block" if body_names == ["blocks"] else "stage"
    if not stem and isinstance(stem_inside, nn.Module) and _timed(stem_inside):
        stem = [(f"{body[0][0]}.downsample", stem_inside)]  # EdgeViT: the first downsample is the patch embedding
    if stem:
        groups.append(STEM)
        for n, m in stem:
            # a stem inside the first stage (EdgeViT) runs within that stage's range: it is subtracted there
            parts.append(Part(prefix + n, m, STEM, STEM, prefix + body[0][0] if m is stem_inside else ""))
        # the stem's last module closes the stem prefix (e.g. a ViT's norm_pre, after the position embedding)
        ends[STEM] = stem[-1][1]
    stem_paths = {p.path for p in parts}
    i = 0
    for size in group_sizes(len(body)):
        group = _group_name(kind, i, i + size - 1)
        groups.append(group)
        for path, block in body[i : i + size]:
            full = prefix + path
            parts.append(Part(full, block, group, kind))
            inner_parts = _within(full, block, group)
            if kind == "stage":
                # a stage's blocks are parts of their own, their roles under them
                inner_parts = _stage_parts(full, block, group, stem_paths)
            parts.extend(inner_parts)
        ends[group] = body[i + size - 1][1]
        i += size
    if after:
        groups.append(HEAD)
        for n, m in after:
            parts.append(Part(prefix + n, m, HEAD, HEAD))
    else:
        ends.pop(groups[-1], None)  # the last group's end is the whole model's
    if HEAD in groups:
        ends.pop(HEAD, None)
    mp = ModelParts(model, parts, groups, ends)
    if tome_vit is not None:
        _tome_patches(mp, model)
    return mp


def _stage_parts(stage_path: str, stage: nn.Module, group: str, stem_paths: set[str]) -> list[Part]:
    out: list[Part] = []
    down = getattr(stage, "downsample", None)
    if isinstance(down, nn.Module) and _timed(down) and f"{stage_path}.downsample" not in stem_paths:
        out.append(Part(f"{stage_path}.downsample", down, group, "downsample", stage_path))
    blocks = getattr(stage, "blocks", None)
    prefix = f"{stage_path}.blocks"
    if not isinstance(blocks, (nn.Sequential, nn.ModuleList)) and isinstance(stage, (nn.Sequential, nn.ModuleList)):
        blocks, prefix = stage, stage_path  # a stage that is its list of blocks (MobileViT, ResNet)
    if isinstance(blocks, (nn.Sequential, nn.ModuleList)):
        for j, blk in enumerate(blocks):
            path = f"{prefix}.{j}"
            out.append(Part(path, blk, group, "block", stage_path))
            out.extend(_within(path, blk, group))
    else:
        out.extend(_within(stage_path, stage, group))
    return out


def _tome_patches(mp: ModelParts, model: nn.Module) -> None:
    """ToMe runs each block through the model's `block(blk, x, size)` method, not blk(x), and merges
    with its module's `merge_tokens`: both are wrapped so the block and the merging get ranges."""
    vit: Any = model.vit
    paths = {id(blk): f"vit.blocks.{i}" for i, blk in enumerate(vit.blocks)}
    current: list[str] = []

    def wrap_block(original: Callable[..., Any], open_range: Callable[[str], ContextManager[Any]]) -> Callable[..., Any]:
        def block(blk: Any, x: torch.Tensor, size: Any) -> Any:
            path = paths.get(id(blk), "vit.blocks.?")
            current.append(path)
            try:
                with open_range(path):
                    return original(blk, x, size)
            finally:
                current.pop()

        return block

    owner = inspect.getmodule(type(model))
    if owner is not None and callable(getattr(owner, "merge_tokens", None)):

        def wrap_merge(original: Callable[..., Any], open_range: Callable[[str], ContextManager[Any]]) -> Callable[..., Any]:
            def merge_tokens(*args: Any, **kwargs: Any) -> Any:
                with open_range(f"{current[-1]}.merge" if current else "vit.merge"):
                    return original(*args, **kwargs)

            return merge_tokens

        mp.patches.append((owner, "merge_tokens", wrap_merge))
        for part in list(mp.parts):
            if part.path in paths.values():
                mp.parts.append(Part(f"{part.path}.merge", part.module, part.group, "token merging", part.path))
    mp.patches.insert(0, (model, "block", wrap_block))
    mp.hook_free = set(paths.values()) | {f"{p}.merge" for p in paths.values()}
    # a prefix ends after its last block's MLP: the block itself is never called as a module
    for group, end in list(mp.group_ends.items()):
        mlp = getattr(end, "mlp", None)
        if id(end) in paths and isinstance(mlp, nn.Module):
            mp.group_ends[group] = mlp
