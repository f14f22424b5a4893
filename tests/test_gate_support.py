"""What the data support: the smallest regression a baseline catches, and the runs or passes it would
take to catch one at the tolerance."""

from fakes.results import case_result, results_file

from pytest_e3p.gate import compare_files, parse_tolerances, stats
from pytest_e3p.gate.support import projected_noise, support

QUIET = [[40.0, 40.2, 39.9], [40.5, 40.3, 40.6], [39.8, 39.7, 40.0]]  # runs within about 1 %
NOISY = [[40.0, 41.0, 39.0], [44.0, 43.0, 45.0], [37.0, 38.0, 36.5]]  # runs 8 % apart


def test_a_quiet_baseline_catches_its_tolerance_and_says_no_more():
    s = support("a", "energy", QUIET, 3, 0.10)
    assert s.meets_tolerance and s.catches == 0.10
    assert s.text() == f"a: energy catches +10.0% (noise +/-{s.noise:.1%}, tolerance 10%)"


def test_a_noisy_baseline_names_what_it_catches_and_the_runs_that_would_reach_the_tolerance():
    s = support("b", "energy", NOISY, 3, 0.30)
    assert not s.meets_tolerance and s.catches == s.noise > 0.30
    assert s.runs_needed is not None and s.runs_needed > 3
    # the projection at the count it names does reach the tolerance, one fewer does not
    assert projected_noise(NOISY, 3, s.runs_needed) <= 0.30 < projected_noise(NOISY, 3, s.runs_needed - 1)
    assert f"b: energy catches +{s.noise:.1%}" in s.text() and f"needs about {s.runs_needed} baseline runs" in s.text()
    assert "estimated from the noise measured" in s.text()


def test_the_projection_at_todays_counts_is_the_gates_own_noise():
    assert abs(projected_noise(NOISY, 3, 3) - stats.noise(NOISY, 3).threshold) < 1e-12
    one_run = [[40.0, 42.0, 38.5]]
    assert abs(projected_noise(one_run, 3, 1) - stats.noise(one_run, 3).threshold) < 1e-12


def test_between_run_noise_alone_wider_than_the_tolerance_is_out_of_reach():
    s = support("b", "energy", NOISY, 3, 0.10)  # runs 8 % apart: no count of runs brings the noise to 10 %
    assert s.runs_needed is None and s.passes_needed is None and "out of reach by more runs or passes: reduce the noise" in s.text()


def test_a_1_run_baseline_says_between_run_noise_is_not_measured_and_passes_help():
    s = support("c", "energy", [[40.0, 40.4, 39.8]], 3, 0.05)
    assert not s.between_runs and s.passes_needed is not None and s.passes_needed > 3
    assert "--e3p-passes" in s.text() and "between-run noise is not measured with 1 baseline run" in s.text()


def test_compare_lists_what_the_data_support_per_case():
    base = results_file([case_result("a-cpu-synthetic", 40.0)], protocol={"passes": 3})
    cmp = compare_files(base, base, parse_tolerances("energy=5%"))
    assert [s.case_id for s in cmp.support] == ["a-cpu-synthetic"]


def test_compare_says_first_what_a_noisy_baseline_supports_and_last_what_the_data_support(tmp_path, capsys):
    from pytest_e3p.cli import main
    from pytest_e3p.storage import results

    noisy = case_result("a-cpu-synthetic", 40.0, energy_mj_per_image_passes=[34.0, 46.0, 40.0])  # a 1-run baseline, passes 15 % apart
    results.save(results_file([noisy], protocol={"passes": 3}), tmp_path / "base.json")
    results.save(results_file([case_result("a-cpu-synthetic", 40.0)], protocol={"passes": 3}), tmp_path / "cur.json")
    assert main(["compare", str(tmp_path / "base.json"), str(tmp_path / "cur.json")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("note: a-cpu-synthetic: its baseline's noise (from its passes: between-run noise is not measured with 1 run) is +/-")
    assert "is what the data support" in out[0]
    assert out[-1].startswith("what the data support: a-cpu-synthetic: energy catches +")
