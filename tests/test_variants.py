"""Optimised variants (pytest_e3p.variants) on a tiny random-weight timm ViT on the CPU.

Each variant whose library is installed is prepared and checked against the fp32 eager model within
its family's bound; a variant whose library is missing skips (pytest.importorskip), so the default
test install passes. The agreement check itself is tested on deliberately broken outputs."""

from __future__ import annotations

import math
import sys

import pytest
import timm
import torch

from pytest_e3p.models.complexity import count_gmacs, count_params_m
from pytest_e3p.variants import (
    VARIANT_HELP,
    VARIANTS,
    PreparedVariant,
    VariantUnavailable,
    agreement,
    bound_for,
    compare,
    parse_variants,
    prepare,
)
from pytest_e3p.variants.tome import TokenMergingViT, merge_tokens

SHAPE = (4, 3, 32, 32)


def tiny_vit(depth: int = 2) -> torch.nn.Module:
    """vit_tiny at 32 px with 8 px patches: 17 tokens, 3 heads of 64, builds and runs in milliseconds."""
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=depth, num_classes=100).eval()


@pytest.fixture(scope="module")
def vit() -> torch.nn.Module:
    return tiny_vit()


@pytest.fixture(scope="module")
def batches() -> dict[str, torch.Tensor | list[torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return {
        "example": torch.randn(SHAPE, generator=g),
        "check": torch.randn(SHAPE, generator=g),
        "calibration": [torch.randn(SHAPE, generator=g) for _ in range(2)],
    }


def prepared(name: str, model: torch.nn.Module, batches: dict) -> PreparedVariant:
    return prepare(name, model, batches["example"], batches["calibration"], "cpu", "cpu")


# variant -> the modules it imports (importorskip'ed, so a default install skips what it lacks)
LIBRARIES = {
    "fp32": [],
    "fp16": [],
    "bf16": [],
    "int8": ["torchao"],
    "onnxruntime": ["onnxruntime", "onnx", "onnxscript"],
    "onnxruntime-int8": ["onnxruntime", "onnx", "onnxscript"],
    "openvino": ["openvino"],
    "openvino-int8": ["openvino", "nncf"],
    "prune-heads-34": ["torch_pruning"],
    "prune-mlp-50": ["torch_pruning"],
    "sparse-50": [],
    "tome-2": [],
}


@pytest.mark.parametrize("name", list(LIBRARIES))
def test_each_variant_agrees_with_fp32_within_its_bound(name, vit, batches):
    for module in LIBRARIES[name]:
        pytest.importorskip(module)
    v = prepared(name, vit, batches)
    out = v.forward(batches["check"])
    assert out.shape == (SHAPE[0], 100)
    a = compare(vit, v, batches["check"])
    assert a.ok, (name, a)
    assert a.samples == SHAPE[0] and a.bound == bound_for(name).text
    assert v.prepare_s > 0 and v.detail and "\n" not in v.detail
    assert v.input_dtype == {"fp16": torch.float16, "bf16": torch.bfloat16}.get(name, torch.float32)
    if name in ("fp32", "onnxruntime", "openvino"):
        assert a.top1_pct == 100.0 and a.max_rel_err < 1e-4  # measured near 1e-6
    if v.batch_size is not None:
        assert v.batch_size == SHAPE[0]


def test_the_reference_model_is_left_as_it_was(vit, batches):
    before = {k: t.clone() for k, t in vit.state_dict().items()}
    for name in ("fp16", "sparse-50", "tome-2"):
        prepared(name, vit, batches)
    after = vit.state_dict()
    assert all(after[k].dtype == torch.float32 and torch.equal(after[k], t) for k, t in before.items())


@pytest.mark.slow
def test_compile_works_on_this_cpu_or_skips_saying_why(batches):
    model = tiny_vit(depth=1)
    try:
        v = prepared("compile", model, batches)
    except VariantUnavailable as exc:
        assert str(exc).startswith("torch.compile does not work on this machine (")
        pytest.skip(str(exc))
    a = compare(model, v, batches["check"])
    assert a.ok and a.max_rel_err < 1e-4, a
    assert v.prepare_s > 0  # the compiling first calls are in it, not in the caller's rounds


# -- the agreement check ---------------------------------------------------------------------
def test_a_broken_variant_is_caught(vit, batches):
    with torch.inference_mode():
        ref = vit(batches["check"])
    permuted = ref[:, torch.randperm(ref.shape[1], generator=torch.Generator().manual_seed(0))]
    noisy = ref + torch.randn(ref.shape, generator=torch.Generator().manual_seed(0)) * ref.abs().max()
    for bad in (permuted, noisy):
        for family in ("fp32", "fp16", "bf16", "int8"):
            a = agreement(ref, bad, family)
            assert not a.ok and a.max_rel_err > 0.5, (family, a)
    assert agreement(ref, ref.clone(), "fp32").ok
    assert not agreement(ref, ref[:, :-1], "fp32").ok  # shapes differ
    assert not agreement(ref, torch.full_like(ref, math.nan), "sparse-50").ok  # approximations still need finite logits
    assert agreement(ref, permuted, "tome-4").ok  # approximations are reported, not bounded


def test_a_small_legitimate_error_passes_and_top1_is_only_required_of_fp32():
    ref = torch.tensor([[1.0, 0.999, 0.0], [0.0, 2.0, 1.0]])
    close = torch.tensor([[0.998, 0.999, 0.0], [0.0, 2.0, 1.0]])  # a near tie flipped by an error of 1e-3 of the largest logit
    assert agreement(ref, close, "fp16").ok
    fp32 = agreement(ref, close, "fp32")
    assert fp32.top1_pct == 50.0 and not fp32.ok
    assert agreement(torch.zeros(2, 3), torch.zeros(2, 3), "fp32").ok  # all-zero logits: no division by zero


def test_bounds_are_stated_per_family():
    assert bound_for("onnxruntime") == bound_for("openvino") == bound_for("compile") == bound_for("fp32")
    assert bound_for("tensorrt") == bound_for("fp16")  # an engine with fp16 kernels enabled
    assert bound_for("int8") == bound_for("onnxruntime-int8") == bound_for("openvino-int8") == bound_for("tensorrt-int8")
    assert bound_for("fp32").max_rel_err < bound_for("fp16").max_rel_err < bound_for("bf16").max_rel_err < bound_for("int8").max_rel_err
    assert math.isinf(bound_for("prune-heads-50").max_rel_err) and bound_for("tome-3") == bound_for("sparse-20")
    assert "top-1 agreement >= 99" in bound_for("fp32").text and "max|a-b|/max|a| <= 0.02" in bound_for("fp16").text


# -- names -------------------------------------------------------------------------------------
def test_parse_variants_accepts_the_names_and_parameters():
    assert parse_variants("fp32, onnxruntime-int8,prune-heads-50,prune-mlp-1,sparse-99,tome-16") == [
        "fp32",
        "onnxruntime-int8",
        "prune-heads-50",
        "prune-mlp-1",
        "sparse-99",
        "tome-16",
    ]


@pytest.mark.parametrize(
    "text, says",
    [
        ("fp32,fp64", "unknown variant 'fp64'; accepted: fp32, fp16, bf16, compile, int8, onnxruntime"),
        ("prune-heads-0", "unknown variant 'prune-heads-0'"),
        ("prune-heads-100", "P: a whole percentage 1-99"),
        ("sparse-05", "unknown variant 'sparse-05'"),
        ("sparse-P", "unknown variant 'sparse-P'"),
        ("tome-0", "R: tokens merged per block, a positive integer"),
        ("tome-x", "unknown variant 'tome-x'"),
        ("prune-heads", "unknown variant 'prune-heads'"),
        ("fp32,fp32", "'fp32' is listed twice"),
        (" , ", "no variant named"),
    ],
)
def test_parse_variants_rejects_saying_what_is_accepted(text, says):
    with pytest.raises(ValueError) as exc:
        parse_variants(text)
    assert says in str(exc.value)
    assert "tome-R" in str(exc.value) or "twice" in says


def test_help_has_one_line_per_variant_with_library_and_devices():
    lines = VARIANT_HELP.splitlines()
    assert len(lines) == len(VARIANTS) == 15
    assert all(line.count("[") == 1 and ";" in line.split("[")[1] for line in lines)
    assert any(line.startswith("tensorrt: ") and "NVIDIA" in line and "extra tensorrt" in line for line in lines)


# -- skips -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["tensorrt", "tensorrt-int8"])
def test_tensorrt_skips_on_a_cpu(name, vit, batches):
    with pytest.raises(VariantUnavailable, match=r"^tensorrt needs an NVIDIA GPU \(device cpu\)$"):
        prepared(name, vit, batches)


@pytest.mark.parametrize(
    "name, module, message",
    [
        ("onnxruntime", "onnxruntime", 'onnxruntime is not installed: pip install "pytest-e3p[onnx]"'),
        ("onnxruntime", "onnxscript", 'onnxscript is not installed: pip install "pytest-e3p[onnx]"'),
        ("openvino-int8", "openvino", 'openvino is not installed: pip install "pytest-e3p[openvino]"'),
        ("openvino-int8", "nncf", 'nncf is not installed: pip install "pytest-e3p[openvino]"'),
        ("int8", "torchao", 'torchao is not installed: pip install "pytest-e3p[quant]"'),
        ("prune-mlp-50", "torch_pruning", 'torch-pruning is not installed: pip install "pytest-e3p[prune]"'),
    ],
)
def test_a_missing_extra_is_a_skip_naming_the_extra(name, module, message, vit, batches, monkeypatch):
    for other in LIBRARIES[name]:
        if other != module:
            pytest.importorskip(other)  # the library before the missing one must be there to get that far
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    with pytest.raises(VariantUnavailable) as exc:
        prepared(name, vit, batches)
    assert str(exc.value) == message


def test_tome_on_a_model_that_is_not_a_plain_vit_is_unavailable(batches):
    model = timm.create_model("test_resnet", pretrained=False).eval()
    with pytest.raises(VariantUnavailable, match=r"^tome applies to ViT/DeiT models with a class token; test_resnet is a ResNet$"):
        prepare("tome-4", model, torch.randn(2, 3, 64, 64), [], "cpu", "cpu")
    gap = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=1, global_pool="avg", class_token=False).eval()
    with pytest.raises(VariantUnavailable, match="class token"):
        prepared("tome-4", gap, batches)


def test_head_pruning_that_would_remove_no_head_is_unavailable(vit, batches):
    pytest.importorskip("torch_pruning")
    with pytest.raises(VariantUnavailable, match=r"removes no head of 3 per block .* P >= 34"):
        prepared("prune-heads-33", vit, batches)


# -- what the variants do ------------------------------------------------------------------------
def test_pruning_gives_a_smaller_dense_model(vit, batches):
    pytest.importorskip("torch_pruning")
    params, gmacs = count_params_m(vit), count_gmacs(vit, SHAPE[1:])
    heads = prepared("prune-heads-67", vit, batches)  # floor(0.67 x 3) = 2 of 3 heads go
    assert "2 of 3 attention heads removed per block" in heads.detail
    attn = heads.runtime.blocks[0].attn
    assert (attn.num_heads, attn.head_dim, tuple(attn.qkv.weight.shape), tuple(attn.proj.weight.shape)) == (1, 64, (192, 192), (192, 64))
    assert heads.runtime.pos_embed.shape == vit.pos_embed.shape and heads.runtime.cls_token.shape == vit.cls_token.shape  # the width stays
    mlp = prepared("prune-mlp-50", vit, batches)
    assert tuple(mlp.runtime.blocks[0].mlp.fc1.weight.shape) == (384, 192)
    for v in (heads, mlp):
        assert v.params_m is not None and v.gmacs is not None
        assert v.params_m < params and v.gmacs < gmacs
        assert v.params_m == pytest.approx(count_params_m(v.runtime)) and v.forward(batches["check"]).shape == (SHAPE[0], 100)


def test_sparsity_zeroes_weights_and_keeps_them_dense(vit, batches):
    v = prepared("sparse-30", vit, batches)
    linears = [m for m in v.runtime.modules() if isinstance(m, torch.nn.Linear) and m is not v.runtime.get_classifier()]
    zeros = sum(int((m.weight == 0).sum()) for m in linears) / sum(m.weight.numel() for m in linears)
    assert zeros == pytest.approx(0.30, abs=0.01)
    assert all(type(m.weight) is torch.nn.Parameter and m.weight.layout == torch.strided for m in linears)  # dense
    assert v.params_m is None and v.gmacs is None and "latency not expected to move" in v.detail


def test_token_merging_without_merges_is_the_model_itself(vit, batches):
    with torch.inference_mode():
        assert torch.allclose(TokenMergingViT(vit, r=0)(batches["check"]), vit(batches["check"]), atol=1e-5)


def test_tome_merges_r_tokens_per_block_and_counts_fewer_macs(vit, batches):
    v = prepared("tome-3", vit, batches)
    assert "tokens 17 -> 14 11" in v.detail
    assert v.params_m is None and v.gmacs is not None and v.gmacs < count_gmacs(vit, SHAPE[1:])
    big = prepared("tome-50", vit, batches)  # r is capped at half of the non-class tokens
    assert "tokens 17 -> 9 5" in big.detail


def test_merge_tokens_keeps_the_class_token_and_the_size_weighted_mean():
    g = torch.Generator().manual_seed(0)
    x, keys = torch.randn(2, 9, 5, generator=g), torch.randn(2, 9, 4, generator=g)
    size = torch.ones(2, 9, 1)
    out, out_size = merge_tokens(x, size, keys, r=3)
    assert out.shape == (2, 6, 5) and out_size.shape == (2, 6, 1)
    assert torch.equal(out[:, 0], x[:, 0]) and torch.equal(out_size[:, 0], size[:, 0])  # the class token, untouched and first
    assert torch.allclose((out * out_size).sum(1), (x * size).sum(1), atol=1e-5)  # nothing lost: sums of size x token agree
    assert torch.equal(out_size.sum(1), size.sum(1)) and out_size.max() > 1
    same, same_size = merge_tokens(x, size, keys, r=0)
    assert same is x and same_size is size


# -- the NVIDIA paths, against fake runtimes (tests/fakes/runtimes.py: no GPU here) ----------------
def linear_model() -> torch.nn.Module:
    """A classifier small enough to run in fp16 on the CPU in microseconds."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10)).eval()


@pytest.fixture
def two_gpus(monkeypatch):
    """torch.cuda with GPUs 0 and 1, 0 current (as in a process that never chose one)."""
    from fakes.runtimes import FakeCudaDevices

    return FakeCudaDevices(count=2, current=0).install(monkeypatch)


@pytest.mark.parametrize("name", ["tensorrt", "tensorrt-int8"])
def test_tensorrt_on_cuda1_is_built_and_run_on_cuda1(name, two_gpus, monkeypatch):
    """Torch-TensorRT builds on torch.cuda.current_device() unless given device= (dynamo/_defaults.py
    default_device(), dynamo/_tracer.py), and its runtime runs on the current device
    (core/runtime/execute_engine.cpp checks only in MULTI_DEVICE_SAFE_MODE): the case is on cuda:1,
    where NVML measures, while GPU 0 is current."""
    from fakes.runtimes import install_modelopt, install_torch_tensorrt

    trt = install_torch_tensorrt(monkeypatch, "2.14.0+cu130", two_gpus)
    quantised = install_modelopt(monkeypatch, two_gpus)
    x = torch.randn(SHAPE)
    v = prepare(name, linear_model(), x, [torch.randn(SHAPE)], "cuda", "cuda:1")
    (build,) = trt.compiles
    assert build["kwargs"]["device"] == torch.device("cuda:1") and build["build_device"] == torch.device("cuda:1")
    assert build["current_device"] == 1  # the example input and the build on GPU 1
    assert two_gpus.moved and set(two_gpus.moved) == {"cuda:1"}  # weights, input, calibration batches
    assert all(q["current_device"] == 1 for q in quantised)
    assert two_gpus.current == 0  # the caller's current device is left as it was
    out = v.forward(torch.randn(SHAPE))
    assert out.shape == (SHAPE[0], 10) and two_gpus.current == 0
    assert v.runtime.call_devices == [1, 1, 1]  # the two warm-up calls of prepare() and this one
    assert "on cuda:1" in v.detail and "\n" not in v.detail


@pytest.mark.parametrize(
    "version, name, settings, weights, says",
    [
        # 2.13 removed both from the dynamo compile (pytorch/TensorRT PR 4195); passed, they are ignored
        ("2.14.0+cu130", "tensorrt", {}, torch.float16, "strong typing, precision from the graph's dtypes"),
        ("2.14.0+cu130", "tensorrt-int8", {}, torch.float32, "strong typing, precision from the graph's dtypes"),
        ("2.13.0", "tensorrt", {}, torch.float16, "strong typing, precision from the graph's dtypes"),
        # 2.10-2.12: explicit typing by default; enabled_precisions={int8} beside it raises (issue 4070)
        ("2.12.1", "tensorrt", {"use_explicit_typing": True}, torch.float16, "use_explicit_typing=True (release before 2.13)"),
        ("2.12.1", "tensorrt-int8", {"use_explicit_typing": True}, torch.float32, "use_explicit_typing=True (release before 2.13)"),
        # before 2.10: weak typing by default; int8 kernels are allowed by enabled_precisions (2.9's vgg16_ptq example)
        ("2.9.0", "tensorrt", {"use_explicit_typing": True}, torch.float16, "use_explicit_typing=True (release before 2.13)"),
        ("2.9.0", "tensorrt-int8", {"enabled_precisions": {torch.int8}}, torch.float32, "enabled_precisions={int8}, weak typing (release before 2.10)"),
    ],
)
def test_tensorrt_passes_the_precision_arguments_of_the_installed_release(version, name, settings, weights, says, two_gpus, monkeypatch):
    from fakes.runtimes import install_modelopt, install_torch_tensorrt

    trt = install_torch_tensorrt(monkeypatch, version, two_gpus)
    install_modelopt(monkeypatch, two_gpus)
    v = prepare(name, linear_model(), torch.randn(SHAPE), [torch.randn(SHAPE)], "cuda", "cuda:0")
    (build,) = trt.compiles
    assert {k: val for k, val in build["kwargs"].items() if k not in ("device", "min_block_size")} == settings
    assert not build["ignored"]  # nothing the release drops without a word
    assert build["weight_dtype"] == build["input_dtype"] == weights  # fp16 by the graph's own dtypes
    assert v.input_dtype == weights and f"torch-tensorrt {version} dynamo" in v.detail
    assert says in v.detail  # what was done, in the variant's one-line detail


def ort_request(name: str, device: str = "cuda:1"):
    from pytest_e3p.hardware.kinds import DeviceKind
    from pytest_e3p.variants import VariantRequest

    return VariantRequest(name, None, linear_model(), torch.randn(SHAPE), [torch.randn(SHAPE)], DeviceKind.CUDA, device, bound_for(name))


@pytest.fixture
def no_export(monkeypatch):
    """The ONNX file is not what these tests are about, and the fake session does not read it."""
    from pytest_e3p.variants import onnx_runtime

    monkeypatch.setattr(onnx_runtime, "export_onnx", lambda model, x, path: path.write_bytes(b"onnx"))
    monkeypatch.setattr(onnx_runtime, "_quantise", lambda path, calibration, batch, symmetric: (path, "int8 QDQ"))
    return onnx_runtime


GPU_WHEEL = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


def test_onnxruntime_whose_cuda_provider_did_not_load_is_a_skip_naming_the_fix(no_export, monkeypatch):
    """microsoft/onnxruntime issues 23372 and 17801: an onnxruntime-gpu without its CUDA/cuDNN
    libraries lists CUDAExecutionProvider as available, and the session comes up on the CPU."""
    from fakes.runtimes import install_onnxruntime

    sessions = install_onnxruntime(monkeypatch, GPU_WHEEL, comes_up_on="CPUExecutionProvider")
    with pytest.raises(VariantUnavailable) as exc:
        no_export.prepare(ort_request("onnxruntime"))
    assert sessions[0].asked == [("CUDAExecutionProvider", {"device_id": 1, "use_tf32": 0})]
    reason = str(exc.value)
    assert reason.startswith("onnxruntime not measured: its session came up on CPUExecutionProvider, not the CUDAExecutionProvider asked for on cuda:1; ")
    assert "(CUDA or cuDNN libraries not found): install the onnxruntime-gpu build" in reason and "LD_LIBRARY_PATH" in reason
    assert "\n" not in reason


def test_onnxruntime_int8_whose_tensorrt_provider_did_not_load_is_a_skip_not_a_cuda_measurement(no_export, monkeypatch):
    """microsoft/onnxruntime issues 17394 and 27006: a TensorRT provider that fails to load falls
    back to CUDA (or CPU), and the int8 graph would run dequantised as onnxruntime-int8."""
    from fakes.runtimes import install_onnxruntime

    sessions = install_onnxruntime(monkeypatch, GPU_WHEEL, comes_up_on="CUDAExecutionProvider")
    with pytest.raises(VariantUnavailable) as exc:
        no_export.prepare(ort_request("onnxruntime-int8"))
    assert sessions[0].asked[0] == ("TensorrtExecutionProvider", {"device_id": 1, "trt_int8_enable": True})
    assert str(exc.value).startswith("onnxruntime-int8 not measured: its session came up on CUDAExecutionProvider, not the TensorrtExecutionProvider asked for")
    assert "libnvinfer on LD_LIBRARY_PATH" in str(exc.value)


def test_onnxruntime_that_got_its_provider_runs_on_it_and_waits_for_its_input(no_export, monkeypatch):
    from fakes.runtimes import install_onnxruntime

    sessions = install_onnxruntime(monkeypatch, GPU_WHEEL, comes_up_on="CUDAExecutionProvider")
    v = no_export.prepare(ort_request("onnxruntime"))
    assert v.runtime is sessions[0] and "CUDAExecutionProvider" in v.detail
    # the IOBinding forward, on CPU memory here: ORT's Run leaves SynchronizeInputs to its caller
    # (onnxruntime/core/session/inference_session.cc), and torch wrote the input on its own stream
    forward = no_export._cuda_forward(sessions[0], "input", "logits", (SHAPE[0], 10), "cpu", 1)
    assert forward(torch.randn(SHAPE)).shape == (SHAPE[0], 10)
    assert sessions[0].calls == ["bind_input input cuda:1", "bind_output logits cuda:1", "synchronize_inputs", "run_with_iobinding"]
