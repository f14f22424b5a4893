"""--e3p-export as users run it (pytester, on the scripted machine), and `python -m pytest_e3p export`."""

import csv
import json
import sys

import pytest
from fakes.exports import sample_results
from fakes.runs import SCRIPTED, SHORT

from pytest_e3p.cli import main
from pytest_e3p.storage.results import save

BENCH = "def test_energy(e3p):\n    e3p.measure()\n"


def _run(pytester, *args):
    pytester.makepyfile(test_bench=BENCH)
    return pytester.runpytest(*SHORT, *SCRIPTED, "--e3p-batch-size=2", "--e3p-models=test_vit,test_vit2", "--e3p-results=out/results.json", *args)


def test_each_export_is_written_after_the_results_and_named_in_one_line_at_the_end(pytester):
    result = _run(pytester, "--e3p-export", "csv", "--e3p-export", "bencher=out.json")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "*E3P stage 2 on cpu / synthetic*",
            "*results written to out/results.json*",
            "*export csv: 2 case(s) written to out/results.csv*",
            "*export bencher: 2 case(s) written to out.json*",
        ]
    )
    results = json.loads((pytester.path / "out/results.json").read_text())
    with open(pytester.path / "out/results.csv", newline="", encoding="utf-8") as fh:
        table = {row["case_id"]: row for row in csv.DictReader(fh)}
    assert set(table) == set(results["cases"]) == {"test_vit-cpu-synthetic", "test_vit2-cpu-synthetic"}
    for cid, case in results["cases"].items():  # the scripted machine's figures, as the results file holds them
        assert float(table[cid]["energy_mj_per_image"]) == pytest.approx(case["energy_mj_per_image"], rel=1e-5)
        assert table[cid]["energy_kind"] == case["energy_kind"] and table[cid]["energy_source"] == case["energy_source"]
    bmf = json.loads((pytester.path / "out.json").read_text())
    assert bmf["test_vit-cpu-synthetic"]["latency-ms"]["value"] == pytest.approx(results["cases"]["test_vit-cpu-synthetic"]["latency_ms_per_image"], rel=1e-5)


def test_a_failed_export_is_one_line_keeps_the_results_file_and_makes_the_run_exit_3(pytester, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # mlflow not installed
    (pytester.path / "blocker").write_text("a file, not a folder")
    result = _run(pytester, "--e3p-export", "csv=blocker/results.csv", "--e3p-export", "mlflow", "--e3p-export", "bencher")
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR
    result.stdout.fnmatch_lines(
        [
            "*results written to out/results.json*",
            "*export csv NOT written to blocker/results.csv: blocker is a file, not a folder (give a writable one: --e3p-export csv=PATH)",
            "*export mlflow: needs mlflow: pip install 'pytest-e3p[[]mlflow]'",  # [[] is fnmatch's literal [
            "*export bencher: 2 case(s) written to out/results.bencher.json*",  # the others still run
            "*exit status 3: 2 requested output(s) NOT written*",
        ]
    )
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert len(json.loads((pytester.path / "out/results.json").read_text())["cases"]) == 2


def test_an_unknown_kind_is_a_usage_error_naming_the_kinds(pytester):
    result = _run(pytester, "--e3p-export", "parquet")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*'parquet' is not an export: use one of csv, openmetrics, mlflow, bencher*"])


# -- python -m pytest_e3p export ------------------------------------------------------------------


def test_the_command_exports_an_earlier_results_file_next_to_it(tmp_path, capsys):
    path = tmp_path / "old-run.json"
    save(sample_results(), path)
    assert main(["export", str(path), "csv", f"bencher={tmp_path / 'b.json'}"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"export csv: 4 case(s) written to {tmp_path / 'old-run.csv'}",
        f"export bencher: 3 case(s) written to {tmp_path / 'b.json'} (1 not measured left out)",
    ]
    with open(tmp_path / "old-run.csv", newline="", encoding="utf-8") as fh:
        assert len(list(csv.DictReader(fh))) == 4


def test_the_command_says_what_failed_and_exits_1_and_2_on_a_bad_results_file(tmp_path, capsys):
    path = tmp_path / "r.json"
    save(sample_results(), path)
    assert main(["export", str(path), "openmetrics=metrics.txt", f"csv={tmp_path / 'ok.csv'}"]) == 1
    captured = capsys.readouterr()
    assert "export openmetrics NOT written to metrics.txt: node_exporter's textfile collector reads only *.prom files" in captured.err
    assert (tmp_path / "ok.csv").is_file()  # a failed export stops no other
    (tmp_path / "bad.json").write_text("{not json")
    assert main(["export", str(tmp_path / "bad.json"), "csv"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    with pytest.raises(SystemExit) as exc:
        main(["export", str(path), "xlsx"])
    assert exc.value.code == 2 and "'xlsx': not an export: use one of csv, openmetrics, mlflow, bencher" in capsys.readouterr().err
