"""What the plugin costs a project whose e3p benchmarks are not selected (issue 29: about 3.5 s at
every start, 0.46 s without the plugin's cases). Not timed here (scripts/bench_startup.py prints the
figures): what is checked is what the time went to, torch and timm imported at collection, in a
fresh interpreter, as a user's `pytest -k plain` runs."""

import json

import pytest

PROJECT = {
    "test_mixed.py": """
def test_plain():
    assert True


def test_case_is_real(e3p_case):
    # the case a selected benchmark gets: the run's own Case, not an id standing in for it
    assert type(e3p_case).__name__ == "Case" and e3p_case.model.full.startswith("vit_small_patch16_224")
""",
    # which heavy modules the run imported, written after it (sys.modules at unconfigure)
    "conftest.py": """
import json
import sys


def pytest_unconfigure(config):
    with open("imported.json", "w") as f:
        json.dump(sorted(m for m in ("torch", "timm") if m in sys.modules), f)
""",
}


def collected_ids(result) -> list[str]:
    return sorted(line for line in result.outlines if "::" in line)


def imported(pytester) -> list[str]:
    return json.loads((pytester.path / "imported.json").read_text())


@pytest.fixture
def project(pytester):
    pytester.makepyfile(**PROJECT)
    return pytester


def test_a_run_selecting_only_plain_tests_imports_neither_torch_nor_timm(project):
    # a first collection builds the case list (torch and timm: the models' names and sizes come
    # from timm) and keeps its ids in pytest's cache
    first = project.runpytest_subprocess("--collect-only", "-q")
    assert first.ret == 0, first.stdout.str()
    ids = collected_ids(first)
    assert "test_mixed.py::test_case_is_real[vit_small_patch16_224-cpu-synthetic]" in ids and len(ids) == 14  # paper13 + the plain test

    plain = project.runpytest_subprocess("-q", "-k", "plain")
    plain.assert_outcomes(passed=1, deselected=13)
    assert imported(project) == []  # the e3p cases were collected by id; no run was started

    again = project.runpytest_subprocess("--collect-only", "-q")
    assert collected_ids(again) == ids  # the same test ids from the cache

    # a selected case runs with the real Case (its test asserts it), the run started for it
    chosen = project.runpytest_subprocess("-q", "-k", "is_real and vit_small")
    chosen.assert_outcomes(passed=1, deselected=13)
    assert imported(project) == ["timm", "torch"]


def test_a_stale_cached_case_is_one_usage_error_and_the_next_run_recovers(project):
    assert project.runpytest_subprocess("--collect-only", "-q").ret == 0
    cached = project.path / ".pytest_cache/v/e3p/case-ids"
    entry = json.loads(cached.read_text())
    entry["ids"][0] = "gone_model-cpu-synthetic"  # as if the models' names changed since the cache was written
    cached.write_text(json.dumps(entry))

    stale = project.runpytest_subprocess("-q", "-k", "gone_model")
    assert stale.ret == pytest.ExitCode.USAGE_ERROR
    err = stale.stderr.str()
    assert "case gone_model-cpu-synthetic, from the case list pytest-e3p cached" in err and "run again" in err and "Traceback" not in err
    again = project.runpytest_subprocess("--collect-only", "-q")
    assert again.ret == 0 and not any("gone_model" in i for i in collected_ids(again))
