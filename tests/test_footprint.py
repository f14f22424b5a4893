"""Energy as carbon and cost (issue 28): each case's energy per million images in kWh, grams CO2e
and money at the factors the user gives, in the record, the tables, report.md and the dashboard."""

import datetime as dt
import json

import pytest
from fakes.results import case_result, results_file
from fakes.runs import SCRIPTED, SHORT

from pytest_e3p import cli
from pytest_e3p.metrics import MJ_PER_KWH, kwh_per_million_images
from pytest_e3p.report import dashboard
from pytest_e3p.report.footprint import dashboard_cell, dashboard_shown, footprint_markdown, footprint_tables
from pytest_e3p.report.markdown import write_report
from pytest_e3p.report.sections import SectionKind, by_kind, case_sections
from pytest_e3p.run.record import footprint
from pytest_e3p.storage import results
from pytest_e3p.storage.history import CommitInfo, append_run


def test_one_millijoule_per_image_is_a_million_millijoules_per_million_images():
    # 1 mJ/img x 1e6 img = 1e6 mJ = 1e3 J; 1 kWh = 3.6e6 J, so 1e3 / 3.6e6 kWh
    assert MJ_PER_KWH == 3.6e9
    assert kwh_per_million_images(1.0) == pytest.approx(2.7777777e-4)
    assert kwh_per_million_images(36.0) == pytest.approx(0.01)


def test_carbon_and_cost_are_the_kwh_times_their_factor():
    fp = footprint(36.0, "measured", carbon_g_per_kwh=400.0, price_per_kwh=0.25)
    assert fp is not None
    assert fp.energy_kwh_per_million_images == pytest.approx(0.01)
    assert fp.co2e_g_per_million_images == pytest.approx(4.0)  # 0.01 kWh x 400 g/kWh
    assert fp.cost_per_million_images == pytest.approx(0.0025)  # 0.01 kWh x 0.25 per kWh
    assert (fp.carbon_g_per_kwh, fp.price_per_kwh, fp.energy_kind) == (400.0, 0.25, "measured")
    one = footprint(1.0, "measured", carbon_g_per_kwh=400.0)
    assert one is not None and one.co2e_g_per_million_images == pytest.approx(0.11111111)


def test_no_factor_keeps_the_kwh_only_and_no_energy_gives_no_footprint():
    fp = footprint(36.0, "measured")
    assert fp is not None and fp.energy_kwh_per_million_images == pytest.approx(0.01)
    assert (fp.carbon_g_per_kwh, fp.co2e_g_per_million_images, fp.price_per_kwh, fp.cost_per_million_images) == (None, None, None, None)
    assert footprint(None, "measured", 400.0, 0.3) is None
    assert footprint(5.0, "unavailable", 400.0, 0.3) is None


def test_an_estimate_stays_labelled_an_estimate():
    fp = footprint(36.0, "estimate", carbon_g_per_kwh=400.0, price_per_kwh=0.25)
    assert fp is not None and fp.energy_kind == "estimate"
    case = case_result("e-cpu-synthetic", energy_mj=36.0, energy_kind="estimate", energy_mj_per_image=36.0, footprint=fp)
    [(title, table, notes)] = footprint_tables([case])
    assert "ESTIMATED energy" in title
    assert "~0.01 (est.)" in table and "~4 (est.)" in table and "~0.0025 (est.)" in table
    assert any("ESTIMATED" in n for n in notes)
    assert "est." in dashboard_cell(case.to_dict(), str)


def _case(cid, energy, kind="measured", carbon=350.0, price=0.3, **fields):
    return case_result(cid, energy_mj=energy, energy_kind=kind, energy_mj_per_image=energy, footprint=footprint(energy, kind, carbon, price), **fields)


def test_cases_are_ranked_by_cost_and_an_estimate_is_never_ranked_against_a_measurement():
    cases = [
        _case("big-cpu-synthetic", 90.0, model="big.tag"),
        _case("small-cpu-synthetic", 18.0, model="small.tag"),
        _case("est-cpu-synthetic", 1.0, "estimate", model="est.tag"),
    ]
    tables = footprint_tables(cases)
    assert len(tables) == 2  # measured, then the estimate on its own
    measured = tables[0][1]
    assert "measured energy" in tables[0][0] and "at 350 g CO2e/kWh and 0.3 per kWh, given by --e3p-carbon-g-per-kwh/--e3p-price-per-kwh" in tables[0][0]
    assert measured.index("small") < measured.index("big")  # the cheaper first
    assert "est" not in measured
    assert ["kWh / 1M img", "g CO2e / 1M img", "cost / 1M img"] == [h for h in ["kWh / 1M img", "g CO2e / 1M img", "cost / 1M img"] if h in measured]


def test_a_carbon_factor_alone_shows_no_cost_column_and_ranks_by_energy():
    cases = [_case("big-cpu-synthetic", 90.0, price=0.0, model="big.tag"), _case("small-cpu-synthetic", 18.0, price=0.0, model="small.tag")]
    [(title, table, notes)] = footprint_tables(cases)
    assert "g CO2e / 1M img" in table and "cost" not in table
    assert "0.3 per kWh" not in title and "350 g CO2e/kWh" in title
    assert notes[0].startswith("ranked by energy")
    assert table.index("small") < table.index("big")


def test_no_factor_no_carbon_or_cost_anywhere():
    cases = [_case("a-cpu-synthetic", 18.0, carbon=0.0, price=0.0)]
    assert cases[0].footprint is not None  # the kWh are in the record ...
    assert footprint_tables(cases) == [] and footprint_markdown(cases) == []  # ... but no table restates the energy
    assert SectionKind.FOOTPRINT not in {s.kind for s in case_sections(cases)}
    assert not dashboard_shown([c.to_dict() for c in cases])


def test_the_terminal_section_and_the_report_section(tmp_path):
    cases = [_case("big-cpu-synthetic", 90.0, model="big.tag"), _case("small-cpu-synthetic", 18.0, model="small.tag")]
    [section] = by_kind(case_sections(cases))[SectionKind.FOOTPRINT]
    assert "cost / 1M img" in section.table
    path = write_report([results_file(cases)], tmp_path)
    text = path.read_text()
    assert "## Cost per million images" in text
    assert "at 350 g CO2e/kWh and 0.3 per kWh, given by --e3p-carbon-g-per-kwh/--e3p-price-per-kwh" in text
    # 18 mJ/img = 0.005 kWh per million images = 1.75 g CO2e = 0.0015 at 0.3 per kWh
    assert "| 0.005 " in text and "| 1.75 " in text and "| 0.0015 " in text


def test_the_footprint_survives_the_results_file(tmp_path):
    case = _case("a-cpu-synthetic", 18.0)
    results.save(results_file([case]), tmp_path / "r.json")
    back = results.load(tmp_path / "r.json").cases["a-cpu-synthetic"]
    assert back.footprint == case.footprint


def test_the_report_command_recomputes_at_the_factors_given(tmp_path, capsys):
    results.save(results_file([_case("a-cpu-synthetic", 36.0, carbon=0.0, price=0.0)]), tmp_path / "r.json")
    assert cli.main(["report", str(tmp_path / "r.json"), "--out", str(tmp_path / "rep"), "--price-per-kwh", "2"]) == 0
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "at 2 per kWh" in text and "| 0.02 " in text  # 0.01 kWh x 2
    assert "g CO2e" not in text
    with pytest.raises(SystemExit):
        cli.main(["report", str(tmp_path / "r.json"), "--out", str(tmp_path / "rep"), "--price-per-kwh", "-1"])
    assert "--price-per-kwh" in capsys.readouterr().err


def test_the_dashboard_has_a_footprint_column_when_a_factor_was_given(tmp_path):
    rf = results_file([_case("a-cpu-synthetic", 36.0)])
    commit = CommitInfo(sha="a" * 40, branch="main", dirty=False, subject="one run", source="git")
    append_run(rf, tmp_path / "h", {"hostname": "runner"}, commit=commit, when=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
    page = dashboard.write_dashboard(tmp_path / "h", tmp_path / "site", max_charts=0).index.read_text()
    assert "kWh / g CO2e / cost per 1M img" in page
    assert "0.01 kWh" in page and "3.5 g CO2e" in page and "0.003 at 0.3/kWh" in page
    bare = results_file([_case("a-cpu-synthetic", 36.0, carbon=0.0, price=0.0)])
    append_run(bare, tmp_path / "h2", {"hostname": "runner"}, commit=commit, when=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
    assert "per 1M img" not in dashboard.write_dashboard(tmp_path / "h2", tmp_path / "site2", max_charts=0).index.read_text()


BENCH = "def test_energy(e3p):\n    e3p.measure()\n"


def test_a_run_with_both_factors(pytester):
    pytester.makepyfile(test_bench=BENCH)
    # the scripted machine: 25 ms per image at 10 W = 250 mJ per image = 0.0694 kWh per million images
    res = pytester.runpytest(
        *SHORT, *SCRIPTED, "--e3p-models=test_vit", "--e3p-results=r.json", "--e3p-report=rep", "--e3p-carbon-g-per-kwh=400", "--e3p-price-per-kwh=0.3"
    )
    assert res.ret == 0, res.stdout.str()
    res.stdout.fnmatch_lines(["*Cost per million images (measured energy), at 400 g CO2e/kWh and 0.3 per kWh*", "*kWh / 1M img*g CO2e / 1M img*cost / 1M img*"])
    [case] = json.loads((pytester.path / "r.json").read_text())["cases"].values()
    fp = case["footprint"]
    assert case["energy_mj_per_image"] == pytest.approx(250.0, rel=1e-3)
    assert fp["energy_kwh_per_million_images"] == pytest.approx(250.0 / 3600, rel=1e-3)
    assert fp["co2e_g_per_million_images"] == pytest.approx(400 * 250.0 / 3600, rel=1e-3)
    assert fp["cost_per_million_images"] == pytest.approx(0.3 * 250.0 / 3600, rel=1e-3)
    assert fp["energy_kind"] == "measured"
    report = (pytester.path / "rep" / "report.md").read_text()
    assert "## Cost per million images" in report and "given by --e3p-carbon-g-per-kwh/--e3p-price-per-kwh" in report


def test_a_run_without_factors_keeps_the_kwh_in_the_results_only(pytester):
    pytester.makepyfile(test_bench=BENCH)
    res = pytester.runpytest(*SHORT, *SCRIPTED, "--e3p-models=test_vit", "--e3p-results=r.json")
    assert res.ret == 0, res.stdout.str()
    assert "Cost per million images" not in res.stdout.str() and "kWh" not in res.stdout.str()
    [case] = json.loads((pytester.path / "r.json").read_text())["cases"].values()
    assert case["footprint"]["energy_kwh_per_million_images"] == pytest.approx(250.0 / 3600, rel=1e-3)
    assert case["footprint"]["co2e_g_per_million_images"] is None and case["footprint"]["cost_per_million_images"] is None
