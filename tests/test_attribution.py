"""--e3p-attribution's parts (models.parts), its two methods (measure.attribution), its record and its
report: each on its own."""

import math
import time

import pytest
import torch
from fakes.clock import Machine
from fakes.results import case_result
from fakes.sensors import ScriptedSensor
from torch import nn

from pytest_e3p.hardware.sensors import MEASURED, EnergyReading, EnergySensor, SensorInfo
from pytest_e3p.measure.attribution import CaseFigures, _groups, attribute, cost_note, measure_prefixes, profile_parts
from pytest_e3p.measure.context import MeasureContext
from pytest_e3p.measure.protocols import Protocol
from pytest_e3p.models.parts import HEAD, OTHER, STEM, group_sizes, model_parts
from pytest_e3p.storage import results, schema
from pytest_e3p.storage.records import AttributedPart, Attribution, PrefixEnergy


def tiny_vit(depth=2):
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    return VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=depth, num_heads=2, num_classes=10).eval()


# -- the parts ---------------------------------------------------------------------------------
def test_a_timm_vit_has_its_patch_embedding_blocks_with_attention_mlp_norms_and_head():
    mp = model_parts(tiny_vit())
    assert mp.groups == [STEM, "block 0", "block 1", HEAD]
    roles = {p.path: (p.role, p.group, p.parent) for p in mp.parts}
    assert roles["patch_embed"] == (STEM, STEM, "")
    assert roles["blocks.0"] == ("block", "block 0", "")
    assert roles["blocks.0.attn"] == ("attention", "block 0", "blocks.0")
    assert roles["blocks.0.mlp"] == ("mlp", "block 0", "blocks.0")
    assert roles["blocks.1.norm1"] == ("norm", "block 1", "blocks.1") and roles["blocks.1.norm2"][0] == "norm"
    assert {"norm", "head"} <= set(roles) and roles["head"][1] == HEAD
    assert not any(isinstance(p.module, nn.Identity) for p in mp.parts)  # nothing to time in an Identity


def test_the_prefixes_run_the_model_up_to_each_group_on_its_own_modules_and_the_last_is_the_model():
    vit = tiny_vit()
    prefixes = model_parts(vit).prefixes()
    assert [p.name for p in prefixes] == ["stem", "stem + block 0", "stem .. block 1", "whole model"]
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        tokens = vit.patch_embed(x)
        assert torch.equal(prefixes[0](x), tokens)  # stopped after the patch embedding
        after_two = vit.blocks(vit.norm_pre(vit._pos_embed(tokens)))
        assert torch.allclose(prefixes[2](x), after_two)
        assert torch.allclose(prefixes[-1](x), vit(x))
    assert all(p.root is vit for p in prefixes)  # the model's own modules: no weights copied
    assert not vit.patch_embed._forward_hooks  # the stop hook is gone after each call


def test_a_twelve_block_vit_is_grouped_in_four_and_a_stage_model_per_stage():
    assert group_sizes(12) == [3, 3, 3, 3]
    assert group_sizes(3) == [1, 1, 1]
    assert group_sizes(10) == [3, 3, 3, 1]
    assert group_sizes(24) == [6, 6, 6, 6]
    mp = model_parts(tiny_vit(depth=12))
    assert mp.groups == [STEM, "block 0-2", "block 3-5", "block 6-8", "block 9-11", HEAD]
    assert len(mp.prefixes()) == 6


@pytest.mark.slow  # builds timm's levit_128s
def test_levit_has_its_stem_three_stages_with_downsampling_and_its_two_heads():
    import timm

    mp = model_parts(timm.create_model("levit_128s").eval())
    assert mp.groups == [STEM, "stage 0", "stage 1", "stage 2", HEAD]
    roles = {p.path: p.role for p in mp.parts}
    assert roles["stem"] == STEM and roles["stages.1.downsample"] == "downsample"
    assert roles["stages.0.blocks.0.attn"] == "attention" and roles["stages.0.blocks.0.mlp"] == "mlp"
    assert roles["head"] == roles["head_dist"] == HEAD
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        shapes = [tuple(p(x).shape) for p in mp.prefixes()]
    assert shapes == [(1, 128, 14, 14), (1, 196, 128), (1, 49, 256), (1, 16, 384), (1, 1000)]


def test_edgevit_has_localagg_global_sparse_attention_and_localprop_in_each_block():
    import timm

    import pytest_e3p.models.edgevit  # noqa: F401 - registers edgevit_xxs

    mp = model_parts(timm.create_model("edgevit_xxs").eval())
    assert mp.groups == [STEM, "stage 0", "stage 1", "stage 2", "stage 3", HEAD]
    roles = {p.path: (p.role, p.parent) for p in mp.parts}
    # the first downsample is the patch embedding; it runs inside stage 0, whose own time excludes it
    assert roles["stages.0.downsample"] == (STEM, "stages.0")
    assert roles["stages.1.downsample"] == ("downsample", "stages.1")
    block = "stages.2.blocks.0"
    assert roles[f"{block}.local_agg"][0] == "LocalAgg"
    assert roles[f"{block}.global_attn"] == ("block", block)  # its own time: position conv and residuals
    assert roles[f"{block}.global_attn.attn"] == ("global sparse attention", f"{block}.global_attn")
    assert roles[f"{block}.global_attn.attn.local_prop"] == ("LocalProp", f"{block}.global_attn.attn")
    assert roles[f"{block}.global_attn.mlp"][0] == "mlp"


def test_tome_times_its_merging_and_its_blocks_and_leaves_the_model_as_it_was():
    from pytest_e3p.variants.tome import TokenMergingViT

    net = TokenMergingViT(tiny_vit(depth=4), r=2).eval()
    mp = model_parts(net)
    assert mp.groups == [STEM, "block 0", "block 1", "block 2", "block 3", HEAD]
    merges = [p for p in mp.parts if p.role == "token merging"]
    assert [p.path for p in merges] == [f"vit.blocks.{i}.merge" for i in range(4)]
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        prof = profile_parts(mp, lambda: net(x), lambda: None, calls=2)
        assert all(prof.own_us[p.path] > 0 for p in merges)  # each block's merging was timed
        assert prof.own_us["vit.blocks.0"] > 0
        assert torch.allclose(mp.prefixes()[-1](x), net(x))
        assert mp.prefixes()[1](x).shape[1] == 17 - 2  # stopped after block 0's MLP: 2 tokens merged
    assert "block" not in vars(net)  # the wrapped method is gone: the class's again


# -- the methods --------------------------------------------------------------------------------
class Work(nn.Module):
    """k matrix products of a fixed size: a block of known cost."""

    def __init__(self, k, n=384):
        super().__init__()
        self.k, self.w = k, nn.Parameter(torch.randn(n, n) / n**0.5)

    def forward(self, x):
        for _ in range(self.k):
            x = torch.tanh(x @ self.w)
        return x


class Unequal(nn.Module):
    """A stem, two blocks of 1 and 4 units of matmul work, and a head."""

    def __init__(self, k=4, unit=2):
        super().__init__()
        self.stem = nn.Linear(384, 384)
        self.blocks = nn.Sequential(Work(unit), Work(k * unit))
        self.head = nn.Linear(384, 10)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


def test_method1_recovers_the_4x_cost_of_the_heavier_block_and_its_parts_sum_to_the_whole():
    torch.manual_seed(0)
    # matrix products of milliseconds: the profiler's cost per op (tens of microseconds) is small beside them
    model, x = Unequal().eval(), torch.randn(384, 384)
    mp = model_parts(model)
    assert mp.groups == [STEM, "block 0", "block 1", HEAD]
    with torch.inference_mode():
        prof = profile_parts(mp, lambda: model(x), lambda: None, calls=5)
    ratio = prof.own_us["blocks.1"] / prof.own_us["blocks.0"]
    assert 2.5 < ratio < 6.5  # 4 by construction; wide: the machine running the tests is shared
    assert math.isclose(sum(prof.share(p) for p in prof.own_us), prof.raw_sum_us / prof.whole_us)
    assert abs(prof.raw_sum_us / prof.whole_us - 1) <= 0.02


class Scripted(nn.Module):
    """A module whose call takes `s` scripted seconds at `extra_w` over the machine's power."""

    def __init__(self, machine, s, extra_w=0.0):
        super().__init__()
        self.machine, self.s, self.extra_w = [machine], s, extra_w

    def forward(self, x):
        self.machine[0].sleep(self.s * x.shape[0], self.extra_w)
        return x


class ScriptedNet(nn.Module):
    def __init__(self, machine, costs=(0.001, 0.002, 0.008, 0.0005), extra_w=(0.0, 0.0, 0.0, 0.0)):
        super().__init__()
        self.stem = Scripted(machine, costs[0], extra_w[0])
        self.blocks = nn.Sequential(Scripted(machine, costs[1], extra_w[1]), Scripted(machine, costs[2], extra_w[2]))
        self.head = Scripted(machine, costs[3], extra_w[3])

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


def scripted_context(machine, sensor):
    return lambda: MeasureContext(lambda: None, sensor, None, clock=machine.monotonic)


SHORT = Protocol(batch_size=4, rounds=3, passes=3, min_round_s=0.05, warmup_s=0.0, idle_s=0.0)


def test_method2_recovers_the_4x_cost_from_truncated_models_on_a_scripted_sensor():
    machine = Machine(10.0)
    net = ScriptedNet(machine)
    mp = model_parts(net)
    measured = measure_prefixes(mp.prefixes(), torch.zeros(4, 1), 4, scripted_context(machine, ScriptedSensor(machine)), SHORT)
    assert [m.name for m in measured] == ["stem", "stem + block 0", "stem .. block 1", "whole model"]
    e = [m.energy_mj_per_image for m in measured]  # 10 W x the scripted seconds per image, in mJ
    assert e == pytest.approx([10.0, 30.0, 110.0, 115.0])
    assert all(len(m.energy_mj_per_image_passes) == 3 for m in measured)
    assert (e[2] - e[1]) / (e[1] - e[0]) == pytest.approx(4.0)


def test_both_methods_side_by_side_with_the_checks_and_a_flag_where_power_is_not_proportional_to_time():
    machine = Machine(10.0)
    # block 1 draws 30 W more for the same scripted time: Method 2 sees it, time shares cannot
    net = ScriptedNet(machine, extra_w=(0.0, 0.0, 30.0, 0.0))
    mp = model_parts(net)
    x = torch.zeros(4, 1)
    case = CaseFigures(200.0, [199.0, 200.0, 201.0], "measured")
    a = attribute(mp, "both", lambda: net(x), mp.prefixes(), x, 4, scripted_context(machine, ScriptedSensor(machine)), SHORT, case)
    assert a.method1_label == "attributed by time share" and a.method2_label == "differential measurement"
    assert a.method1_sum_ok and a.method1_sum_ratio == pytest.approx(1.0, abs=0.02)
    assert a.prefixes_monotone is True
    whole = a.prefixes[-1].energy_mj_per_image  # 10 W x 11.5 ms + 30 W x 8 ms per image
    assert whole == pytest.approx(355.0)
    assert a.whole_matches_case is False and any("measured again" in n for n in a.notes)  # 355 is not the case's 200
    groups = {g.name: g for g in a.groups}
    assert groups["block 1"].method2_mj_per_image == pytest.approx(320.0)
    assert groups["block 1"].disagree is True
    assert sum(p.method1_mj_per_image or 0.0 for p in a.parts) == pytest.approx(200.0, rel=0.02)
    assert groups[OTHER].method2_mj_per_image is None  # "other" is Method 1's alone


def test_time_only_runs_no_truncated_model_and_says_so():
    machine = Machine(10.0)
    net = ScriptedNet(machine)
    mp = model_parts(net)
    x = torch.zeros(4, 1)
    before = machine.forwards, machine.t_s
    a = attribute(
        mp, "time", lambda: net(x), mp.prefixes(), x, 4, scripted_context(machine, ScriptedSensor(machine)), SHORT, CaseFigures(50.0, [50.0], "measured")
    )
    assert a.prefixes == [] and a.prefixes_monotone is None and all(g.method2_mj_per_image is None for g in a.groups)
    assert machine.t_s - before[1] < 1.0  # only the profiled calls ran: no protocol rounds
    assert sum(g.method1_mj_per_image or 0.0 for g in a.groups) == pytest.approx(50.0, rel=0.02)


def test_a_clock_that_does_not_move_over_a_prefix_stops_method2_with_a_line_not_a_hang():
    machine = Machine(10.0)
    model, x = Unequal(unit=1).eval(), torch.randn(4, 384)  # real modules: the scripted clock never moves
    mp = model_parts(model)
    a = attribute(
        mp, "both", lambda: model(x), mp.prefixes(), x, 4, scripted_context(machine, ScriptedSensor(machine)), SHORT, CaseFigures(5.0, [5.0], "measured")
    )
    assert a.prefixes == [] and any("clock does not advance" in n for n in a.notes)


def test_the_noise_of_a_difference_is_the_root_sum_square_of_the_prefixes_spreads():
    mp = model_parts(ScriptedNet(Machine(1.0)))
    measured = [
        PrefixEnergy("stem", [1.0, 1.2], [], 1.1, 0.1),
        PrefixEnergy("b0", [3.0, 3.6], [], 3.3, 0.3),
        PrefixEnergy("b1", [], [], 3.3, 0.4),
        PrefixEnergy("w", [], [], 4.0, 0.1),
    ]
    parts = [AttributedPart("stem", STEM, STEM, 0.2, 1.05), AttributedPart("blocks.0", "block 0", "block", 0.5, 2.2)]
    groups = {g.name: g for g in _groups(mp, parts, measured)}
    assert groups["block 0"].method2_mj_per_image == pytest.approx(2.2)
    assert groups["block 0"].method2_noise_mj_per_image == pytest.approx(math.hypot(0.1, 0.3))
    assert groups["block 0"].disagree is False  # |2.2 - 2.2| is within it
    assert groups[STEM].disagree is False and groups[STEM].method2_mj_per_image == pytest.approx(1.1)


def test_the_cost_line_names_the_truncated_models_and_the_seconds():
    p = Protocol(rounds=5, passes=3, min_round_s=1.0, warmup_s=2.0)
    line = cost_note("both", p)
    assert line.startswith("attribution: both methods: up to 5 truncated models") and "at least 126 s per case" in line
    assert cost_note("time", p).startswith("attribution: time share only (Method 1)")


# -- the record and the report -------------------------------------------------------------------
def attribution(kind="measured"):
    return Attribution(
        mode="both",
        energy_kind=kind,
        spread="the case's energy per image",
        case_energy_mj_per_image=10.0,
        groups=[
            AttributedPart(STEM, STEM, STEM, 0.1, 1.0, 1.1, 0.2, False),
            AttributedPart("block 0", "block 0", "group", 0.8, 8.0, 5.0, 0.5, True),
            AttributedPart(HEAD, HEAD, HEAD, 0.1, 1.0, 3.9, 0.5, True),
        ],
        parts=[
            AttributedPart("patch_embed", STEM, STEM, 0.1, 1.0),
            AttributedPart("blocks.0.attn", "block 0", "attention", 0.5, 5.0),
            AttributedPart("blocks.0.mlp", "block 0", "mlp", 0.3, 3.0),
            AttributedPart("head", HEAD, HEAD, 0.1, 1.0),
        ],
        prefixes=[PrefixEnergy("stem", [1.0, 1.2], [0.1, 0.1], 1.1, 0.1), PrefixEnergy("whole model", [9.9, 10.1], [1.0, 1.0], 10.0, 0.1)],
        method1_sum_ratio=1.0,
        method1_sum_ok=True,
        prefixes_monotone=True,
        whole_matches_case=True,
        noise_rule="rss",
        cost_s=12.5,
    )


def test_the_record_round_trips_through_the_results_file_and_old_files_read_as_none():
    r = case_result(energy_mj=10.0, attribution=attribution())
    back = results.CaseResult.from_dict(r.to_dict())
    assert back.attribution == r.attribution
    assert results.CaseResult.from_dict(case_result().to_dict()).attribution is None
    assert schema.CASE_FIELDS_ADDED_IN_3["attribution"] is None


def test_the_table_puts_both_methods_side_by_side_and_marks_the_disagreement(tmp_path):
    from pytest_e3p.report.attribution import FLAG, attribution_tables, plot_attribution

    c = case_result("m-cpu-synthetic", energy_mj=10.0, attribution=attribution("estimate"), energy_kind="estimate")
    [(title, table, notes)] = attribution_tables([c, case_result("n-cpu-synthetic")])
    assert title == "where the energy goes: m-cpu-synthetic"
    lines = table.splitlines()
    assert "time share %" in lines[0] and "Method 2 mJ/img +/- noise" in lines[0]
    block = next(ln for ln in lines if ln.startswith("block 0 "))
    assert "80.0" in block and "5 +/- 0.5" in block and "+3" in block and FLAG in block
    assert any(ln.startswith("block 0: attention") for ln in lines)
    assert any("estimates" in n for n in notes) and any("sum to 100.0 %" in n for n in notes)
    if plot_attribution([c], tmp_path / "a.png"):  # where matplotlib is installed
        assert (tmp_path / "a.png").stat().st_size > 0


def test_a_wall_clock_sensor_recovers_the_ratio_by_method2_too():
    """Method 2 on real compute: a sensor drawing a constant 10 W over the wall clock measures time."""

    class Wall(EnergySensor):
        info = SensorInfo("wall", MEASURED, "test", "mJ", 0.001)

        def __init__(self):
            self.t0 = time.monotonic()

        def read(self):
            t = time.monotonic()
            return EnergyReading(t, 10.0 * (t - self.t0) * 1000.0)

    torch.manual_seed(0)
    model, x = Unequal().eval(), torch.randn(384, 384)
    mp = model_parts(model)
    p = Protocol(batch_size=384, rounds=3, passes=3, min_round_s=0.1, warmup_s=0.05, idle_s=0.0)
    with torch.inference_mode():
        m = measure_prefixes(mp.prefixes(), x, 384, lambda: MeasureContext(lambda: None, Wall(), None), p)
    e = [v.energy_mj_per_image for v in m]
    assert 2.0 < (e[2] - e[1]) / (e[1] - e[0]) < 8.0  # 4 by construction; wide: the machine is shared


def test_the_dashboard_places_the_table_of_each_newest_case_escaped():
    from pytest_e3p.report.attribution import FLAG, dashboard_html

    c = case_result("m<x>-cpu-synthetic", energy_mj=10.0, attribution=attribution())
    page = dashboard_html([c, case_result("n-cpu-synthetic")])
    assert page.startswith('<section id="attribution">') and "<table>" in page and FLAG in page
    assert "m&lt;x&gt;-cpu-synthetic" in page and "m<x>" not in page
    assert dashboard_html([case_result("n-cpu-synthetic")]) == ""


def test_a_resnet_style_model_has_its_numbered_layers_as_stages_of_blocks():
    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 4, 3)
            self.layer1 = nn.Sequential(nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 1))
            self.layer2 = nn.Sequential(nn.Conv2d(4, 8, 1))
            self.fc = nn.Linear(8, 2)

        def forward(self, x):
            return self.fc(self.layer2(self.layer1(self.conv1(x))).mean((2, 3)))

    mp = model_parts(Tiny())
    assert mp.groups == [STEM, "stage 0", "stage 1", HEAD]
    roles = {p.path: (p.role, p.parent) for p in mp.parts}
    assert roles["conv1"] == (STEM, "") and roles["layer1.1"] == ("block", "layer1") and roles["fc"] == (HEAD, "")
    with torch.inference_mode():
        assert mp.prefixes()[1](torch.randn(1, 3, 8, 8)).shape == (1, 4, 6, 6)
