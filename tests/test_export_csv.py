"""--e3p-export csv: a table a spreadsheet, the csv module and pandas read as is."""

import csv

import pytest
from fakes.exports import sample_results

from pytest_e3p.export import ExportContext, export_results
from pytest_e3p.export.csv_table import cell, rows

UNITS = ("_mj_per_image", "_ms_per_image", "_w", "_pct", "_mb", "_s", "_g_per_million_images", "_kwh_per_million_images", "_per_kwh")
# the cost is in the currency of the price the run was given (price_per_kwh): no unit to name
UNITLESS = {"cost_per_million_images"}


def _read(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_every_case_is_a_row_with_its_figures_conditions_verdict_and_sources(tmp_path):
    rf = sample_results()
    [done] = export_results(rf, [("csv", "")], ExportContext(results_path=tmp_path / "results.json"))
    assert not done.failed and done.line == f"export csv: 4 case(s) written to {tmp_path / 'results.csv'}"
    table = {r["case_id"]: r for r in _read(tmp_path / "results.csv")}
    assert set(table) == {"deit_tiny-cpu-synthetic", "levit_128s-cpu-synthetic-bs2", "deit_tiny-cpu-synthetic-prune-heads-25", "'=cmd-cpu-synthetic"}
    row = table["deit_tiny-cpu-synthetic"]
    assert float(row["energy_mj_per_image"]) == 41.5 and float(row["latency_ms_per_image"]) == 12.25 and float(row["power_w"]) == pytest.approx(3.388)
    assert row["energy_mj_per_image_passes"] == "41;41.5;42" and row["latency_ms_per_image_passes"] == "12;12.25;12.5"
    assert (row["model"], row["variant"], row["device"], row["dataset"], row["batch_size"], row["image_size"]) == (
        "deit_tiny_patch16_224.fb_in1k",
        "fp32",
        "cpu",
        "synthetic",
        "16",
        "3x224x224",
    )
    assert (row["threads"], row["protocol"], row["weights"]) == ("4", "e3p", "pretrained")
    assert row["verdict"] == "regressed" and float(row["energy_change_vs_baseline_pct"]) == pytest.approx(8.0)
    assert row["changes_vs_baseline"] == "torch 2.13.0 -> 2.14.1; threads 2 -> 4"
    assert (row["energy_kind"], row["energy_source"], row["top1_source"]) == ("measured", "RAPL package-0", "reference")
    # the footprint, flattened, with its factors
    assert float(row["co2e_g_per_million_images"]) == pytest.approx(41.5e6 / 3.6e9 * 400, rel=1e-5) and float(row["carbon_g_per_kwh"]) == 400
    assert float(row["cost_per_million_images"]) == pytest.approx(41.5e6 / 3.6e9 * 0.3, rel=1e-5)
    assert float(row["rail_VDD_IN_mj_per_image"]) == 41.5
    # an estimate says so in its row; a skipped case keeps its reason and holds no figures
    assert table["levit_128s-cpu-synthetic-bs2"]["energy_kind"] == "estimate" and table["levit_128s-cpu-synthetic-bs2"]["top1_source"] == "measured"
    skipped = table["deit_tiny-cpu-synthetic-prune-heads-25"]
    assert skipped["status"] == "skipped" and skipped["reason"].startswith("prune-heads-25 removes") and skipped["energy_mj_per_image"] == ""


def test_every_figure_column_names_its_unit(tmp_path):
    header, _ = rows(sample_results())
    figures = [h for h in header if h.startswith(("energy_mj", "latency_ms", "power", "co2e", "cost", "top1_pct", "peak_memory", "rail_"))]
    assert len(figures) >= 10
    for name in figures:
        assert name.endswith((*UNITS, "_passes", "_sd")) or name in UNITLESS, name
    for required in ("energy_mj_per_image", "latency_ms_per_image", "power_w", "top1_pct", "co2e_g_per_million_images", "energy_kwh_per_million_images"):
        assert required in header


def test_a_string_a_spreadsheet_would_run_as_a_formula_is_quoted_and_numbers_are_not():
    assert cell('=HYPERLINK("x")') == '\'=HYPERLINK("x")' and cell("@SUM(A1)") == "'@SUM(A1)"
    assert cell(-0.5) == "-0.5" and cell([-1.0, 2.0]) == "-1;2"  # a negative number stays a number
    assert cell(None) == "" and cell(True) == "true" and cell(1 / 3) == "0.333333"


def test_pandas_reads_the_table_with_numeric_columns(tmp_path):
    pd = pytest.importorskip("pandas", reason="pandas is not installed: the csv module's reading is tested above")
    export_results(sample_results(), [("csv", str(tmp_path / "t.csv"))])
    frame = pd.read_csv(tmp_path / "t.csv")
    assert len(frame) == 4 and frame["energy_mj_per_image"].dtype.kind == "f"
    assert frame.set_index("case_id").loc["deit_tiny-cpu-synthetic", "energy_mj_per_image"] == 41.5


def test_an_unwritable_destination_is_one_line_naming_the_fix(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    [done] = export_results(sample_results(), [("csv", str(blocker / "t.csv"))])
    assert done.failed and done.line.startswith(f"export csv NOT written to {blocker / 't.csv'}: ")
    assert done.line.endswith("(give a writable one: --e3p-export csv=PATH)") and "\n" not in done.line
