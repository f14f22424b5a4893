"""One list of report sections (report.sections) feeds the terminal summary and report.md."""

from fakes.results import case_result

from pytest_e3p.models.screening import Stage1Row
from pytest_e3p.report.markdown import write_report
from pytest_e3p.report.sections import SectionKind, by_kind, case_sections, summary_sections, write_terminal
from pytest_e3p.storage.results import ResultsFile


def case(case_id, variant="fp32", energy=40.0, **kw):
    r = case_result(case_id, model="deit_tiny.fb_in1k", variant=variant, energy_source="rapl", **kw)
    r.energy_mj_per_image, r.latency_ms_per_image, r.energy_mj_per_image_passes = energy, energy / 8, [energy, energy, energy]
    r.top1, r.top1_source, r.sam = 72.0, "reference", 0.5
    return r


CASES = [case("deit_tiny-cpu-synthetic", rails_mj_per_image={"VDD_IN": 40.0}, total_rail="VDD_IN"), case("deit_tiny-cpu-synthetic-int8", "int8", 25.0)]


class Recorder:
    def __init__(self):
        self.lines = []

    def write_sep(self, sep, title):
        self.lines.append(f"{sep * 3} {title}")

    def write_line(self, line):
        self.lines.extend(line.split("\n"))


def test_the_sections_of_a_run_in_the_terminal_order():
    kinds = [s.kind for s in case_sections(CASES, baseline_ids=["deit_tiny-cpu-synthetic", "gone-cpu-synthetic"])]
    assert kinds == [SectionKind.RANKING, SectionKind.RAILS, SectionKind.VARIANTS, SectionKind.MISSING, SectionKind.FOOTNOTES]
    missing = by_kind(case_sections(CASES, baseline_ids=["gone-cpu-synthetic"]))[SectionKind.MISSING]
    assert missing[0].notes == ("in the baseline but not run: gone-cpu-synthetic",)
    assert SectionKind.MISSING not in {s.kind for s in case_sections(CASES)}  # no baseline: nothing is missing


def test_the_summary_without_cases_is_the_screening_alone():
    rows = [Stage1Row("a", 5.0, 1.0, 70.0, 50.0)]
    assert [s.kind for s in summary_sections(rows, [], lead=["a note"], closing=["written"])] == [SectionKind.STAGE1]
    assert summary_sections([], []) == []
    kinds = [s.kind for s in summary_sections(rows, CASES, lead=["a note"], closing=["written"])]
    assert kinds[:3] == [SectionKind.STAGE1, SectionKind.LINES, SectionKind.RANKING] and kinds[-1] == SectionKind.LINES


def test_the_terminal_and_report_md_print_the_same_sections(tmp_path):
    tr = Recorder()
    write_terminal(tr, summary_sections([], CASES, lead=["device note"], closing=["results written to r.json"]))
    terminal = tr.lines
    assert terminal[0] == "device note" and terminal[-1] == "results written to r.json"
    assert terminal[1].startswith("=== E3P stage 2 on cpu / synthetic") and "--- variants of deit_tiny.fb_in1k on cpu / synthetic, batch 16, 224 px" in terminal
    md = write_report([ResultsFile({"name": "cpu"}, {}, {}, {c.case_id: c for c in CASES})], tmp_path).read_text().splitlines()
    sections = case_sections(CASES)
    for s in sections:
        for note in s.notes:  # every footnote and table note, under its table in both
            assert note in terminal and f"- {note}" in md
    rails = by_kind(sections)[SectionKind.RAILS][0]
    assert rails.title in terminal and f"*{rails.title}*" in md
    assert "#### Variants of deit_tiny.fb_in1k on cpu / synthetic, batch 16, 224 px" in md


def test_the_report_package_names_its_interface():
    import pytest_e3p.report as report
    from pytest_e3p.report import sections

    assert [getattr(report, name).__name__ for name in report.__all__] == report.__all__
    assert report.case_sections is sections.case_sections
