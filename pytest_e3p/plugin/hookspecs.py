"""Extension points: implement these in a conftest.py or a plugin."""

from __future__ import annotations

import pytest


@pytest.hookspec
def pytest_e3p_modify_cases(config: pytest.Config, cases: list) -> None:
    """Called with the list of cases (model x device x dataset) before parametrization; remove or
    reorder items in place to change what is measured."""


@pytest.hookspec
def pytest_e3p_case_result(config: pytest.Config, result) -> None:
    """Called with each case's CaseResult once it is final: after the test and after the baseline
    comparison, so its verdict, `unstable` flag and change against the baseline are set. Export it, add notes,
    or push it to a dashboard; it is the record the results file keeps."""


@pytest.hookspec
def pytest_e3p_update_json(config: pytest.Config, results: dict) -> None:
    """Called with each results (or baseline) file as a JSON-ready dict just before it is written:
    add your own top-level fields (CI job, hardware notes); they are kept when a baseline is
    refreshed. pytest-benchmark's pytest_benchmark_update_json plays the same part."""
