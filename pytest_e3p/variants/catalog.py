"""The optimised variants by name: what each does, with which library, on which devices, from which
extra, and the bound its logits must keep against fp32 eager (the reasons are in
pytest_e3p/variants/__init__.py). Free of torch, so `pytest --help` and option checking stay cheap;
pytest_e3p.variants builds and checks them."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Bound:
    """How far a variant's logits may be from the fp32 eager model's and still count as the same
    model computed another way.

    max_rel_err bounds max|a - b| / max|a| over the batch (a: fp32 eager logits, b: the variant's);
    min_top1_pct bounds the share of images whose top-1 class agrees. math.inf / 0 mean "not
    checked", for the variants that change the model on purpose (pruning, sparsity, ToMe), where the
    difference is the cost being measured, not a fault."""

    family: str
    max_rel_err: float
    min_top1_pct: float
    why: str

    @property
    def text(self) -> str:
        parts = []
        if math.isfinite(self.max_rel_err):
            parts.append(f"max|a-b|/max|a| <= {self.max_rel_err:g}")
        if self.min_top1_pct > 0:
            parts.append(f"top-1 agreement >= {self.min_top1_pct:g} %")
        checks = " and ".join(parts) if parts else "finite logits of the reference's shape only"
        return f"{self.family}: {checks} ({self.why})"


FP32_GRAPH = Bound("fp32", 1e-3, 99.0, "same fp32 arithmetic, another order: rounding differences near 1e-6")
FP16 = Bound("fp16", 2e-2, 0.0, "10-bit mantissa, rounding in every layer")
BF16 = Bound("bf16", 5e-2, 0.0, "7-bit mantissa, rounding in every layer")
INT8 = Bound("int8", 0.25, 0.0, "8-bit weights and activations; a broken graph is off by ~1")
APPROXIMATION = Bound("approximation", math.inf, 0.0, "the model is changed on purpose: the logit change is the measured cost")


@dataclass(frozen=True)
class VariantInfo:
    """One line of --help and of the README's variant table."""

    name: str  # as written on the command line; P / R stand for the parameter
    what: str
    library: str
    devices: str
    extra: str  # the pytest-e3p extra that installs the library ("" : torch alone)
    bound: Bound
    module: str  # the module of pytest_e3p.variants whose prepare(request) makes it


VARIANTS: dict[str, VariantInfo] = {
    v.name: v
    for v in (
        VariantInfo("fp32", "eager PyTorch, fp32 (the reference)", "torch", "all", "", FP32_GRAPH, module="eager"),
        VariantInfo("fp16", "eager PyTorch, weights and activations cast to fp16", "torch", "all", "", FP16, module="eager"),
        VariantInfo("bf16", "eager PyTorch, weights and activations cast to bf16", "torch", "all", "", BF16, module="eager"),
        VariantInfo(
            "compile",
            "torch.compile (Inductor) for the run's batch shape; compile time excluded from rounds",
            "torch",
            "all (CPU: needs a C++ compiler)",
            "",
            FP32_GRAPH,
            module="compiled",
        ),
        VariantInfo(
            "int8", "dynamic int8 activations + int8 weights of every Linear (post-training)", "torchao", "CPU, CUDA", "quant", INT8, module="torchao_int8"
        ),
        VariantInfo(
            "onnxruntime",
            "ONNX export (torch.onnx, dynamo) run by ONNX Runtime",
            "onnxruntime, onnx, onnxscript",
            "CPU; CUDA/Jetson with onnxruntime-gpu",
            "onnx",
            FP32_GRAPH,
            module="onnx_runtime",
        ),
        VariantInfo(
            "onnxruntime-int8",
            "ONNX Runtime static int8 (QDQ), calibrated on the calibration images",
            "onnxruntime",
            "CPU; NVIDIA with the TensorRT provider",
            "onnx",
            INT8,
            module="onnx_runtime",
        ),
        VariantInfo(
            "openvino", "OpenVINO conversion of the torch model, fp32 on the CPU", "openvino", "CPU", "openvino", FP32_GRAPH, module="openvino_runtime"
        ),
        VariantInfo(
            "openvino-int8",
            "OpenVINO + NNCF post-training int8, calibrated on the calibration images",
            "openvino, nncf",
            "CPU",
            "openvino",
            INT8,
            module="openvino_runtime",
        ),
        VariantInfo(
            "tensorrt",
            "Torch-TensorRT (dynamo) engine of the model in fp16 (strong typing: the model and its input cast to fp16)",
            "torch-tensorrt",
            "NVIDIA GPU, Jetson",
            "tensorrt",
            FP16,
            module="tensorrt_runtime",
        ),
        VariantInfo(
            "tensorrt-int8",
            "Torch-TensorRT int8 after ModelOpt post-training quantisation",
            "torch-tensorrt, nvidia-modelopt",
            "NVIDIA GPU, Jetson",
            "tensorrt",
            INT8,
            module="tensorrt_runtime",
        ),
        VariantInfo(
            "prune-heads-P",
            "structured pruning: floor(P %) of the attention heads of every block removed (L2 magnitude)",
            "torch-pruning",
            "all; timm ViT/DeiT",
            "prune",
            APPROXIMATION,
            module="pruning",
        ),
        VariantInfo(
            "prune-mlp-P",
            "structured pruning: P % of the MLP hidden channels of every block removed (L2 magnitude)",
            "torch-pruning",
            "all; timm ViT/DeiT",
            "prune",
            APPROXIMATION,
            module="pruning",
        ),
        VariantInfo(
            "sparse-P",
            "P % of the weights of every Linear but the classifier zeroed (L1 unstructured), stored dense: latency not expected to move",
            "torch",
            "all",
            "",
            APPROXIMATION,
            module="sparsity",
        ),
        VariantInfo(
            "tome-R",
            "Token Merging: R tokens merged per block (Bolya et al. 2023), no retraining",
            "torch",
            "all; timm ViT/DeiT with a class token",
            "",
            APPROXIMATION,
            module="tome",
        ),
    )
}

VARIANT_HELP = "\n".join(f"{v.name}: {v.what} [{v.library}; {v.devices}{f'; extra {v.extra}' if v.extra else ''}]" for v in VARIANTS.values())

_PERCENT = r"([1-9][0-9]?)"  # 1..99, one spelling per value (no leading zero): names are test ids
_PARAMETRISED = {
    "prune-heads-P": re.compile(rf"prune-heads-{_PERCENT}"),
    "prune-mlp-P": re.compile(rf"prune-mlp-{_PERCENT}"),
    "sparse-P": re.compile(rf"sparse-{_PERCENT}"),
    "tome-R": re.compile(r"tome-([1-9][0-9]*)"),
}
_ACCEPTED = ", ".join(VARIANTS) + " (P: a whole percentage 1-99; R: tokens merged per block, a positive integer)"


def split_variant(name: str) -> tuple[str, int | None]:
    """The VARIANTS key of a variant name and its parameter, or ValueError."""
    if name in VARIANTS and name not in _PARAMETRISED:
        return name, None
    for key, pattern in _PARAMETRISED.items():
        match = pattern.fullmatch(name)
        if match:
            return key, int(match.group(1))
    raise ValueError(f"unknown variant {name!r}; accepted: {_ACCEPTED}")


def parse_variants(text: str) -> list[str]:
    """A comma list of variant names, checked, in the order given."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ValueError(f"no variant named; accepted: {_ACCEPTED}")
    for name in names:
        split_variant(name)
    seen = set()
    for name in names:
        if name in seen:
            raise ValueError(f"variant {name!r} is listed twice")
        seen.add(name)
    return names


def bound_for(name: str) -> Bound:
    return VARIANTS[split_variant(name)[0]].bound
