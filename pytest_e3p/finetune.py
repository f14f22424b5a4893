"""The E3P paper's CIFAR-10 fine-tuning recipe: 45k/5k split of the training set with a fixed
seed, SGD lr 0.01 momentum 0.9, cosine schedule over 15,000 steps, batch 32, images resized to the
model's input size with ImageNet normalisation. Writes DIR/<arch>_cifar10.pth, which the suite loads
with --e3p-checkpoints DIR."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FinetuneConfig:
    model: str
    dataset: str  # "cifar10=PATH"
    out: str
    steps: int = 15000
    batch_size: int = 32
    lr: float = 0.01
    seed: int = 0
    eval_every: int = 1000
    device: str = "cpu"
    limit: int = 0  # use N training images (0: all 50,000)
    val_fraction: float = 0.1  # 45k / 5k


def finetune(cfg: FinetuneConfig, log=print) -> Path:
    # imported here: `python -m pytest_e3p finetune --help` reads FinetuneConfig's defaults, and
    # importing torch would make every command's help wait seconds
    import torch
    from torch.utils.data import DataLoader, Subset

    from .measure.accuracy import evaluate
    from .measure.context import MeasureContext
    from .models import datasets as data
    from .models.build import PRETRAINED, build_model, checkpoint_path
    from .models.zoo import parse_model
    from .storage.results import write_atomic

    specs = data.parse_datasets(cfg.dataset)
    if len(specs) != 1 or specs[0].kind != data.CIFAR10:
        raise ValueError("finetune takes one dataset: cifar10=PATH")
    spec = specs[0]
    name = parse_model(cfg.model)
    torch.manual_seed(cfg.seed)
    model, weights = build_model(name, PRETRAINED, num_classes=10)
    log(f"{name.full}: weights {weights.source} ({weights.detail})")
    transform = data.eval_transform(spec, model)
    train_all = data.open_cifar10(spec.data_path, "train", transform.per_image)
    order = torch.randperm(len(train_all), generator=torch.Generator().manual_seed(cfg.seed)).tolist()
    if cfg.limit:
        order = order[: cfg.limit]
    n_val = max(1, int(len(order) * cfg.val_fraction))
    train, val = Subset(train_all, order[n_val:]), Subset(train_all, order[:n_val])
    loader = DataLoader(
        train, batch_size=cfg.batch_size, shuffle=True, drop_last=len(train) >= cfg.batch_size, generator=torch.Generator().manual_seed(cfg.seed)
    )
    val_loader = DataLoader(val, batch_size=64)
    model.to(cfg.device).train()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, cfg.steps) / cfg.steps)))
    loss_fn = torch.nn.CrossEntropyLoss()
    step = 0
    while step < cfg.steps:
        for images, labels in loader:
            images, labels = transform.normalize(images.to(cfg.device)), labels.to(cfg.device)
            loss = loss_fn(model(images), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % cfg.eval_every == 0 or step == cfg.steps:
                model.eval()
                sync = (lambda: torch.cuda.synchronize()) if cfg.device.startswith("cuda") else (lambda: None)
                ev = evaluate(model, val_loader, MeasureContext(sync, torch_device=cfg.device), prepare=transform.normalize)
                model.train()
                log(f"step {step}/{cfg.steps}: loss {loss.item():.4f}, validation top-1 {ev.top1:.2f}% on {ev.images} images")
            if step >= cfg.steps:
                break
    out = checkpoint_path(cfg.out, name, data.CIFAR10)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".pth.tmp")
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
    tmp.replace(out)  # atomic: a crashed run leaves no half checkpoint under the final name
    write_atomic(
        out.with_suffix(".json"), f'{{"model": "{name.full}", "steps": {cfg.steps}, "seed": {cfg.seed}, "lr": {cfg.lr}, "batch_size": {cfg.batch_size}}}\n'
    )
    return out
