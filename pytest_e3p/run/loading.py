"""A case's model on its device: built with its weights, prepared as its variant (checked against
fp32 eager), counted, and kept until its case is done."""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..hardware.devices import Device
from ..models import datasets as data
from ..models.build import RANDOM, ImageSizeError, Weights, build_model, checkpoint_path
from ..models.complexity import Complexity, count_gmacs, count_params_m, model_input_size
from ..models.screening import complexity_of
from ..models.zoo import ModelName
from ..text import first_line
from .case import Case, CaseSkipped

if TYPE_CHECKING:
    from ..variants.base import Agreement, PreparedVariant

EAGER = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}  # variants that are a dtype of the eager model


@dataclass
class LoadedModel:
    """A case's model on its device, with where its weights came from and its stage-1 figures.

    `module` is the eager model (the fp32 reference of a variant); `forward` runs the case's form of
    it (the variant) on a batch of `input_dtype`."""

    name: ModelName
    module: torch.nn.Module
    weights: Weights
    complexity: Complexity
    input_size: tuple[int, int, int]
    num_classes: int
    forward: Callable[[torch.Tensor], Any] | None = None
    input_dtype: torch.dtype = torch.float32
    variant: PreparedVariant | None = None  # for a non-eager variant
    agreement: Agreement | None = None  # its agreement with the fp32 eager model

    def __post_init__(self) -> None:
        if self.forward is None:
            self.forward = self.module

    @property
    def precision(self) -> str:
        """fp32, fp16 or bf16: the dtype the model computes in (the variant's input dtype)."""
        dtype = self.variant.input_dtype if self.variant is not None else self.input_dtype
        return next((name for name, d in EAGER.items() if d == dtype), str(dtype).removeprefix("torch."))

    @property
    def broken(self) -> bool:
        """A variant outside its agreement bound with fp32: reported by its test, never measured."""
        return self.agreement is not None and not self.agreement.ok


def input_batch(case: Case, size: tuple[int, int, int], torch_device: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The measured input: a seeded random batch of the case's size on the device (energy and
    latency do not depend on the pixel values)."""
    gen = torch.Generator().manual_seed(0)
    return torch.randn((case.batch_size, *size), generator=gen).to(torch_device, dtype=dtype)


class ModelLoader:
    """Builds each case's model once and keeps it until release(): every pass of the case and its
    test use the same one. A case that cannot run here is remembered, and skipped at once."""

    def __init__(self, device: Device, weights: str, checkpoints: Path | None, cache: Any, progress: Callable[[str], None]):
        self.device, self.weights, self.checkpoints = device, weights, checkpoints
        self.cache, self.progress = cache, progress
        self.loaded: dict[str, LoadedModel] = {}  # case id -> its model, until release()
        self.skipped: dict[str, str] = {}  # case id -> why it cannot run here
        self._weights_warned = False

    def load(self, case: Case) -> LoadedModel:
        """The case's model on the device in the case's form (a non-eager variant prepared and checked
        against fp32); CaseSkipped where the case cannot run here."""
        if case.id in self.skipped:
            raise CaseSkipped(self.skipped[case.id])
        if case.id not in self.loaded:
            try:
                self.loaded[case.id] = self._build(case)
            except CaseSkipped as exc:
                self.skipped[case.id] = str(exc)
                raise
        return self.loaded[case.id]

    def release(self, case_id: str) -> None:
        """Drop a case's model: after its test, or after each pass where peak memory is budgeted, so
        no case's peak holds another case's models."""
        self.loaded.pop(case_id, None)

    def _build(self, case: Case) -> LoadedModel:
        classes = data.num_classes(case.dataset)
        ckpt = None
        if self.checkpoints is not None:
            candidate = checkpoint_path(self.checkpoints, case.model, case.dataset.name)
            # A missing checkpoint is not fatal: energy and latency stay valid, top-1 says why not.
            ckpt = candidate if candidate.exists() else None
        # Random weights are the same in every pass and run: energy does not depend on weight values,
        # but denormal numbers and the like would make two draws differ.
        torch.manual_seed(zlib.crc32(case.model.full.encode()))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the weights fallback is reported once, by us
            try:
                net, weights = build_model(
                    case.model, self.weights, ckpt, classes if classes != 1000 else None, case.image_size, self.device.torch_device, case.batch_size
                )
            except ImageSizeError as exc:  # a size the model or the memory cannot take: a skipped case, as below
                raise CaseSkipped(str(exc)) from None
        if weights.source == RANDOM and self.weights != RANDOM and not self._weights_warned:
            self._weights_warned = True  # one warning per run, not one per model
            self.progress(f"[e3p] {weights.detail}; using random weights: energy and latency stay valid, top-1 is the reference figure")
        head = getattr(net, "num_classes", classes or 1000)
        size = (3, case.image_size, case.image_size) if case.image_size else model_input_size(net)
        if case.image_size:
            _check_runs_at(net, case)
            # counted on the 1000-class model, as at the model's own size, so the two compare
            counted = net if head == 1000 else build_model(case.model, RANDOM, None, None, case.image_size)[0]
            cx = Complexity(count_params_m(counted), count_gmacs(counted, size), size)
        else:
            cx = complexity_of(case.model, self.cache, built=net if head == 1000 else None)
        if case.variant == "fp32":  # the eager reference; every other variant is checked against it
            net = net.to(self.device.torch_device).eval()
            return LoadedModel(case.model, net, weights, cx, size, head)
        return self._prepare_variant(case, net, weights, cx, size, head)

    def _sample_images(self, case: Case, net: torch.nn.Module, size: tuple[int, int, int], n: int) -> torch.Tensor:
        """n fp32 images of the case's dataset, for calibrating a variant and checking it against
        fp32: seeded random ones for synthetic data, else the first n images of the dataset through
        the model's eval transform (the dataset is opened once)."""
        if case.dataset.kind == data.SYNTHETIC:
            return torch.randn((n, *size), generator=torch.Generator().manual_seed(1))
        return data.sample_images(case.dataset, net, size, n)

    def _prepare_variant(self, case: Case, net: torch.nn.Module, weights: Weights, cx: Complexity, size: tuple[int, int, int], head: int) -> LoadedModel:
        from .. import variants

        dev = self.device.torch_device
        net = net.to(dev).eval()
        images = self._sample_images(case, net, size, 64).to(dev)
        calibration = list(images[:32].split(8))
        check = images[32:]  # not the calibration images
        example = input_batch(case, size, dev)
        with torch.inference_mode():
            reference = net(check).float()
        try:
            # a Jetson whose torch has no CUDA runs its variants on the CPU, as its fp32 model
            prepared = variants.prepare(case.variant, net, example, calibration, "cpu" if dev == "cpu" else self.device.kind, dev)
        except variants.VariantUnavailable as exc:
            raise CaseSkipped(str(exc)) from None
        except Exception as exc:  # an export or conversion the runtime cannot do for this model
            first = first_line(exc)
            lines = [ln.strip() for ln in str(exc).splitlines() if "no conversion rule" in ln.lower() or "unsupported" in ln.lower()]
            raise CaseSkipped(f"{case.variant} could not be prepared for {case.model.full}: {type(exc).__name__}: {(lines or [first])[0][:200]}") from None
        with torch.inference_mode():
            logits = fixed_batch(prepared.forward, prepared.batch_size)(check).float()
        agreement = variants.agreement(reference, logits, prepared.bound)
        if prepared.params_m is not None or prepared.gmacs is not None:  # pruning changes both, ToMe the MACs only
            cx = Complexity(
                prepared.params_m if prepared.params_m is not None else cx.params_m, prepared.gmacs if prepared.gmacs is not None else cx.gmacs, size
            )
        self.progress(f"[e3p] {case.id}: {prepared.detail}; prepared in {prepared.prepare_s:.1f} s; {agreement_text(agreement)}")
        # the fp32 reference is not kept: only its data config is needed later (the eval transform),
        # and its weights would count in the variant's peak memory
        return LoadedModel(case.model, _ConfigOnly(net), weights, cx, size, head, prepared.forward, prepared.input_dtype, prepared, agreement)


class _ConfigOnly(torch.nn.Module):
    """What remains of a variant's fp32 reference: its timm config, for the data transform."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.pretrained_cfg = getattr(net, "pretrained_cfg", None) or getattr(net, "default_cfg", {})
        self.default_cfg = self.pretrained_cfg
        self.num_classes = getattr(net, "num_classes", None)


def fixed_batch(forward: Callable[[torch.Tensor], Any], size: int | None) -> Callable[[torch.Tensor], Any]:
    """`forward` for any number of images where it takes batches of `size` only (an exported graph):
    the images in chunks of `size`, the last one padded with copies of its last image and its
    logits cut back. `size` None: `forward` itself."""
    if size is None:
        return forward

    def run(x: torch.Tensor) -> Any:
        if x.shape[0] == size:
            return forward(x)
        out = []
        for chunk in x.split(size):
            n = chunk.shape[0]
            if n < size:
                chunk = torch.cat([chunk, chunk[-1:].expand(size - n, *chunk.shape[1:])])
            out.append(forward(chunk)[:n])
        return torch.cat(out)

    return run


def agreement_text(a: Agreement) -> str:
    """One line on a variant against fp32 eager."""
    verdict = "within" if a.ok else "OUTSIDE"
    return f"top-1 agreement {a.top1_pct:.1f} % and max relative logit error {a.max_rel_err:.3g} on {a.samples} images, {verdict} the bound ({a.bound})"


def _check_runs_at(net: torch.nn.Module, case: Case) -> None:
    """A model built for another resolution runs one image of it, or the case is skipped saying why."""
    px = case.image_size
    assert px is not None  # only image-size cases are checked
    try:
        with torch.inference_mode():
            net.eval()(torch.zeros(1, 3, px, px))
    except Exception as exc:
        first = first_line(exc) or type(exc).__name__
        raise CaseSkipped(f"{case.model.full} cannot take {px} x {px} input: {first[:200]}") from None
