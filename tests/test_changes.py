"""Each verdict other than "unchanged" explained by what the results files record as changed."""

import dataclasses

from fakes.results import case_result, results_file

from pytest_e3p.gate import NOTHING_CHANGED, Recorded, changes, compare_files, parse_tolerances

ENV = {"torch": "2.1.0", "timm": "0.9.12", "python": "3.11.6"}
PROTOCOL = {"threads": 2, "allocator": "fixed", "passes": 3, "tolerances": {"energy": 0.05}}
DEVICE = {"name": "cpu", "identity": {"name": "AMD EPYC 7B13"}}


def recorded(env=ENV, protocol=PROTOCOL, device=DEVICE, **case):
    return Recorded(case_result("m-cpu-synthetic", 40.0, **case), device, env, protocol)


def test_a_torch_version_change_is_listed():
    assert changes(recorded(), recorded(env={**ENV, "torch": "2.2.0"})) == ["torch: 2.1.0 -> 2.2.0"]


def test_a_thread_count_change_is_listed_once():
    lines = changes(recorded(threads=2), recorded(protocol={**PROTOCOL, "threads": 4}, threads=4))
    assert lines == ["threads: 2 -> 4"]


def test_nothing_recorded_changed_says_the_code_is_the_suspect():
    assert changes(recorded(), recorded()) == [NOTHING_CHANGED] == ["nothing recorded changed (the code is the suspect)"]
    # how the file was made (its tolerances) is no condition of the measurement
    assert changes(recorded(), recorded(protocol={**PROTOCOL, "tolerances": {"energy": 0.1}})) == [NOTHING_CHANGED]


def test_the_cpu_model_a_newly_recorded_setting_and_throttling_are_listed():
    lines = changes(
        recorded(),
        recorded(
            device={"name": "cpu", "identity": {"name": "Intel Xeon"}},
            env={**ENV, "governor": "powersave"},
            throttled_rounds=2,
            round_throttled=[True, True, False],
            throttle_reasons=["thermal"],
        ),
    )
    assert "device name: AMD EPYC 7B13 -> Intel Xeon" in lines
    assert "governor: (not recorded) -> powersave" in lines
    assert "throttled rounds: 0 of 0 -> 2 of 3 (thermal)" in lines


def test_compare_explains_a_regression_and_leaves_an_unchanged_case_alone():
    base = results_file([case_result("a-cpu-synthetic", 40.0), case_result("b-cpu-synthetic", 40.0)], environment=ENV)
    slower = dataclasses.replace(base.cases["a-cpu-synthetic"], energy_mj_per_image_passes=[60.0, 60.2, 59.9])
    cur = results_file([slower, base.cases["b-cpu-synthetic"]], environment={**ENV, "torch": "2.2.0"})
    cmp = compare_files(base, cur, parse_tolerances("energy=5%"))
    assert cmp.changes == {"a-cpu-synthetic": ["torch: 2.1.0 -> 2.2.0"]}


def test_the_dashboard_badge_says_why_and_what_changed(tmp_path):
    from pytest_e3p.report.dashboard import write_dashboard
    from pytest_e3p.storage import results
    from pytest_e3p.storage.history import CommitInfo, append_run

    case = case_result(
        "m-cpu-synthetic",
        40.0,
        verdict="inconclusive",
        change_vs_baseline=0.08,
        noise_vs_baseline=0.12,
        changes_vs_baseline=["torch: 2.1.0 -> 2.2.0"],
    )
    rf = results.ResultsFile(device=DEVICE, environment=ENV, protocol={"tolerances": {"energy": 0.05}}, cases={case.case_id: case})
    append_run(rf, tmp_path / "history", {"hostname": "h"}, commit=CommitInfo(sha="ab" * 20, branch="main", dirty=False, subject="s", source="git"))
    site = write_dashboard(tmp_path / "history", tmp_path / "site")
    page = site.index.read_text()
    assert "inconclusive: noise +/-12.0% &gt; change +8.0%" in page and "torch: 2.1.0 -&gt; 2.2.0" in page
