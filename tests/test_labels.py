"""Cases that differ only by variant, batch or size get labels that tell them apart (issue 29: the
accuracy-energy plot labelled four cases `deit_tiny_patch16_224.fb_in1k`), and a variant's change
against fp32 is written from its per-pass ratios, "~" when within the noise."""

import dataclasses

from fakes.results import case_result

from pytest_e3p.report.labels import case_labels, format_change, short_name
from pytest_e3p.report.terminal import eval_pass_table, rails_table, ranking_tables
from pytest_e3p.storage.records import VsReference

DEIT = "deit_tiny_patch16_224"


def case(suffix="", model=DEIT, variant="fp32", batch=16, size=224):
    # ids as run/case.py builds them: model-device-dataset[-variant][-bsN][-Npx]
    return case_result(
        f"{model}-cpu-synthetic{suffix}",
        model=f"{model}.fb_in1k",
        variant=variant,
        batch_size=batch,
        image_size=[3, size, size],
        energy_mj=40.0,
        energy_mj_per_image=40.0,
        latency_ms_per_image=5.0,
    )


def test_cases_differing_only_by_variant_are_named_by_it_and_other_models_stay_bare():
    cases = [case(), case("-int8", variant="int8"), case("-onnxruntime", variant="onnxruntime"), case(model="levit_128s")]
    assert case_labels(cases) == {
        f"{DEIT}-cpu-synthetic": f"{DEIT} fp32",
        f"{DEIT}-cpu-synthetic-int8": f"{DEIT} int8",
        f"{DEIT}-cpu-synthetic-onnxruntime": f"{DEIT} onnxruntime",
        "levit_128s-cpu-synthetic": "levit_128s",
    }


def test_cases_differing_only_by_batch_or_only_by_size():
    by_batch = [case("-bs1", batch=1), case("-bs64", batch=64)]
    assert sorted(case_labels(by_batch).values()) == [f"{DEIT} b1", f"{DEIT} b64"]
    by_size = [case("-224px"), case("-384px", size=384)]
    assert sorted(case_labels(by_size).values()) == [f"{DEIT} 224px", f"{DEIT} 384px"]


def test_cases_differing_by_two_axes_name_both_and_only_those():
    cases = [case("-bs1", batch=1), case("-int8-bs1", variant="int8", batch=1), case("-bs64", batch=64), case("-int8-bs64", variant="int8", batch=64)]
    labels = case_labels(cases)
    assert labels[f"{DEIT}-cpu-synthetic-int8-bs64"] == f"{DEIT} int8 b64"
    assert labels[f"{DEIT}-cpu-synthetic-bs1"] == f"{DEIT} fp32 b1"
    assert len(set(labels.values())) == 4  # every case told apart, no size named (all 224 px)


def test_the_short_name_is_the_test_ids_model_and_a_tagged_arch_keeps_its_tag():
    c = case_result("tiny_vit_5m_224.dist_in22k_ft_in1k-cuda:0-imagenet-int8", model="tiny_vit_5m_224.dist_in22k_ft_in1k", device="cuda:0", dataset="imagenet")
    assert short_name(c) == "tiny_vit_5m_224.dist_in22k_ft_in1k"
    assert short_name(case_result("renamed", model="m.tag")) == "m.tag"  # an id of another form: the model


def test_every_terminal_table_tells_variants_of_one_model_apart():
    fp32 = dataclasses.replace(case(), rails_mj_per_image={"VDD_IN": 40.0}, total_rail="VDD_IN", eval_images=100, eval_duration_s=1.0)
    int8 = dataclasses.replace(case("-int8", variant="int8"), rails_mj_per_image={"VDD_IN": 30.0}, total_rail="VDD_IN", eval_images=100, eval_duration_s=0.8)
    for text in (rails_table([fp32, int8]), eval_pass_table([fp32, int8]), ranking_tables([fp32, int8])[0][1]):
        assert text is not None
        assert f"{DEIT}.fb_in1k fp32" in text and f"{DEIT}.fb_in1k int8" in text, text


def vs(ratio, low, high, passes=3, metric="energy"):
    fields = dict.fromkeys(("energy_ratio", "energy_ratio_low", "energy_ratio_high", "latency_ratio", "latency_ratio_low", "latency_ratio_high"))
    fields.update({f"{metric}_ratio": ratio, f"{metric}_ratio_low": low, f"{metric}_ratio_high": high})
    return VsReference(f"{DEIT}-cpu-synthetic", passes, within_noise=low is None or low <= 1.0 <= high, **fields)


def test_a_change_within_the_per_pass_noise_is_a_tilde_and_a_clear_one_a_signed_percentage():
    # the onnxruntime latency: per-pass ratios 43/47, 17/19, 18/46 -> median 0.915, yet one
    # pass was 0.39: the interval [0.39, 0.915] excludes 1.0, a saving; [0.8, 1.05] holds it
    assert format_change(vs(0.9, 0.8, 1.05), "energy") == "~ [-20.0%, +5.0%]"
    assert format_change(vs(0.90, 0.88, 0.92), "energy") == "-10.0% [-12.0%, -8.0%]"
    assert format_change(vs(0.915, 0.391, 0.915, metric="latency"), "latency") == "-8.5% [-60.9%, -8.5%]"
    assert format_change(vs(0.915, 0.391, 0.915, metric="latency"), "energy") == "-"  # energy not measured
    assert format_change(vs(0.7, 0.7, 0.7, passes=1), "energy") == "~ (1 pass)"  # one pass: no interval, no claim
    assert format_change(None, "energy") == "-"
