import argparse
import os
import re

import pytest
from fakes.power_rails import tx2_tree
from fakes.results import case_result, results_file

from pytest_e3p.cli import main
from pytest_e3p.storage import results


def test_compare_exit_codes(tmp_path, capsys):
    base, same, worse = tmp_path / "base.json", tmp_path / "same.json", tmp_path / "worse.json"
    results.save(results_file([case_result("a", energy_mj=40)]), base)
    results.save(results_file([case_result("a", energy_mj=40)]), same)
    results.save(results_file([case_result("a", energy_mj=48)]), worse)
    assert main(["compare", str(base), str(same)]) == 0
    assert main(["compare", str(base), str(worse)]) == 1
    out = capsys.readouterr().out
    assert "REGRESSION a: energy +2" in out and "% vs baseline (tolerance 5%, noise +/-" in out and "mJ/img" in out
    assert main(["compare", str(base), str(worse), "--tolerance", "energy=25%"]) == 0
    assert main(["compare", str(base), str(worse), "--tolerance", "energy=lots"]) == 2
    (tmp_path / "bad.json").write_text("{")
    before = (tmp_path / "bad.json").read_text()
    assert main(["compare", str(tmp_path / "bad.json"), str(same)]) == 2
    assert (tmp_path / "bad.json").read_text() == before  # the baseline is left as it was
    assert "not valid JSON" in capsys.readouterr().err


def test_screen_command_prints_kept_and_dropped_with_why(capsys):
    # levit_192 and levit_conv_192 differ by 0.002 points of top-1 with equal params and MACs: within
    # the reference data's precision, so neither dominates; deit_small is dominated by levit_192
    assert main(["screen", "--models", "levit_192,levit_conv_192,deit_small_patch16_224"]) == 0
    out = capsys.readouterr().out
    assert "dominated by levit_192.fb_dist_in1k" in out and "dominated by levit_conv_192" not in out
    assert "kept 2 of 3" in out
    assert main(["screen", "--models", "not_a_model"]) == 2


def test_sensors_command_reports_each_backend_and_why_it_is_missing(capsys, sysfs_root):
    assert main(["sensors"]) == 0
    out = capsys.readouterr().out
    assert "CPU (RAPL): unavailable: no RAPL" in out
    assert "Jetson INA3221 rails: unavailable: no INA3221 rails" in out
    assert "NVIDIA GPU (NVML): unavailable" in out
    assert "labelled estimate" in out


def test_sensors_command_measures_the_update_period_of_a_real_layout(capsys, sysfs_root):
    tx2_tree(sysfs_root)
    assert main(["sensors", "--sample-hz", "100", "--window-s", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "Jetson INA3221 rails: jetson-ina3221, boundary: Jetson module input (VDD_IN), unit: mW" in out
    assert "sampled every 10.0 ms" in out
    rails = out.split("\n  rails: ")[1].split(";")[0].split(", ")
    assert sorted(rails) == sorted(["VDD_IN", "VDD_SYS_CPU", "VDD_SYS_DDR", "VDD_SYS_GPU", "VDD_SYS_SOC", "VDD_4V0_WIFI"])
    assert "total: VDD_IN" in out


# -- help ------------------------------------------------------------------------------------


def test_help_of_the_command_runs_in_a_fresh_interpreter():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "pytest_e3p", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage: python -m pytest_e3p" in done.stdout and not done.stderr
    assert (
        "torch"
        not in subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from pytest_e3p.cli import main\ntry: main(['finetune', '--help'])\nexcept SystemExit: pass\nprint(*[m for m in sys.modules if m.split('.')[0] == 'torch'])",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
    )  # --help must not wait for torch to import


def test_every_subcommand_help_exits_0(capsys):
    from pytest_e3p.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict)).choices
    assert set(commands) >= {"screen", "sensors", "compare", "report", "finetune"}
    for argv in [["--help"]] + [[name, "--help"] for name in commands]:
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 0, argv
        assert "usage: python -m pytest_e3p" in capsys.readouterr().out
    # argparse %-formats help strings: a bare % (energy=5%) in one would crash --help
    for name, sub in commands.items():
        for action in sub._actions:
            assert action.help is None or "%" not in action.help.replace("%%", ""), (name, action.help)


DEFAULT_MENTION = re.compile(r"\(default\b|\bdefault:")  # "(default: 5)", "(default 5)", "default: all"


def help_entries(text: str) -> dict[str, str]:
    """Each entry of argparse's "positional arguments:" and "options:" sections, as printed:
    its name column (`--steps STEPS`, `baseline`) -> its help, wrapped lines joined."""
    entries: dict[str, str] = {}
    section, last = "", ""
    for line in text.splitlines():
        if line and not line.startswith(" "):
            section = line
            continue
        if section not in ("options:", "positional arguments:") or not line.strip():
            continue
        if line.startswith("  ") and not line.startswith("   "):  # a new entry: name, then its help after 2+ spaces
            name, _, help_text = line.strip().partition("  ")
            last = name
            entries[name] = help_text.strip()
        else:
            entries[last] = f"{entries[last]} {line.strip()}".strip()
    return entries


def _commands() -> dict:
    from pytest_e3p.cli import build_parser

    return next(a for a in build_parser()._actions if a.choices and isinstance(a.choices, dict)).choices


@pytest.mark.parametrize("command", _commands())
def test_every_option_of_every_command_has_help_and_says_its_default_once(command, capsys):
    """Issue 29: `(default 100) (default: 100.0)`, finetune's --steps/--lr/... without a word, and
    required options showing `(default: None)`."""
    problems = []
    for name, sub in [(command, _commands()[command])]:
        with pytest.raises(SystemExit):
            main([name, "--help"])
        entries = help_entries(capsys.readouterr().out)
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            shown = next((k for k in entries if k.split(",")[0].split()[0] in (action.option_strings or [action.metavar or action.dest])), None)
            if shown is None:
                problems.append(f"{name} {action.dest}: not in the help")
                continue
            text = entries[shown]
            said = len(DEFAULT_MENTION.findall(text))
            if not DEFAULT_MENTION.sub("", text).strip(" ()"):
                problems.append(f"{name} {shown}: no help text")
            if action.required or not action.option_strings:
                if said:
                    problems.append(f"{name} {shown}: required, yet shows a default: {text!r}")
            elif said != 1:
                problems.append(f"{name} {shown}: {said} default mentions: {text!r}")
            if "None" in text:
                problems.append(f"{name} {shown}: shows Python's None: {text!r}")
    assert not problems, "\n".join(problems)


def test_finetune_help_gives_the_recipe_defaults_from_its_record(capsys):
    from pytest_e3p.finetune import FinetuneConfig

    with pytest.raises(SystemExit):
        main(["finetune", "--help"])
    entries = help_entries(capsys.readouterr().out)
    recipe = FinetuneConfig("m", "cifar10=x", "out")
    for option, value in [
        ("--steps STEPS", recipe.steps),
        ("--batch-size BATCH_SIZE", recipe.batch_size),
        ("--lr LR", recipe.lr),
        ("--seed SEED", recipe.seed),
        ("--eval-every EVAL_EVERY", recipe.eval_every),
    ]:
        assert entries[option].endswith(f"(default: {value})"), (option, entries[option])
    assert "(default" not in entries["--model MODEL"] and "(default" not in entries["--out OUT"]


def test_compare_help_documents_the_exit_codes(capsys):
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    out = capsys.readouterr().out
    assert "exit status:" in out and "0  no case regressed" in out and "1  at least one case regressed" in out and "2  error" in out


# -- compare: 0 OK, 1 regression, 2 error -----------------------------------------------------


def one_line_error(capsys):
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_compare_non_utf8_baseline_is_one_line_exit_2(tmp_path, capsys):
    good = tmp_path / "good.json"
    results.save(results_file([case_result("a", energy_mj=40)]), good)
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes(b'{"schema": "caf\xe9"}')
    assert main(["compare", str(latin1), str(good)]) == 2
    assert "not UTF-8" in one_line_error(capsys)
    assert main(["compare", str(good), str(latin1)]) == 2
    assert "latin1.json" in one_line_error(capsys)
    assert main(["report", str(latin1), "--out", str(tmp_path / "r")]) == 2
    assert "not UTF-8" in capsys.readouterr().err


def test_compare_foreign_missing_or_other_device_files_are_errors_not_regressions(tmp_path, capsys):
    good = tmp_path / "good.json"
    results.save(results_file([case_result("a", energy_mj=40)]), good)
    foreign = tmp_path / "package.json"
    foreign.write_text('{"name": "left-pad"}')
    assert main(["compare", str(foreign), str(good)]) == 2
    assert "not a pytest-e3p results file" in one_line_error(capsys)
    assert main(["compare", str(tmp_path / "absent.json"), str(good)]) == 2
    one_line_error(capsys)
    other = tmp_path / "other.json"
    results.save(results_file([case_result("a", energy_mj=40)], "rtx3050"), other)
    assert main(["compare", str(other), str(good)]) == 2
    assert "rtx3050" in one_line_error(capsys)


def test_compare_cases_of_other_conditions_are_an_error_unless_something_regressed(tmp_path, capsys):
    base = tmp_path / "base.json"
    results.save(results_file([case_result("a", energy_mj=40), case_result("b", energy_mj=40)]), base)
    refused = tmp_path / "refused.json"
    results.save(results_file([case_result("a", energy_mj=40), case_result("b", energy_mj=40, batch_size=64)]), refused)
    assert main(["compare", str(base), str(refused)]) == 2
    assert "batch size differs" in one_line_error(capsys)


def test_compare_regression_wins_over_cases_not_compared(tmp_path, capsys, monkeypatch):
    # the gate itself is baseline.py's; here only the command's choice of exit code
    import types

    from pytest_e3p.gate import baseline
    from pytest_e3p.report import terminal as report

    base = tmp_path / "base.json"
    results.save(results_file([case_result("a", energy_mj=40)]), base)
    regressed = types.SimpleNamespace(verdict=baseline.REGRESSED, describe=lambda: "energy +20% vs baseline")
    cmp = baseline.Comparison(checks={"a": [regressed]}, refused={"b": "b: batch size differs: baseline 16, this run 64"})
    monkeypatch.setattr(baseline, "compare_files", lambda *args: cmp)
    monkeypatch.setattr(report, "comparison_table", lambda cmp: "(table)")
    assert main(["compare", str(base), str(base)]) == 1  # a regression is a finding: it wins
    captured = capsys.readouterr()
    assert "REGRESSION a: energy +20% vs baseline" in captured.out and "batch size differs" in captured.err


@pytest.mark.parametrize("kind", ["deep", "dev-zero", "fifo", "folder"])
def test_compare_on_files_that_are_not_results_is_one_line_exit_2_not_a_hang(tmp_path, capsys, kind):
    """Issue 25: 100,000 nested [ raised RecursionError (exit 1, "regression"); a link to /dev/zero read
    until memory ran out; a FIFO blocked. Each is refused before or while parsing, in one line."""
    good = tmp_path / "good.json"
    results.save(results_file([case_result("a", energy_mj=40)]), good)
    bad = tmp_path / "bad.json"
    if kind == "deep":
        bad.write_text("[" * 100_000)
    elif kind == "dev-zero":
        bad.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(bad)
    else:
        bad.mkdir()
    assert main(["compare", str(bad), str(good)]) == 2
    assert "bad.json" in one_line_error(capsys)
