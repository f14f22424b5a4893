"""The accuracy pass: top-1 and top-5 over a labelled set, with the energy and time of the whole
pass (data loading included), as the paper's RTX protocol measured one pass over CIFAR-10."""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Sized
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import cast

import torch
from torch.utils.data import DataLoader, Dataset

from ..hardware.sensors import measures_energy, window
from ..models.datasets import DatasetError
from .context import MeasureContext


@dataclass(frozen=True)
class EvalResult:
    top1: float  # percent
    top5: float  # percent
    images: int
    duration_s: float
    energy_mj: float | None  # None where energy is unavailable

    @property
    def images_per_s(self) -> float:
        return self.images / self.duration_s if self.duration_s > 0 else float("nan")


def default_workers(torch_device: str) -> int:
    """Loader processes for the accuracy pass.

    On an accelerator, half the CPUs decode ahead while the device computes. On a CPU device the
    model already uses every core, and a decoder process beside it preempts the model's threads
    mid-operation (on 2 cores the pass ran at 0.49 of steady state); so there it is 0: each batch is
    decoded between forward passes by a thread per core (`ThreadedBatches`), which reaches the bound
    that sharing the cores sets (scripts/bench_eval.py prints both)."""
    if torch_device == "cpu":
        return 0
    return max(1, min(8, (os.cpu_count() or 2) // 2))


class ThreadedBatches(Dataset):
    """Loads each batch's images on a pool of threads (PIL releases the GIL while it decodes and
    resizes). DataLoader calls `__getitems__` with a whole batch's indices when it runs in-process."""

    def __init__(self, dataset: Dataset, threads: int):
        self.dataset = dataset
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="e3p-decode")
        weakref.finalize(self, self._pool.shutdown, wait=False)  # no idle threads left behind

    def __len__(self) -> int:
        return len(cast(Sized, self.dataset))

    def __getitem__(self, i: int):
        return self.dataset[i]

    def __getitems__(self, indices: list[int]) -> list:
        return list(self._pool.map(self.dataset.__getitem__, indices))


def make_loader(dataset: Dataset, batch_size: int, num_workers: int, pin_memory: bool = False) -> DataLoader:
    """Worker processes when num_workers > 0; otherwise in-process, a thread per CPU."""
    if num_workers == 0:
        dataset = ThreadedBatches(dataset, os.cpu_count() or 1)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=False,
        prefetch_factor=4 if num_workers > 0 else None,
    )


def evaluate(
    model: Callable[[torch.Tensor], torch.Tensor],
    loader: DataLoader,
    ctx: MeasureContext,
    dtype: torch.dtype = torch.float32,
    progress: Callable[[int, int, float], None] | None = None,
    prepare: Callable[[torch.Tensor, torch.dtype], torch.Tensor] | None = None,
) -> EvalResult:
    """One pass over `loader`; progress(done, total, elapsed_s) is called after each batch.

    `prepare(batch_on_device, dtype)` turns loader output into model input (EvalTransform.normalize
    for uint8 batches); without it batches are only cast to `dtype`."""
    torch_device, sensor, clock = ctx.torch_device, ctx.sensor, ctx.clock
    total = len(cast(Sized, loader.dataset))
    seen = 0
    # Hit counts stay on the device and labels are checked on the host, so the loop never waits for
    # the accelerator: one synchronisation at each end of the pass, as in the steady-state rounds.
    correct1 = correct5 = torch.zeros((), dtype=torch.long, device=torch_device)
    ctx.synchronize()
    start = sensor.read() if measures_energy(sensor) else None
    t0 = clock()
    with torch.inference_mode():
        for images, labels in loader:
            images = images.to(torch_device, non_blocking=True)
            logits = model(prepare(images, dtype) if prepare else images.to(dtype))
            classes = logits.shape[1]  # a shape: no wait for the device
            if int(labels.max()) >= classes or int(labels.min()) < 0:  # host labels: no wait either
                raise DatasetError(f"labels out of range for a {classes}-class model (max label {int(labels.max())}): use a checkpoint trained on this dataset")
            device_labels = labels.to(torch_device, non_blocking=True)
            hits = logits.topk(min(5, classes), dim=1).indices == device_labels[:, None]
            correct1 = correct1 + hits[:, 0].sum()
            correct5 = correct5 + hits.any(dim=1).sum()
            seen += labels.shape[0]
            if progress is not None:
                progress(seen, total, clock() - t0)
    ctx.synchronize()
    duration = clock() - t0
    energy = window(start, sensor.read()).energy_mj if start is not None else None
    if seen == 0:
        raise DatasetError("the evaluation set is empty")
    return EvalResult(100.0 * int(correct1) / seen, 100.0 * int(correct5) / seen, seen, duration, energy)
