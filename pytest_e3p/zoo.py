"""The model sets of the E3P method and the reference table they are screened with.

Models are named as timm names them, `arch.tag`: the architecture and its pretrained weights tag.
A name without a tag means timm's default tag for that architecture.
"""

from __future__ import annotations

import csv
import difflib
import functools
from dataclasses import dataclass
from importlib import resources

# The 13 models of the E3P paper, with the pretrained tags it used (METHOD.md).
PAPER13 = (
    "efficientvit_b1.r224_in1k",
    "levit_192.fb_dist_in1k",
    "levit_conv_192.fb_dist_in1k",
    "tiny_vit_5m_224.in1k",
    "tiny_vit_5m_224.dist_in22k_ft_in1k",
    "tiny_vit_11m_224.in1k",
    "tiny_vit_11m_224.dist_in22k_ft_in1k",
    "tiny_vit_21m_224.in1k",
    "tiny_vit_21m_224.dist_in22k_ft_in1k",
    "poolformerv2_s24.sail_in1k",
    "vit_small_patch16_224.augreg_in21k_ft_in1k",
    "deit_small_patch16_224.fb_in1k",
    "deit_small_distilled_patch16_224.fb_in1k",
)

# The paper screened 25 candidates it did not publish; ours adds 12 edge-class models to the 13.
EXTRA12 = (
    "vit_tiny_patch16_224.augreg_in21k_ft_in1k",
    "deit_tiny_patch16_224.fb_in1k",
    "deit_tiny_distilled_patch16_224.fb_in1k",
    "levit_128s.fb_dist_in1k",
    "levit_256.fb_dist_in1k",
    "efficientvit_b0.r224_in1k",
    "efficientvit_m5.r224_in1k",
    "mobilevit_s.cvnets_in1k",
    "mobilevitv2_100.cvnets_in1k",
    "efficientformerv2_s1.snap_dist_in1k",
    "pvt_v2_b1.in1k",
    "swin_tiny_patch4_window7_224.ms_in1k",
)
CANDIDATES = PAPER13 + EXTRA12

MODEL_SETS = {"paper13": PAPER13, "candidates": CANDIDATES}


class UnknownModel(ValueError):
    pass


@dataclass(frozen=True)
class ModelName:
    arch: str
    tag: str  # "" when timm has no pretrained tag for the architecture

    @property
    def full(self) -> str:
        return f"{self.arch}.{self.tag}" if self.tag else self.arch

    @property
    def case_id(self) -> str:
        """Short id for test ids: the bare arch when the tag is timm's default one."""
        return self.arch if self.tag == default_tag(self.arch) else self.full


@functools.lru_cache(maxsize=None)
def _timm_archs() -> frozenset[str]:
    import timm

    return frozenset(timm.list_models())


@functools.lru_cache(maxsize=None)
def default_tag(arch: str) -> str:
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(arch)
    return (cfg.tag or "") if cfg is not None else ""


@functools.lru_cache(maxsize=None)
def _arch_tags(arch: str) -> tuple[str, ...]:
    import timm

    return tuple(name.split(".", 1)[1] for name in timm.list_pretrained(f"{arch}.*") if "." in name)


def parse_model(name: str) -> ModelName:
    """`arch` or `arch.tag` -> ModelName, checked against timm; UnknownModel says what is accepted."""
    name = name.strip()
    arch, _, tag = name.partition(".")
    if arch not in _timm_archs():
        close = difflib.get_close_matches(arch, _timm_archs(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models()"
        raise UnknownModel(f"unknown model {name!r}: not a timm architecture{hint}")
    if tag:
        tags = _arch_tags(arch)
        if tags and tag not in tags:
            raise UnknownModel(f"unknown weights tag {tag!r} for {arch}; timm has: {', '.join(tags)}")
    else:
        tag = default_tag(arch)
    return ModelName(arch, tag)


def resolve_models(spec: str) -> list[ModelName]:
    """`paper13`, `candidates`, or a comma list of timm names (tags allowed)."""
    spec = spec.strip()
    names = MODEL_SETS.get(spec) or [part for part in spec.split(",") if part.strip()]
    if not names:
        raise UnknownModel("no models given: use paper13, candidates, or a comma list of timm names")
    models = [parse_model(n) for n in names]
    seen: set[str] = set()
    unique = []
    for m in models:
        if m.full not in seen:
            seen.add(m.full)
            unique.append(m)
    return unique


@dataclass(frozen=True)
class Reference:
    """One row of timm's ImageNet-1k results: top-1/top-5 in percent, params in millions."""

    top1: float
    top5: float
    params_m: float
    img_size: int
    crop_pct: float
    interpolation: str


@functools.lru_cache(maxsize=1)
def reference_table() -> dict[str, Reference]:
    table = {}
    with resources.files("pytest_e3p").joinpath("_data/results-imagenet.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            table[row["model"]] = Reference(
                float(row["top1"]),
                float(row["top5"]),
                float(row["param_count"].replace(",", "")),
                int(row["img_size"]),
                float(row["crop_pct"]),
                row["interpolation"],
            )
    return table


def reference(model: ModelName) -> Reference | None:
    """timm's published ImageNet-1k accuracy for these exact weights, if it has them."""
    return reference_table().get(model.full)
