import math
import subprocess
import sys

import pytest
import timm
import torch

from pytest_e3p.models import zoo
from pytest_e3p.models.build import CHECKPOINT, WeightsError, build_model
from pytest_e3p.models.complexity import Complexity, count_gmacs, count_params_m
from pytest_e3p.models.edgevit import EdgeViTVariantError, to_authors_state_dict
from pytest_e3p.models.screening import stage1_row
from pytest_e3p.models.zoo import parse_model, reference, resolve_models

# Counted with pytest_e3p.models.complexity (224 x 224, 1000 classes); Table 1 of the paper beside them.
# S has 13.1M in the authors' implementation (depths 1,2,5,3), which this follows; Table 1 says 11.1M.
COUNTED = {  # name: (parameters, GMACs, Table 1 params M, Table 1 GFLOPs)
    "edgevit_xxs": (4_067_704, 0.551, 4.1, 0.56),
    "edgevit_xs": (6_770_056, 1.128, 6.7, 1.1),
    "edgevit_s": (13_108_168, 1.911, 11.1, 1.9),
}


@pytest.fixture(scope="module")
def built():
    torch.manual_seed(0)
    return {name: timm.create_model(name).eval() for name in COUNTED}


def _randomise_norm_stats(model):
    """BatchNorm statistics away from their init, so a load that skipped them would show."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)


def test_import_registers_with_timm_without_importing_torch():
    code = (
        "import sys, pytest_e3p\n"
        "assert 'timm' not in sys.modules and 'torch' not in sys.modules, 'import pytest_e3p loaded timm/torch'\n"
        "from timm.models import create_model\n"
        "print(type(create_model('edgevit_xxs', num_classes=3)).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "EdgeViT"


@pytest.mark.parametrize("name", list(COUNTED))
def test_output_shapes_and_num_classes(built, name):
    model = built[name]
    with torch.inference_mode():
        features = model.forward_features(torch.randn(1, 3, 224, 224))
        assert features.shape == (1, model.num_features, 7, 7)
        assert model.forward_head(features).shape == (1, 1000)
        ten = timm.create_model(name, num_classes=10).eval()
        assert ten.num_classes == 10 and ten.forward_head(features).shape == (1, 10)


def test_parameters_and_macs_as_counted_beside_table_1(built):
    for name, (params, gmacs, table_params_m, table_gflops) in COUNTED.items():
        model = built[name]
        assert sum(p.numel() for p in model.parameters()) == params, name
        assert round(count_gmacs(model, (3, 224, 224)), 3) == gmacs, name
        # the paper's FLOPs are multiply-accumulates: within its rounding of Table 1
        assert abs(gmacs - table_gflops) <= 0.05 * table_gflops + 0.01, name
        if name != "edgevit_s":
            assert abs(count_params_m(model) - table_params_m) < 0.1, name
    assert built["edgevit_xs"].stages[2].blocks[0].global_attn.attn.num_heads == 5  # 240 / 48: Table 1 says 4


def test_drop_path_rate_is_honoured_linearly_over_blocks(built):
    model = timm.create_model("edgevit_xxs", drop_path_rate=0.1)
    blocks = [b for s in model.stages for b in s.blocks]  # depths 1, 1, 3, 2
    rates = [getattr(b.global_attn.drop_path1, "drop_prob", 0.0) for b in blocks]
    assert rates == pytest.approx([0.1 * i / (len(blocks) - 1) for i in range(len(blocks))])
    assert blocks[4].local_agg.drop_path2.drop_prob == pytest.approx(rates[4])  # last block of stage 3
    assert isinstance(blocks[5].local_agg, torch.nn.Identity)  # stage 4: no LocalAgg
    assert not any(isinstance(m, timm.layers.DropPath) for m in built["edgevit_xxs"].modules())  # default 0


def test_authors_names_map_both_ways(built):
    ours = built["edgevit_xxs"].state_dict()
    authors = to_authors_state_dict(ours)
    for key in (
        "patch_embed1.proj.weight",
        "patch_embed4.norm.bias",
        "blocks1.0.LocalAgg.pos_embed.weight",
        "blocks1.0.LocalAgg.conv1.weight",
        "blocks1.0.LocalAgg.conv2.bias",
        "blocks1.0.LocalAgg.norm2.running_var",
        "blocks2.0.LocalAgg.mlp.fc2.weight",
        "blocks3.2.SelfAttn.attn.LocalProp.weight",
        "blocks3.2.SelfAttn.attn.norm.weight",
        "blocks4.1.SelfAttn.attn.qkv.bias",
        "blocks4.1.SelfAttn.mlp.fc1.weight",
        "norm.running_mean",
        "head.weight",
    ):
        assert key in authors, key
    assert authors["blocks1.0.LocalAgg.attn.weight"].shape == (36, 1, 5, 5)  # their name for the 5x5 depthwise conv
    assert not any(k.startswith("blocks4.") and ("LocalAgg" in k or "LocalProp" in k) for k in authors)
    assert len(authors) == len(ours)


def test_authors_state_dict_loads_the_timm_way_and_as_a_checkpoint(built, tmp_path):
    src = built["edgevit_xxs"]
    _randomise_norm_stats(src)
    path = tmp_path / "edgevit_xxs_authors.pth"
    torch.save(to_authors_state_dict(src.state_dict()), path)
    x = torch.randn(1, 3, 64, 64)  # small is enough to compare weights: every layer runs
    with torch.inference_mode():
        expected = src(x)
        net = timm.create_model("edgevit_xxs", pretrained=True, pretrained_cfg_overlay=dict(file=str(path))).eval()
        assert torch.allclose(net(x), expected, atol=1e-6)
        net, weights = build_model(parse_model("edgevit_xxs"), checkpoint=path)  # --e3p-checkpoints
        assert weights.source == CHECKPOINT
        assert torch.allclose(net(x), expected, atol=1e-6)


def test_a_state_dict_of_another_variant_is_refused_naming_both(tmp_path):
    path = tmp_path / "edgevit_xs.pth"
    torch.save(to_authors_state_dict(timm.create_model("edgevit_xs").state_dict()), path)
    with pytest.raises(
        EdgeViTVariantError, match=r"^state dict of EdgeViT-XS \(edgevit_xs\) does not fit EdgeViT-XXS \(edgevit_xxs\): channels 48-96-240-384 vs 36-72-144-288"
    ):
        timm.create_model("edgevit_xxs", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    with pytest.raises(
        WeightsError, match=r"does not fit edgevit_xxs.*EdgeViT-XS \(edgevit_xs\) does not fit EdgeViT-XXS \(edgevit_xxs\).*depths 1-1-3-1 vs 1-1-3-2"
    ) as err:
        build_model(parse_model("edgevit_xxs"), checkpoint=path)  # --e3p-checkpoints
    assert "\n" not in str(err.value)


def test_edgevit_table3_set_and_the_models_timm_lacks():
    models = resolve_models("edgevit-table3")
    names = [m.full for m in models]
    assert names[-3:] == ["edgevit_xxs", "edgevit_xs", "edgevit_s"] and len(names) == 12
    assert {"tf_mobilenetv3_large_075.in1k", "efficientnet_b0.ra_in1k", "mobilevit_xxs.cvnets_in1k", "pvt_v2_b1.in1k", "deit_tiny_patch16_224.fb_in1k"} <= set(
        names
    )
    assert parse_model("edgevit_xxs").case_id == "edgevit_xxs"  # no weights tag
    unavailable = dict(zoo.EDGEVIT_TABLE3_UNAVAILABLE)
    assert set(unavailable) == {"T2T-ViT-7", "T2T-ViT-10", "T2T-ViT-12", "TNT-Tiny", "Uniformer-Tiny*", "Twins-SVT-Tiny*"}
    assert all(reason for reason in unavailable.values())
    # Table 3 as data: every row is either in the set or listed as unavailable
    table = zoo.edgevit_paper_table()
    assert len(table) == 18
    assert sorted(r.timm_name for r in table if r.timm_name) == sorted(names)
    assert {r.paper_name for r in table if not r.timm_name} == set(unavailable)
    xxs = zoo.edgevit_paper_row(parse_model("edgevit_xxs"))
    assert (xxs.top1, xxs.latency_ms, xxs.energy_mj, xxs.energy_mj_sd, xxs.power_w, xxs.efficiency_pct_per_mj) == (74.4, 32.8, 127.4, 27.3, 4.27, 0.584)
    assert zoo.edgevit_paper_row("mobilenetv2_100").energy_mj == 85.7
    assert zoo.edgevit_paper_row("deit_tiny_patch16_224.fb_in1k").energy_mj == 187.2


def test_edgevit_reference_top1_is_labelled_as_the_papers(built):
    for name, top1 in (("edgevit_xxs", 74.4), ("edgevit_xs", 77.5), ("edgevit_s", 81.0)):
        ref = reference(parse_model(name))
        assert (ref.top1, ref.top5, ref.source) == (top1, None, "reference (EdgeViT paper)")
    assert reference(parse_model("deit_tiny_patch16_224")).source == "reference (timm results-imagenet.csv)"
    params, gmacs, *_ = COUNTED["edgevit_xxs"]
    row = stage1_row(parse_model("edgevit_xxs"), Complexity(params / 1e6, gmacs, (3, 224, 224)))
    assert row.top1_ref == 74.4 and row.netscore == pytest.approx(20 * math.log10(74.4**2 / (params / 1e6 * gmacs) ** 0.5))


@pytest.mark.slow
def test_finetune_fine_tunes_an_edgevit_and_the_suite_loads_its_checkpoint(tmp_path, capsys):
    """`python -m pytest_e3p finetune` takes an EdgeViT like any timm name (2 steps on a tiny CIFAR tree)."""
    import fakes.datasets as make

    from pytest_e3p.cli import main
    from pytest_e3p.models.build import build_model
    from pytest_e3p.models.zoo import parse_model

    make.cifar_tree(tmp_path / "cifar", n_test=4, n_train=8)
    args = ["finetune", "--model", "edgevit_xxs", "--dataset", f"cifar10={tmp_path / 'cifar'}", "--out", str(tmp_path / "ck")]
    assert main([*args, "--steps", "2", "--eval-every", "2", "--batch-size", "4", "--device", "cpu"]) == 0
    assert "validation top-1" in capsys.readouterr().out
    net, weights = build_model(parse_model("edgevit_xxs"), checkpoint=tmp_path / "ck" / "edgevit_xxs_cifar10.pth", num_classes=10)
    assert weights.source == "checkpoint" and net.num_classes == 10
