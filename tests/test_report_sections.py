"""One list of report sections (report.sections) feeds the terminal summary and report.md."""

from fakes.results import case_result

from pytest_e3p.models.screening import Stage1Row
from pytest_e3p.report.markdown import write_report
from pytest_e3p.report.sections import SectionKind, by_kind, case_sections, summary_sections, write_terminal
from pytest_e3p.report.table3 import protocol_conditions
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


SKIPPED = case_result(
    "deit_tiny-cpu-synthetic-prune-heads-25",
    model="deit_tiny.fb_in1k",
    variant="prune-heads-25",
    # as the run records a case it did not measure: no sensor was read for it
    energy_kind="unavailable",
    energy_source="unavailable",
    status="skipped",
    reason="removes no head of 3 per block; it needs P >= 34",
)


def test_a_skipped_case_is_in_its_devices_table_with_its_reason_without_rs():
    # the README's variants example: prune-heads-25 on deit_tiny is skipped; it was in no output
    tr = Recorder()
    write_terminal(tr, summary_sections([], [*CASES, SKIPPED]))
    tables = [line for line in tr.lines if line.startswith("=== E3P stage 2")]
    assert tables == ["=== E3P stage 2 on cpu / synthetic: energy measured by rapl ()"]  # one table, not one of its own
    row = next(line for line in tr.lines if "prune-heads-25" in line and line.lstrip().startswith("skipped"))
    assert "deit_tiny.fb_in1k prune-heads-25" in row and "unavailable" not in row  # not run is not "no sensor"
    assert "deit_tiny-cpu-synthetic-prune-heads-25: skipped: removes no head of 3 per block; it needs P >= 34" in tr.lines
    assert "  Not in this answer: deit_tiny prune-heads-25 (skipped: removes no head of 3 per block; it needs P >= 34)." in tr.lines


def test_the_answer_is_printed_after_the_tables_and_before_what_the_run_wrote():
    tr = Recorder()
    write_terminal(tr, summary_sections([], CASES, lead=["device note"], closing=["results written to r.json"], budget_mj=30.0))
    lines = tr.lines
    answer = lines.index("=== E3P answer: the most energy-efficient model on each device")
    assert answer > max(i for i, line in enumerate(lines) if line.startswith(("=== E3P stage 2", "--- variants")))
    assert lines[answer + 1].startswith("On cpu / synthetic: the most energy-efficient by SAM is deit_tiny int8")
    assert "  within 30 mJ/img the most accurate is deit_tiny int8 (top-1 72.0 % published, 25 mJ/img)." in lines[answer:]
    assert lines[-1] == "results written to r.json"


def test_the_edgevit_conditions_describe_that_protocol_not_the_e3p_rounds():
    # protocol records as run/session.py writes them (protocol_record)
    edgevit = {"protocol": "edgevit", "inferences": 50, "passes": 3, "rounds": 5, "min_round_s": 1.0, "warmup_s": 2.0, "idle_s": 1.0, "batch_size": 1}
    text = protocol_conditions(edgevit)
    assert "rounds" not in text and "1.0 s" not in text.split("warm-up")[1]
    assert text.startswith("edgevit protocol") and "background power measured idle for 1.0 s, 2.0 s warm-up, then 50 timed inferences of one image" in text
    assert "3 passes" in text
    e3p = protocol_conditions({**edgevit, "protocol": "e3p", "batch_size": 64, "inferences": None})
    assert e3p == "e3p protocol, batch 64: idle power over 1.0 s, 2.0 s warm-up, then 3 passes x 5 rounds of at least 1.0 s"
    assert "no background measured" in protocol_conditions({**edgevit, "idle_s": 0})
