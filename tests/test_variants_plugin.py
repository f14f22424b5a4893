"""Variants as a case axis, as users run them (pytester): ids, results and baseline entries per
variant, the variants table, skips that name their fix, a broken variant failing instead of being
measured, and the deprecated --e3p-precision."""

import json

import pytest
from fakes.runs import SHORT

BENCH = """
def test_energy(e3p):
    e3p.measure()
"""
FAST = [*SHORT, "--e3p-models=test_vit"]


@pytest.fixture
def bench(pytester):
    pytester.makepyfile(test_bench=BENCH)
    return pytester


def test_each_variant_is_a_case_with_its_own_id_results_and_baseline_entry(bench):
    args = [*FAST, "--e3p-variants=fp32,bf16,sparse-50", "-v"]
    first = bench.runpytest(*args, "--e3p-results=r.json", "--e3p-save-baseline=base.json")
    first.assert_outcomes(passed=3)
    first.stdout.fnmatch_lines(
        [
            "*test_energy?test_vit-cpu-synthetic? PASSED*",
            "*test_energy?test_vit-cpu-synthetic-bf16? PASSED*",
            "*test_energy?test_vit-cpu-synthetic-sparse-50? PASSED*",
            "*variants of test_vit.r160_in1k on cpu / synthetic, batch 16, 160 px*",
            "*variant*latency (ms/img)*vs fp32*energy (mJ/img)*vs fp32*top-1 vs fp32 (points)*agreement*",
            "*top-1 not measured*agreement with fp32 on the same images is the accuracy check*",
        ]
    )
    cases = json.loads((bench.path / "r.json").read_text())["cases"]
    assert cases["test_vit-cpu-synthetic-bf16"]["variant"] == "bf16" and cases["test_vit-cpu-synthetic-bf16"]["precision"] == "bf16"
    sparse = cases["test_vit-cpu-synthetic-sparse-50"]
    assert sparse["variant"] == "sparse-50" and sparse["agreement_top1_pct"] is not None and sparse["prepare_s"] >= 0
    assert cases["test_vit-cpu-synthetic"]["variant"] == "fp32" and cases["test_vit-cpu-synthetic"]["agreement_top1_pct"] is None
    assert set(json.loads((bench.path / "base.json").read_text())["cases"]) == set(cases)
    # the same variants again: each compared with its own entry
    again = bench.runpytest(*args, "--e3p-baseline=base.json", "--e3p-tolerance=energy=1000%", "--e3p-results=r2.json")
    again.assert_outcomes(passed=3)
    assert all(c["change_vs_baseline"] is not None for c in json.loads((bench.path / "r2.json").read_text())["cases"].values())


def test_variants_that_cannot_run_here_are_skipped_naming_the_fix(bench, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torchao", None)  # an import of it fails, as where it is not installed
    result = bench.runpytest(*FAST, "--e3p-variants=fp32,tensorrt,int8", "-rs", "--e3p-results=r.json")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(["*SKIPPED*tensorrt needs an NVIDIA GPU*", "*SKIPPED*torchao is not installed: pip install ?pytest-e3p?quant??*"])
    # every case asked for is in the results, a skipped one with the reason the skip gave (issue 29)
    cases = json.loads((bench.path / "r.json").read_text())["cases"]
    assert {cid: c["status"] for cid, c in cases.items()} == {
        "test_vit-cpu-synthetic": "ok",
        "test_vit-cpu-synthetic-tensorrt": "skipped",
        "test_vit-cpu-synthetic-int8": "skipped",
    }
    assert "torchao is not installed" in cases["test_vit-cpu-synthetic-int8"]["reason"]


BROKEN_CONFTEST = """
import torch
import pytest_e3p.variants as variants

real = variants.prepare

def broken(name, model, example, calibration, device_kind, torch_device):
    prepared = real(name, model, example, calibration, device_kind, torch_device)
    forward = prepared.forward
    prepared.forward = lambda x: forward(x).flip(-1)  # classes reversed: a broken export
    return prepared

def pytest_configure(config):
    variants.prepare = broken

def pytest_unconfigure(config):
    variants.prepare = real
"""


def test_a_variant_that_disagrees_with_fp32_is_a_broken_case_not_a_saving(bench):
    bench.makeconftest(BROKEN_CONFTEST)
    result = bench.runpytest(*FAST, "--e3p-variants=fp32,bf16", "--e3p-results=r.json")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*test_vit-cpu-synthetic-bf16: broken variant, not measured: top-1 agreement * OUTSIDE the bound (bf16*"])
    broken = json.loads((bench.path / "r.json").read_text())["cases"]["test_vit-cpu-synthetic-bf16"]
    assert broken["status"] == "failed" and broken["energy_mj_per_image"] is None and broken["max_rel_logit_error"] > 0.05


def test_the_deprecated_precision_option_runs_as_its_variant(bench):
    result = bench.runpytest(*FAST, "--e3p-precision=bf16", "--e3p-results=r.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*[[]e3p[]] --e3p-precision is deprecated: measuring it as --e3p-variants bf16 (case ids end in -bf16)*"])
    case = json.loads((bench.path / "r.json").read_text())["cases"]["test_vit-cpu-synthetic-bf16"]
    assert case["variant"] == "bf16" and case["precision"] == "bf16"
    both = bench.runpytest(*FAST, "--e3p-precision=bf16", "--e3p-variants=fp32,int8")
    assert both.ret == pytest.ExitCode.USAGE_ERROR
    both.stderr.fnmatch_lines(["*--e3p-precision bf16 and --e3p-variants fp32,int8: give the precision as a variant only*"])


def test_an_unknown_variant_is_a_usage_error_listing_the_accepted_ones(bench):
    result = bench.runpytest(*FAST, "--e3p-variants=fp32,int4")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*int4*fp32*onnxruntime*tome-R*"])


def test_a_fixed_batch_forward_takes_any_number_of_images():
    import torch

    from pytest_e3p.run import fixed_batch

    calls = []

    def exported(x):  # an exported graph: batches of 4 only
        assert x.shape[0] == 4
        calls.append(x.shape[0])
        return x.sum(dim=(1, 2, 3))[:, None] * torch.ones(1, 3)

    x = torch.arange(10.0)[:, None, None, None].expand(10, 1, 2, 2)
    out = fixed_batch(exported, 4)(x)
    assert out.shape == (10, 3) and torch.equal(out[:, 0], 4 * torch.arange(10.0)) and calls == [4, 4, 4]
    assert fixed_batch(exported, None) is exported


def test_a_baseline_saved_with_the_old_precision_option_is_refused_naming_the_fix(bench):
    first = bench.runpytest(*FAST, "--e3p-variants=bf16", "--e3p-passes=1", "--e3p-save-baseline=base.json")
    first.assert_outcomes(passed=1)
    data = json.loads((bench.path / "base.json").read_text())
    data["protocol"].pop("variants")  # as a file from before variants, which ran bf16 by --e3p-precision
    data["protocol"]["precision"] = "bf16"
    (bench.path / "base.json").write_text(json.dumps(data))
    result = bench.runpytest(*FAST, "--e3p-variants=bf16", "--e3p-baseline=base.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*saved with --e3p-precision bf16, before precisions were variants: save it again with --e3p-variants bf16*"])


def test_on_a_labelled_dataset_each_variant_has_its_top1_and_its_change_in_points(pytester, tmp_path):
    """An exported variant takes its own batch only: the accuracy pass over 12 images at batch 8 pads
    the last batch, and the variant's measured top-1 stands beside fp32's."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import fakes.datasets as make
    import timm
    import torch

    folder = make.image_folder(tmp_path / "data", per_class=6)
    ckpts = tmp_path / "ckpts"
    ckpts.mkdir()
    torch.manual_seed(0)
    torch.save(timm.create_model("test_vit", num_classes=2).state_dict(), ckpts / "test_vit_folder.pth")
    pytester.makepyfile(test_bench="def test_energy(e3p):\n    e3p.measure()\n    e3p.evaluate()\n")
    args = [*FAST, f"--e3p-dataset=folder={folder}", f"--e3p-checkpoints={ckpts}", "--e3p-batch-size=8", "--e3p-variants=fp32,onnxruntime"]
    result = pytester.runpytest(*args, "--e3p-results=r.json")
    result.assert_outcomes(passed=2)
    cases = json.loads((pytester.path / "r.json").read_text())["cases"]
    fp32, ort = cases["test_vit-cpu-folder"], cases["test_vit-cpu-folder-onnxruntime"]
    assert fp32["top1_source"] == ort["top1_source"] == "measured" and ort["eval_images"] == 12
    assert ort["top1"] == fp32["top1"]  # the same graph on the same 12 images: the same predictions
    result.stdout.fnmatch_lines(["*variant*top-1 vs fp32 (points)*", "onnxruntime *+0.00*"])
