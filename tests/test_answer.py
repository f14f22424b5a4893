"""The answer in words (issue 29): which model, in which form, is the most energy-efficient on this
device, the models tied with it within noise, the best within a budget, and what the run cannot
decide with what would decide it. Noise: the pass values' log spread, as the gate reads it."""

from fakes.results import case_result

from pytest_e3p.metrics import sam
from pytest_e3p.report.answer import answer_lines, answer_markdown, energy_interval, sam_interval
from pytest_e3p.storage.records import VsReference


def measured(model, passes_mj, top1=80.0, device="cpu", dataset="imagenet", variant="fp32", kind="measured", source="rapl", top1_source="measured", **kw):
    """A case measured in len(passes_mj) passes: its energy the median pass value, as the run records it."""
    suffix = "" if variant == "fp32" else f"-{variant}"
    energy = sorted(passes_mj)[len(passes_mj) // 2]
    return case_result(
        f"{model}-{device}-{dataset}{suffix}",
        model=f"{model}.tag",
        device=device,
        dataset=dataset,
        variant=variant,
        energy_kind=kind,
        energy_source=source,
        energy_mj_per_image=energy,
        energy_mj_per_image_passes=list(passes_mj),
        latency_ms_per_image=energy / 10,
        passes=len(passes_mj),
        top1=top1,
        top1_source=top1_source,
        sam=sam(top1 / 100, energy),
        **kw,
    )


def test_a_clear_winner_is_named_by_sam_and_by_energy_with_no_tie():
    cases = [measured("levit_128s", [50, 50.5, 49.5], 78.0), measured("deit_tiny", [100, 101, 99], 72.0), measured("vit_small", [300, 303, 297], 81.0)]
    lines = answer_lines(cases)
    assert lines[0].startswith("On cpu / imagenet: the most energy-efficient by SAM is levit_128s (SAM ")
    assert "no other case is within its noise" in lines[0]
    assert lines[1] == "  the least energy per image is levit_128s (50 mJ/img); no other case is within its noise."
    assert not any("Not decided" in line for line in lines)  # 3 quiet passes, measured energy and top-1


def test_models_whose_passes_overlap_are_tied_and_the_clear_one_is_not():
    # a: 80-125 mJ over its passes, b: 85-130: the spread does not separate them; c at 400 is apart
    cases = [measured("a", [80, 100, 125], 80.0), measured("b", [85, 105, 130], 80.0), measured("c", [396, 400, 404], 80.0)]
    lines = answer_lines(cases)
    assert "by SAM is a " in lines[0] and "tied with it within noise: b." in lines[0]
    assert "the least energy per image is a" in lines[1] and "tied with it within noise: b." in lines[1]
    assert "c" not in lines[1].split("tied with it within noise:")[1]
    # when the noise separates the best from no case at all, no winner is named
    both = answer_lines(cases[:2])
    assert both[1] == "  the least energy per image is a (100 mJ/img); but every other case is within its noise (b): this run names no winner."


def test_only_estimates_say_so_and_name_what_would_decide():
    cases = [measured("a", [50, 51, 49], kind="estimate", source="tdp-estimate"), measured("b", [90, 91, 89], kind="estimate", source="tdp-estimate")]
    text = "\n".join(answer_lines(cases))
    assert "On cpu / imagenet (ESTIMATED energy, not compared with measured figures)" in text
    assert "50 mJ/img estimated" in text
    assert "Not decided: the energy is an ESTIMATE" in text and "a power sensor (RAPL, NVML, a Jetson's INA3221) would decide it" in text


def test_an_estimate_is_never_set_against_a_measurement():
    # after a sensor fault one device holds both: the estimated 10 mJ case must not win the measured answer
    cases = [measured("a", [50, 51, 49]), measured("b", [90, 91, 89]), measured("cheap", [10, 10, 10], kind="estimate", source="tdp-estimate")]
    lines = answer_lines(cases)
    measured_lines = [line for line in lines if "ESTIMATED" not in line]
    assert "least energy per image is a" in "\n".join(lines)
    assert "tied with it" not in lines[0] or "cheap" not in lines[0]
    assert not any("cheap" in line and "least energy per image is a" in line for line in measured_lines)
    assert any(line.startswith("On cpu / imagenet (ESTIMATED energy") and "cheap" in line for line in lines)


def test_unstable_cases_and_a_single_pass_are_what_the_run_cannot_decide():
    cases = [measured("a", [50, 51, 49]), measured("b", [60, 90, 61], unstable=True), measured("c", [70])]
    text = "\n".join(answer_lines(cases))
    assert "Not decided: 1 of 3 case(s) are unstable (b)" in text and "more passes (--e3p-passes) on a quiet machine" in text
    assert "Not decided: c ran 1 pass, which measures no noise; --e3p-passes 3 or more would." in text


def test_the_most_accurate_within_an_energy_budget():
    cases = [measured("a", [50, 50, 50], 70.0), measured("b", [100, 100, 100], 78.0), measured("c", [200, 200, 200], 82.0)]
    assert "  within 120 mJ/img the most accurate is b (top-1 78.0 %, 100 mJ/img)." in answer_lines(cases, budget_mj=120)
    assert "  within 10 mJ/img: no case fits; the least is a at 50 mJ/img." in answer_lines(cases, budget_mj=10)
    assert not any("within 120" in line for line in answer_lines(cases))  # no budget, no line
    # a case under the budget whose passes reach above it is said to
    noisy = [measured("a", [50, 50, 50], 70.0), measured("b", [80, 100, 125], 78.0)]
    assert any("is b" in line and "its noise band reaches above the budget" in line for line in answer_lines(noisy, budget_mj=110))


def test_published_accuracy_is_said_with_what_would_measure_it():
    text = "\n".join(answer_lines([measured("a", [50, 50, 50], top1_source="reference"), measured("b", [90, 90, 90], top1_source="reference")]))
    assert "top-1 80.0 % published" in text and "a labelled dataset" in text


def test_a_variant_within_the_noise_of_its_fp32_claims_no_saving():
    ref = measured("deit_tiny", [100, 60, 100])
    within = VsReference(ref.case_id, 3, 0.95, 0.85, 1.05, 0.95, 0.9, 1.0, within_noise=True)
    int8 = measured("deit_tiny", [95, 51, 105], variant="int8", vs_reference=within)
    lines = answer_lines([ref, int8])
    assert any(line.startswith("  the least energy per image is deit_tiny int8 (95 mJ/img)") for line in lines)
    assert (
        "  deit_tiny int8's energy against deit_tiny fp32 measured in the same passes is within the noise (~): no saving of the int8 form is claimed." in lines
    )
    clear = VsReference(ref.case_id, 3, 0.6, 0.55, 0.65, 0.6, 0.55, 0.65, within_noise=False)
    int8 = measured("deit_tiny", [60, 36, 60], variant="int8", vs_reference=clear)
    assert not any("no saving" in line for line in answer_lines([ref, int8]))


def test_a_skipped_case_is_accounted_for_and_no_energy_is_not_a_winner():
    skipped = case_result(
        "deit_tiny-cpu-imagenet-prune-heads-25",
        model="deit_tiny.tag",
        dataset="imagenet",
        variant="prune-heads-25",
        status="skipped",
        reason="removes no head of 3 per block; it needs P >= 34",
    )
    lines = answer_lines([measured("deit_tiny", [50, 50, 50]), skipped])
    assert "  Not in this answer: deit_tiny prune-heads-25 (skipped: removes no head of 3 per block; it needs P >= 34)." in lines
    no_sensor = [case_result("a-cpu-imagenet", dataset="imagenet", energy_kind="unavailable", energy_source="unavailable", latency_ms_per_image=3.0)]
    assert answer_lines(no_sensor)[0].startswith(
        "On cpu / imagenet: no energy figure (energy unavailable): the run cannot say which model uses the least energy; the fastest is a (3 ms/img)"
    )


def test_a_net_energy_at_or_below_zero_is_not_ranked():
    """The edgevit protocol subtracts the idle background: on a rail whose power does not move (seen
    on a board's flat rail tree) the net energy is 0 or less, which has no interval; the answer used
    to stop on an assertion there."""
    flat = measured("edgevit_xxs", [1.0, 1.0, 1.0], 74.4)
    flat.energy_mj_per_image, flat.energy_mj_per_image_passes, flat.sam = 0.0, [], None
    lines = answer_lines([flat, measured("levit_128s", [50, 50.5, 49.5], 78.0)])
    assert "the least energy per image is levit_128s" in "\n".join(lines)
    assert "edgevit_xxs" not in lines[0]
    assert answer_lines([flat])  # alone: said, not a crash


def test_the_markdown_answer_nests_and_escapes():
    cases = [measured("a", [50, 51, 49]), case_result("b-cpu-imagenet", dataset="imagenet", status="skipped", reason="needs <P> | more")]
    md = answer_markdown(cases)
    assert md[0].startswith("- On cpu / imagenet: ") and all(line.startswith(("- ", "  - ")) for line in md)
    assert any("needs &lt;P&gt; \\| more" in line for line in md)


def test_an_interval_never_reaches_below_zero():
    # passes 10x apart: a linear 2 sd band reached -1000 mJ in the issue; the log band stays positive
    c = measured("a", [10, 100, 1000])
    band = energy_interval(c)
    assert band is not None and 0 < band.low < band.value < band.high
    s = sam_interval(c)
    assert s is not None and s.low <= s.value <= s.high


def test_a_long_list_of_names_is_cut_with_a_count():
    # the 13-model run: 10 unstable cases named one by one buried the answer
    cases = [measured(f"m{i}", [50 + 10 * i, 80 + 10 * i, 65 + 10 * i], unstable=True) for i in range(10)]
    line = next(line for line in answer_lines(cases) if "unstable" in line and "Not decided" in line)
    assert "10 of 10 case(s) are unstable (m0, m1, m2, m3, m4, m5 and 4 more (the table lists them))" in line


def test_the_budget_option_reaches_the_answer_in_the_terminal_and_the_report(pytester):
    """--e3p-energy-budget-mj: the answer after the tables, and at the head of report.md, name the most
    accurate case within it (a huge budget: every case fits)."""
    from fakes.runs import SHORT

    pytester.makepyfile(test_b="def test_energy(e3p):\n    e3p.measure()\n")
    result = pytester.runpytest(*SHORT, "--e3p-models=test_vit", "--e3p-energy-budget-mj=1e9", "--e3p-report=rep")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*within 1e+09 mJ/img (estimated energy) the most accurate is test_vit*"])
    assert "within 1e+09 mJ/img (estimated energy) the most accurate is test_vit" in (pytester.path / "rep" / "report.md").read_text()
