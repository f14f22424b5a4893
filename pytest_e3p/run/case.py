"""The case matrix: one Case per model x device x dataset x variant x batch x image size, one test id each."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..models import datasets as data
from ..models import zoo
from ..models.zoo import ModelName


class CaseSkipped(Exception):
    """A case that cannot run here (a variant whose library or device is missing, a model that cannot
    take the image size): its test is skipped with this one-line reason."""


@dataclass(frozen=True)
class Case:
    """One (model x device x dataset x variant x batch x image size) combination: one test id.

    The id names a variant other than fp32, and the batch and the image size where their option
    lists several values (each value is then a case), so a run without the axes keeps the ids, and
    baselines, it always had."""

    model: ModelName
    device: str
    dataset: data.DatasetSpec
    variant: str = "fp32"
    batch_size: int = 16
    image_size: int | None = None  # pixels; None: the model's own
    batch_axis: bool = False  # name the batch in the id
    size_axis: bool = False  # name the image size in the id

    @property
    def id(self) -> str:
        parts = [self.model.case_id, self.device, self.dataset.name]
        if self.variant != "fp32":
            parts.append(self.variant)
        if self.batch_axis:
            parts.append(f"bs{self.batch_size}")
        if self.size_axis:
            parts.append(f"{self.image_size or zoo.default_image_size(self.model)}px")
        return "-".join(parts)


def case_matrix(
    models: Sequence[ModelName],
    device: str,
    datasets: Sequence[data.DatasetSpec],
    variants: Sequence[str],
    batch_sizes: Sequence[int],
    image_sizes: Sequence[int | None],
) -> list[Case]:
    """Every case of the run, in test order: model, dataset, batch, image size, variant. The variant
    varies fastest, fp32 first, so each variant runs right after its fp32 reference in every pass
    (run.within_pass: the machine's drift between two passes must not enter a variant's saving)."""
    out = []
    variants = sorted(variants, key=lambda v: v != "fp32")  # stable: the others in the order given
    for m in models:
        own_size = zoo.default_image_size(m)
        # a size equal to the model's own is the model's own: one case, not two
        sizes = list(dict.fromkeys(None if size in (None, own_size) else size for size in image_sizes))
        for d in datasets:
            for b in batch_sizes:
                for px in sizes:
                    for v in variants:
                        # a size is named in the id where the option lists several, or where it is not the model's own
                        out.append(Case(m, device, d, v, b, px, len(batch_sizes) > 1, len(sizes) > 1 or px is not None))
    return out
