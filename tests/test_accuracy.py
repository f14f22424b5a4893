"""Accuracy through the plugin equals an independent plain-torch evaluation, image for image."""

import json

import fakes.datasets as make
import pytest
import timm
import torch
from PIL import Image

# a short protocol: these tests check accuracy and loading, not the measurement
FAST = ["--e3p-rounds=3", "--e3p-min-round-s=0.05", "--e3p-warmup-s=0", "--e3p-idle-s=0", "-p", "no:cacheprovider"]


def train_small_model(folder, steps=30):
    """test_vit (0.4 M params) trained on the red/blue folder until it separates most of it."""
    torch.manual_seed(0)
    model = timm.create_model("test_vit", pretrained=False, num_classes=2)
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    items = sorted((p, int(p.parent.name[-1])) for p in folder.glob("*/*.png"))
    x = torch.stack([transform(Image.open(p).convert("RGB")) for p, _ in items])
    y = torch.tensor([label for _, label in items])
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def plain_top1(model, folder):
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    items = sorted((p, int(p.parent.name[-1])) for p in folder.glob("*/*.png"))
    hits = []
    with torch.inference_mode():
        for p, label in items:
            pred = model(transform(Image.open(p).convert("RGB"))[None]).argmax(1).item()
            hits.append(pred == label)
    return 100.0 * sum(hits) / len(hits), len(hits)


def test_measured_top1_of_a_checkpoint_equals_a_plain_torch_evaluation(pytester, tmp_path):
    folder = make.image_folder(tmp_path / "data", per_class=6)
    model = train_small_model(folder)
    ckpts = tmp_path / "ckpts"
    ckpts.mkdir()
    torch.save(model.state_dict(), ckpts / "test_vit_folder.pth")
    expected, n = plain_top1(model, folder)
    assert expected >= 75.0  # the training worked, so a wrong label order would show

    pytester.makepyfile(test_bench="def test_energy(e3p):\n    e3p.measure()\n    e3p.evaluate()\n")
    result = pytester.runpytest(
        "--e3p-device=cpu",
        "--e3p-models=test_vit",
        f"--e3p-dataset=synthetic,folder={folder}",
        f"--e3p-checkpoints={ckpts}",
        "--e3p-batch-size=4",
        "--e3p-rounds=3",
        "--e3p-min-round-s=0.05",
        "--e3p-warmup-s=0",
        "--e3p-idle-s=0",
        "--e3p-workers=1",
        "-p",
        "no:cacheprovider",  # a loader process (the GPU default); the next run decodes in-process
    )
    result.assert_outcomes(passed=2)
    cases = json.loads((pytester.path / ".e3p/results.json").read_text())["cases"]
    folder_case = cases["test_vit-cpu-folder"]
    assert folder_case["top1_source"] == "measured" and folder_case["weights"] == "checkpoint"
    assert folder_case["top1"] == pytest.approx(expected) and folder_case["eval_images"] == n
    assert folder_case["top5"] == 100.0  # two classes: always in the top 5
    assert folder_case["eval_duration_s"] > 0 and folder_case["eval_energy_mj"] > 0
    # the synthetic case of the same run has no labels: timm's reference top-1 for test_vit, said so
    synthetic = cases["test_vit-cpu-synthetic"]
    assert synthetic["top1_source"] == "reference" and synthetic["top1"] == 40.982  # timm's results-imagenet.csv
    assert "the synthetic dataset has no labels" in synthetic["sam_note"]

    # --e3p-limit: a documented subset, said so in the results
    result = pytester.runpytest(
        "--e3p-device=cpu",
        "--e3p-models=test_vit",
        f"--e3p-dataset=folder={folder}",
        f"--e3p-checkpoints={ckpts}",
        "--e3p-limit=5",
        "--e3p-batch-size=4",
        *FAST,
    )
    result.assert_outcomes(passed=1)
    case = json.loads((pytester.path / ".e3p/results.json").read_text())["cases"]["test_vit-cpu-folder"]
    assert case["eval_images"] == 5 and case["eval_subset"] == "5 of 12 images, evenly spaced (--e3p-limit)"
    result.stdout.fnmatch_lines(["accuracy pass, data loading included", "test_vit* 5 (subset) *"])

    # progress lines while a pass runs: images done, rate, time left; the test outcome line survives
    result = pytester.runpytest(
        "--e3p-device=cpu",
        "--e3p-models=test_vit",
        f"--e3p-dataset=folder={folder}",
        f"--e3p-checkpoints={ckpts}",
        "--e3p-progress-s=0",
        "--e3p-batch-size=4",
        *FAST,
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["[[]e3p[]] test_vit-cpu-folder: 4/12 images, * img/s, * s left", "[[]e3p[]] test_vit-cpu-folder: 8/12 images, *"])


def test_a_dataset_that_needs_a_checkpoint_says_so(pytester, tmp_path):
    make.cifar_tree(tmp_path)
    pytester.makepyfile(test_bench="def test_energy(e3p):\n    e3p.measure()\n    e3p.evaluate()\n")
    result = pytester.runpytest(
        "--e3p-device=cpu",
        "--e3p-models=test_vit",
        f"--e3p-dataset=cifar10={tmp_path}",
        "--e3p-weights=random",
        "--e3p-batch-size=2",
        *FAST,
    )
    result.assert_outcomes(passed=1)
    why = "cifar10 needs a fine-tuned checkpoint: --e3p-checkpoints DIR with test_vit_cifar10.pth (see `python -m pytest_e3p finetune`)"
    result.stdout.fnmatch_lines([f"*test_vit-cpu-cifar10: top-1 unavailable: {why}*"])
    case = json.loads((pytester.path / ".e3p/results.json").read_text())["cases"]["test_vit-cpu-cifar10"]
    assert case["reason"] == why and case["top1_source"] == "unavailable"
    assert case["top1"] is None and case["sam"] is None
    assert case["energy_mj_per_image"] is not None  # energy and latency stay valid


def test_a_missing_checkpoint_costs_top1_only_and_a_corrupt_one_fails_its_case_alone(pytester, tmp_path):
    folder = make.image_folder(tmp_path / "data", per_class=2)
    ckpts = tmp_path / "ckpts"
    ckpts.mkdir()
    (ckpts / "test_vit_folder.pth").write_bytes(b"not a checkpoint")  # test_vit's is corrupt, test_vit2's is missing
    pytester.makepyfile(test_bench="def test_energy(e3p):\n    e3p.measure()\n    e3p.evaluate()\n")
    result = pytester.runpytest(
        "--e3p-device=cpu",
        "--e3p-models=test_vit,test_vit2",
        f"--e3p-dataset=folder={folder}",
        f"--e3p-checkpoints={ckpts}",
        "--e3p-batch-size=2",
        *FAST,
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            f"checkpoint {ckpts / 'test_vit_folder.pth'} cannot be read as a weights-only torch file (*); save a state dict with torch.save(*",
            f"*top-1 unavailable: folder needs a fine-tuned checkpoint: {ckpts / 'test_vit2_folder.pth'} does not exist*",
        ]
    )
    result.stdout.no_fnmatch_line("*Traceback*")
    case = json.loads((pytester.path / ".e3p/results.json").read_text())["cases"]["test_vit2-cpu-folder"]
    assert case["top1"] is None and case["energy_mj_per_image"] is not None


def test_finetune_command_runs_the_recipe_and_writes_a_checkpoint_the_suite_loads(tmp_path, capsys):
    from pytest_e3p.cli import main
    from pytest_e3p.models.build import build_model
    from pytest_e3p.models.zoo import parse_model

    make.cifar_tree(tmp_path / "cifar", n_train=8)
    rc = main(
        [
            "finetune",
            "--model",
            "test_vit",
            "--dataset",
            f"cifar10={tmp_path / 'cifar'}",
            "--out",
            str(tmp_path / "ck"),
            "--steps",
            "3",
            "--eval-every",
            "2",
            "--batch-size",
            "4",
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "step 2/3" in out and "validation top-1" in out and "step 3/3" in out
    path = tmp_path / "ck" / "test_vit_cifar10.pth"
    net, weights = build_model(parse_model("test_vit"), checkpoint=path, num_classes=10)
    assert weights.source == "checkpoint" and net.num_classes == 10
