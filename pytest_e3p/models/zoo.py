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

# The 13 models of the E3P paper, with the pretrained tags it used.
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

# EdgeViT (Pan et al. ECCV 2022, arXiv:2205.03436), built in pytest_e3p/models/edgevit.py. No
# official weights exist: they build with random weights unless given a checkpoint.
EDGEVIT = ("edgevit_xxs", "edgevit_xs", "edgevit_s")

# `edgevit-table3`: the models of the EdgeViT paper's Tables 2-3 that timm has, in Table 3's order,
# then the three EdgeViTs. The paper names no weights; these are the tags we take for each row:
# - MobileNet-v2: mobilenetv2_100.ra_in1k, timm's only 1.0x weights (RandAugment, 72.9 % in timm's
#   table; the paper's 72.0 is the original's).
# - MobileNet-v3 0.75: tf_mobilenetv3_large_075.in1k, the only large-0.75 weights in timm (the
#   TensorFlow originals, 73.4 %; paper 73.3). mobilenetv3_large_075 has no weights.
# - EfficientNet-B0: efficientnet_b0.ra_in1k (timm-native padding, 77.7 %; paper 77.1). The TF
#   originals are tf_efficientnet_b0.in1k / .aa_in1k (76.5 / 76.9 %), with TF "same" padding.
# - MobileViT-XXS/XS/S: mobilevit_*.cvnets_in1k, at 256 x 256 as in the paper (its Table 2 note).
# - PVT-v2-B0/B1: pvt_v2_b*.in1k; DeiT-Tiny: deit_tiny_patch16_224.fb_in1k.
EDGEVIT_TABLE3 = (
    "mobilenetv2_100.ra_in1k",
    "tf_mobilenetv3_large_075.in1k",
    "efficientnet_b0.ra_in1k",
    "pvt_v2_b0.in1k",
    "pvt_v2_b1.in1k",
    "deit_tiny_patch16_224.fb_in1k",
    "mobilevit_xxs.cvnets_in1k",
    "mobilevit_xs.cvnets_in1k",
    "mobilevit_s.cvnets_in1k",
    *EDGEVIT,
)

# The rows of the EdgeViT paper's Tables 2-3 that no timm model can stand for, with the reason
# (timm 1.0.31; checked with timm.list_models). A report lists these as "not available".
EDGEVIT_TABLE3_UNAVAILABLE = (
    ("Twins-SVT-Tiny*", "down-scaled by the EdgeViT authors to ~0.6 GFLOPs, configuration not published; timm has Twins-SVT-S/B/L only"),
    ("Uniformer-Tiny*", "down-scaled by the EdgeViT authors to ~0.6 GFLOPs, configuration not published; timm has no UniFormer"),
    ("T2T-ViT-7", "timm has no Tokens-to-Token ViT"),
    ("T2T-ViT-10", "timm has no Tokens-to-Token ViT"),
    ("T2T-ViT-12", "timm has no Tokens-to-Token ViT"),
    ("TNT-Tiny", "timm has TNT-S and TNT-B (tnt_s_patch16_224, 23.8M; tnt_b_patch16_224), not the 6.1M TNT-Tiny"),
)

MODEL_SETS = {"paper13": PAPER13, "candidates": CANDIDATES, "edgevit": EDGEVIT, "edgevit-table3": EDGEVIT_TABLE3}


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


@functools.cache
def _timm_archs() -> frozenset[str]:
    import timm

    from .. import register_models

    register_models()  # EdgeViT; normally done already when timm was imported (see __init__.py)
    return frozenset(timm.list_models())


@functools.cache
def default_tag(arch: str) -> str:
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(arch)
    return (cfg.tag or "") if cfg is not None else ""


@functools.cache
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
    """A set name (`paper13`, `candidates`, `edgevit`, `edgevit-table3`) or a comma list of timm
    names (tags allowed)."""
    spec = spec.strip()
    names = MODEL_SETS.get(spec) or [part for part in spec.split(",") if part.strip()]
    if not names:
        raise UnknownModel(f"no models given: use {', '.join(MODEL_SETS)}, or a comma list of timm names")
    models = [parse_model(n) for n in names]
    seen: set[str] = set()
    unique = []
    for m in models:
        if m.full not in seen:
            seen.add(m.full)
            unique.append(m)
    return unique


REFERENCE_TIMM = "reference (timm results-imagenet.csv)"


def default_image_size(model: ModelName) -> int:
    """The input resolution (pixels) timm's pretrained config gives the model; 224 without one."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(model.full) or get_pretrained_cfg(model.arch)
    return int(cfg.input_size[-1]) if cfg is not None and cfg.input_size else 224


REFERENCE_EDGEVIT_PAPER = "reference (EdgeViT paper)"


@dataclass(frozen=True)
class Reference:
    """A published ImageNet-1k accuracy: top-1/top-5 in percent, params in millions, and its source.

    Most rows are timm's results table for these exact weights; EdgeViT has no published weights and
    takes the EdgeViT paper's Table 2 (source REFERENCE_EDGEVIT_PAPER, no top-5)."""

    top1: float
    top5: float | None
    params_m: float
    img_size: int
    crop_pct: float
    interpolation: str
    source: str = REFERENCE_TIMM


@functools.lru_cache(maxsize=1)
def reference_table() -> dict[str, Reference]:
    table = {}
    with resources.files("pytest_e3p").joinpath("_data/results-imagenet.csv").open(newline="") as fh:  # type: ignore[call-overload]  # Traversable stub lacks newline
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
    """The published ImageNet-1k accuracy of these exact weights, if there is one: timm's table, or
    for EdgeViT the paper's Table 2 (224 x 224, the authors' DeiT eval transform)."""
    if model.arch in EDGEVIT:
        row = edgevit_paper_row(model)
        return Reference(row.top1, None, row.params_m, 224, 0.875, "bicubic", REFERENCE_EDGEVIT_PAPER) if row else None
    return reference_table().get(model.full)


@dataclass(frozen=True)
class EdgeViTPaperRow:
    """One model of the EdgeViT paper's Tables 2-3 (`pytest_e3p/_data/edgevit-paper.csv`).

    Table 2: params (M), GFLOPs (the paper's FLOPs are multiply-accumulates), top-1 (%), latency
    mean +/- sd (ms) over 50 batch-1 fp32 forward passes on the CPU of a Samsung Galaxy S21
    (Snapdragon 888, TorchScript lite). Table 3: energy (mJ) and average power (W) per inference,
    mean +/- sd over 50, on a Snapdragon 888 HDK (HDK8350) measured with a Monsoon High Voltage
    Power Monitor, background power subtracted; efficiency = top-1 / energy (%/mJ, the paper's
    "%/msW"). `timm_name` is the model that stands for the row here (None: see
    EDGEVIT_TABLE3_UNAVAILABLE). Down-scaled models are starred, as in the paper."""

    paper_name: str
    timm_name: str | None
    params_m: float
    gflops: float
    top1: float
    latency_ms: float
    latency_ms_sd: float
    energy_mj: float
    energy_mj_sd: float
    power_w: float
    power_w_sd: float
    efficiency_pct_per_mj: float
    source: str = REFERENCE_EDGEVIT_PAPER
    device: str = "Snapdragon 888 CPU (latency: Galaxy S21; energy: HDK8350 with a Monsoon power monitor)"


@functools.lru_cache(maxsize=1)
def edgevit_paper_table() -> tuple[EdgeViTPaperRow, ...]:
    """All 18 rows of the EdgeViT paper's Table 3 (with Table 2's params, GFLOPs and latency sd)."""
    rows = []
    with resources.files("pytest_e3p").joinpath("_data/edgevit-paper.csv").open(newline="") as fh:  # type: ignore[call-overload]  # Traversable stub lacks newline
        for r in csv.DictReader(fh):
            rows.append(
                EdgeViTPaperRow(
                    r["paper_model"],
                    r["timm_model"] or None,
                    params_m=float(r["params_m"]),
                    gflops=float(r["gflops"]),
                    top1=float(r["top1"]),
                    latency_ms=float(r["latency_ms"]),
                    latency_ms_sd=float(r["latency_ms_sd"]),
                    energy_mj=float(r["energy_mj"]),
                    energy_mj_sd=float(r["energy_mj_sd"]),
                    power_w=float(r["power_w"]),
                    power_w_sd=float(r["power_w_sd"]),
                    efficiency_pct_per_mj=float(r["efficiency_pct_per_mj"]),
                )
            )
    return tuple(rows)


def edgevit_paper_row(model: ModelName | str) -> EdgeViTPaperRow | None:
    """The EdgeViT paper's figures for the timm model standing for one of its rows: a ModelName or
    `arch.tag` must be the exact weights of EDGEVIT_TABLE3; a bare `arch` matches its row."""
    full = model.full if isinstance(model, ModelName) else model
    for row in edgevit_paper_table():
        if row.timm_name and (row.timm_name == full or ("." not in full and row.timm_name.partition(".")[0] == full)):
            return row
    return None
