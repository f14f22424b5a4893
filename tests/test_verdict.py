"""The verdict, made once (gate.verdict.final_verdict), and the enums that replace stringly-typed fields.

Each circumstance is driven through the function directly with fixed checks (no measurement, so no
dependence on the machine's speed); the tables and the results file are then read to show that
they take the verdict as a value and never recover it from a note's words."""

import dataclasses
import json

import pytest
from fakes.results import case_result

from pytest_e3p.config import DEFAULTS
from pytest_e3p.gate import (
    DEFAULT_ENERGY_TOLERANCE,
    Check,
    Circumstances,
    Throttling,
    Tolerances,
    Verdict,
    final_verdict,
    parse_tolerances,
)
from pytest_e3p.hardware.sensors.base import ESTIMATE, MEASURED, EnergyKind
from pytest_e3p.report.terminal import ranking_rows
from pytest_e3p.storage import results
from pytest_e3p.storage.results import ResultsFile, Status, Top1Source


def check(metric="energy", verdict=Verdict.UNCHANGED, note="", baseline=40.0, current=40.0):
    unit = {"energy": "mJ/img", "latency": "ms/img", "top1": "%"}[metric]
    return Check(metric, unit, baseline, current, 0.05 if metric != "top1" else 0.5, None, verdict, note, 0.02, 3)


def case(case_id="m-cpu-synthetic", throttled=0, rounds=15, reasons=(), **kw):
    r = case_result(case_id, model="m", energy_source="rapl", **kw)
    r.throttled_rounds, r.round_throttled, r.throttle_reasons = throttled, [True] * throttled + [False] * (rounds - throttled), list(reasons)
    return r


# -- the function, one circumstance at a time ---------------------------------------------------


def test_a_case_the_baseline_does_not_hold_is_new_whatever_its_checks():
    final = final_verdict([check(verdict=Verdict.REGRESSED)], Circumstances(in_baseline=False))
    assert final.verdict == Verdict.NEW and final.checks == [] and not final.throttled


@pytest.mark.parametrize(
    "verdicts, expected",
    [
        ([Verdict.UNCHANGED], Verdict.UNCHANGED),
        ([Verdict.UNCHANGED, Verdict.IMPROVED], Verdict.IMPROVED),
        ([Verdict.IMPROVED, Verdict.INCONCLUSIVE], Verdict.INCONCLUSIVE),
        ([Verdict.INCONCLUSIVE, Verdict.REGRESSED, Verdict.IMPROVED], Verdict.REGRESSED),
        ([], Verdict.NOT_COMPARED),  # every gate off: nothing was compared
    ],
)
def test_a_case_in_the_baseline_takes_the_worst_verdict_of_its_checks(verdicts, expected):
    checks = [check(metric, v) for metric, v in zip(("energy", "latency", "top1"), verdicts)]
    final = final_verdict(checks, Circumstances())
    assert final.verdict == expected and final.checks == checks  # unchanged checks: the same values


def test_throttled_now_but_not_in_the_baseline_makes_energy_and_latency_inconclusive_but_not_top1():
    checks = [check("energy", Verdict.REGRESSED, note="within the noise: not failed"), check("latency", Verdict.INCONCLUSIVE), check("top1", Verdict.REGRESSED)]
    throttling = Throttling(4, 15, ("passive trip point",))
    final = final_verdict(checks, Circumstances(throttling=throttling))
    energy, latency, top1 = final.checks
    assert (energy.verdict, latency.verdict, top1.verdict) == (Verdict.INCONCLUSIVE, Verdict.INCONCLUSIVE, Verdict.REGRESSED)
    assert energy.throttled and latency.throttled and not top1.throttled and final.throttled
    # the clocks do not move top-1: the case still regressed on it
    assert final.verdict == Verdict.REGRESSED
    assert energy.note == (
        "inconclusive (throttled): the device throttled in 4 of 15 rounds of this run (passive trip point) and in none of the baseline's; "
        "let it cool and run again; within the noise: not failed"
    )
    assert energy.label == "inconclusive (throttled)" and top1.label == "regressed"


def test_a_throttled_run_keeps_an_improvement_or_no_change():
    checks = [check("energy", Verdict.IMPROVED), check("latency", Verdict.UNCHANGED)]
    final = final_verdict(checks, Circumstances(throttling=Throttling(9, 9)))
    assert final.checks == checks and final.verdict == Verdict.IMPROVED and not final.throttled


def test_the_circumstances_of_a_result_against_its_baseline_entry():
    assert Circumstances.of(case(), None) == Circumstances(in_baseline=False)
    assert Circumstances.of(case(throttled=3), case()) == Circumstances(throttling=Throttling(3, 15, ()))
    assert Circumstances.of(case(throttled=3, reasons=["clock"]), case(throttled=1)) == Circumstances()  # the baseline throttled too
    assert Circumstances.of(case(), case(throttled=2)) == Circumstances()
    assert Throttling(2, 5).note().startswith("inconclusive (throttled): the device throttled in 2 of 5 rounds of this run (throttled) and")


# -- nothing reads the verdict back out of a note -----------------------------------------------


def _verdict_cell(checks, result=None):
    r = result or case()
    _, rows = ranking_rows([r], {r.case_id: checks})
    return rows[0][-1]


def test_the_table_reads_throttled_from_the_check_not_from_its_note():
    throttled = final_verdict([check("energy", Verdict.REGRESSED)], Circumstances(throttling=Throttling(1, 3))).checks
    reworded = [dataclasses.replace(throttled[0], note="the clocks dropped")]  # other words, same value
    assert _verdict_cell(throttled) == _verdict_cell(reworded) == "inconclusive (throttled)"
    # and a note that happens to say "(throttled)" does not make a case throttled
    plain = _verdict_cell([check("energy", Verdict.INCONCLUSIVE, note="was it (throttled)? no")])
    assert plain.startswith("inconclusive: noise") and "throttled" not in plain


def test_the_verdict_words_say_what_happened_and_why_in_the_table():
    def cell(verdict, current, noise):
        return _verdict_cell([dataclasses.replace(check("energy", verdict, current=current), noise=noise)])

    assert cell(Verdict.IMPROVED, 30.0, 0.05) == "improved"  # -25 %, beyond tolerance and noise
    assert cell(Verdict.WITHIN_NOISE, 30.0, 0.40) == "within noise: noise +/-40.0% > change -25.0%"  # faster, but not beyond the noise
    assert cell(Verdict.INCONCLUSIVE, 48.0, 0.30) == "inconclusive: noise +/-30.0% > change +20.0%"
    assert cell(Verdict.UNCHANGED, 40.4, 0.30) == "unchanged"


def test_an_improvement_beyond_the_tolerance_is_improved_or_within_noise_never_unchanged():
    from pytest_e3p.gate import stats

    quiet = [[40.0, 40.1, 39.9], [40.2, 40.1, 40.3], [39.9, 40.0, 39.8]]
    assert stats.decide(quiet, [30.0, 30.1, 29.9], 0.05).verdict == Verdict.IMPROVED
    noisy = [[40.0, 52.0, 31.0]]
    assert stats.decide(noisy, [30.0, 36.0, 27.0], 0.05).verdict == Verdict.WITHIN_NOISE


def test_the_dashboard_and_report_show_the_reason_of_a_recorded_verdict():
    from pytest_e3p.report.verdicts import case_label, markdown_section

    recorded = {"verdict": "inconclusive", "change_vs_baseline": 0.08, "noise_vs_baseline": 0.12}
    assert case_label(recorded) == "inconclusive: noise +/-12.0% > change +8.0%"
    r = case(verdict="regressed", change_vs_baseline=0.2, noise_vs_baseline=0.05, changes_vs_baseline=["torch: 2.1.0 -> 2.2.0"])
    table = "\n".join(markdown_section([r]))
    assert "| +20.0% | +/-5.0% | regressed | torch: 2.1.0 -> 2.2.0 |" in table


def test_the_table_names_every_regressed_metric_and_new_cases_by_their_verdict():
    assert _verdict_cell([check("energy", Verdict.REGRESSED), check("latency", Verdict.REGRESSED)]) == "energy regressed, latency regressed"
    assert _verdict_cell([check("latency", Verdict.UNCHANGED)]) == "unchanged"  # no energy check
    new = case()
    new.verdict = final_verdict([], Circumstances(in_baseline=False)).verdict
    _, rows = ranking_rows([new], {})
    assert rows[0][-4:] == ["-", "-", "-", "new"]
    failed = case(status=Status.FAILED)
    _, rows = ranking_rows([failed], {})
    assert rows[0][-1] == "-" and rows[0][0] == "failed"


def test_the_session_records_the_final_verdict_on_the_result():
    from pytest_e3p.config import SPEC, Options
    from pytest_e3p.run.session import E3PSession

    session = E3PSession(Options(**{name: parse(DEFAULTS[name]) for name, _flag, _d, parse, _h in SPEC}))
    base = case(energy_mj_per_image_passes=[40.0, 40.1, 39.9], latency_ms_per_image_passes=[5.0, 5.0, 5.0], threads=2)
    session.baseline = ResultsFile({"name": "cpu"}, {}, {}, {base.case_id: base})
    unknown = case("other-cpu-synthetic", threads=2)
    assert session.record(unknown) == [] and unknown.verdict == Verdict.NEW
    hot = case(throttled=5, energy_mj_per_image_passes=[60.0, 60.2, 59.9], latency_ms_per_image_passes=[5.0, 5.0, 5.0], threads=2)
    checks = session.record(hot)
    assert hot.verdict == Verdict.INCONCLUSIVE and [c.metric for c in checks if c.throttled] == ["energy"]
    assert session.checks[hot.case_id] == checks


# -- the enums: values, files and the one default tolerance --------------------------------------


def test_the_enums_print_and_compare_as_the_words_they_replace():
    for member, word in [
        (Verdict.REGRESSED, "regressed"),
        (Verdict.NOT_COMPARED, ""),
        (Status.INVALID, "invalid"),
        (Top1Source.REFERENCE, "reference"),
        (ESTIMATE, "estimate"),
    ]:
        assert member == word and str(member) == word and f"{member}" == word and f"{member:>12}" == f"{word:>12}" and json.dumps(member) == json.dumps(word)
    assert (MEASURED, ESTIMATE, results.OK, results.NO_TOP1) == (EnergyKind.MEASURED, EnergyKind.ESTIMATE, Status.OK, Top1Source.UNAVAILABLE)


def test_a_results_file_of_enum_members_is_byte_identical_to_one_of_the_plain_words(tmp_path):
    def file_of(status, source, kind, verdict):
        r = case(status=status, top1_source=source, top1=80.0)
        r.energy_kind, r.verdict = kind, verdict
        return ResultsFile({"name": "cpu"}, {}, {"energy_kind": kind}, {r.case_id: r}, created="2026-01-01T00:00:00+00:00")

    results.save(file_of(Status.FAILED, Top1Source.REFERENCE, EnergyKind.ESTIMATE, Verdict.INCONCLUSIVE), tmp_path / "enums.json")
    results.save(file_of("failed", "reference", "estimate", "inconclusive"), tmp_path / "words.json")
    assert (tmp_path / "enums.json").read_bytes() == (tmp_path / "words.json").read_bytes()
    loaded = results.load(tmp_path / "words.json").cases["m-cpu-synthetic"]
    assert type(loaded.status) is Status and type(loaded.top1_source) is Top1Source  # read back as members
    assert loaded.status == Status.FAILED and loaded.top1_source == Top1Source.REFERENCE and loaded.verdict == Verdict.INCONCLUSIVE


def test_the_default_energy_tolerance_is_defined_once():
    assert DEFAULT_ENERGY_TOLERANCE == 0.05
    assert Tolerances().energy == parse_tolerances("").energy == parse_tolerances(DEFAULTS["tolerance"]).energy == DEFAULT_ENERGY_TOLERANCE
    assert DEFAULTS["tolerance"] == "energy=5%"  # the option's default as users read it in --help
