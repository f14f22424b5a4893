"""Optimised variants of a case's model: the fp32 eager timm model turned into each variant, and the
variant's logits checked against the fp32 model's.

    names = parse_variants("fp32,onnxruntime,int8,prune-heads-50,tome-8")
    v = prepare("onnxruntime", model, x, calibration, device.kind, device.torch_device)
    a = agreement(model(x), v.forward(x), v.bound)      # a.ok, a.top1_pct, a.max_rel_err, a.bound

prepare() finds the variant's module in the catalog (VARIANTS, torch-free) and calls that module's
prepare(request) with one VariantRequest. It copies the model where the variant changes it, so the
caller's fp32 model stays the reference. A variant that cannot run here (library not installed, wrong device, model it does not
apply to) raises VariantUnavailable, whose message is the one-line skip reason.

Agreement bounds, per family, on max|a - b| / max|a| (a: fp32 eager logits, b: the variant's, over
the batch) and on top-1 agreement:

- fp32 (eager fp32, compile, onnxruntime, openvino): the same fp32 arithmetic in another
  order (fused kernels, other GEMM blocking), whose rounding differences are around 1e-6 of the
  largest logit; 1e-3 leaves three orders of magnitude for deeper models while a wrong graph (a
  dropped layer, a wrong transpose) is off by tens of percent. Top-1 must agree on 99 % of images:
  errors of 1e-6 flip only exact ties.
- fp16 (fp16, tensorrt with its fp16 kernels): 10-bit mantissa (unit roundoff 4.9e-4), rounding in every
  layer: <= 2e-2.
- bf16: 7-bit mantissa (unit roundoff 3.9e-3): <= 5e-2.
- int8 (int8, onnxruntime-int8, openvino-int8, tensorrt-int8): 256 levels per tensor or channel,
  error a few percent of the largest logit: <= 0.25, still far below a broken graph's ~1 (a logit
  vector permuted or replaced by noise is off by about its own size).
- approximations (prune-*, sparse-*, tome-*): the model is changed on purpose and not fine-tuned;
  how far its logits move is the cost being measured, so only finite logits of the right shape are
  required, and agreement is reported.

Top-1 agreement is required for the fp32 family only. On random weights (what the suite uses
offline) the logits are nearly flat: the top two classes are often within 1 % of the largest
logit, so a legitimate fp16, bf16 or int8 rounding flips the top-1 class of many images while the
logits agree to the stated bound; top-1 agreement is a weak signal there, and the logit error is
what the check rests on. With trained weights, the accuracy pass on a labelled dataset measures the
variant's top-1 directly.
"""

from __future__ import annotations

from typing import Any

from ..lazy import lazy_attribute
from .catalog import VARIANT_HELP, VARIANTS, Bound, VariantInfo, bound_for, parse_variants, split_variant

__all__ = [
    "VARIANTS",
    "VARIANT_HELP",
    "Agreement",
    "Bound",
    "PreparedVariant",
    "VariantInfo",
    "VariantRequest",
    "VariantUnavailable",
    "agreement",
    "bound_for",
    "compare",
    "parse_variants",
    "prepare",
    "split_variant",
]

# What needs torch is imported on first use, so the catalog (options, help) stays cheap to import.
_LAZY = {
    "prepare": "preparation",
    "agreement": "preparation",
    "compare": "preparation",
    "Agreement": "base",
    "PreparedVariant": "base",
    "VariantRequest": "base",
    "VariantUnavailable": "base",
}


def __getattr__(name: str) -> Any:
    return lazy_attribute(__name__, _LAZY, name)
