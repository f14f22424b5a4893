"""pytest glue: options, parametrization, fixtures, the regression gate and the end-of-run report.

A benchmark is any test that asks for the `e3p` fixture (or `e3p_case`): it is parametrized over
every model x device x dataset of the run, so each combination is its own test id.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import pytest

from .. import config as opts
from ..storage.results import FAILED, OK, MeasurementError
from ..text import error_line
from . import hookspecs

SESSION_KEY = pytest.StashKey["Any"]()
RUNNER_KEY = pytest.StashKey["Any"]()
_FINISH_LINES = pytest.StashKey[list]()  # what the end of the run wrote, for the summary


def pytest_addoption(parser: pytest.Parser) -> None:
    opts.add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "e3p(energy_tolerance=None, latency_tolerance=None, top1_tolerance=None): per-benchmark regression tolerances (fractions such as 0.08, or strings such as '8%'; top1 in points)",
    )
    # Validate at once when the user asked for pytest-e3p, so bad input is a usage error before
    # anything runs; other projects with the plugin installed pay nothing.
    if opts.explicitly_set(config) and not hasattr(config, "workerinput"):
        if _xdist_workers(config):
            raise pytest.UsageError(
                "pytest-e3p measures one case at a time on one device; under pytest-xdist every worker would measure "
                "at once and write its own part of the results: run the benchmarks without -n (or with -n 0)"
            )
        _session(config)


def _xdist_workers(config: pytest.Config) -> int:
    """How many pytest-xdist workers this run asks for (0 without xdist)."""
    if not config.pluginmanager.hasplugin("xdist"):
        return 0
    n = config.getoption("numprocesses", None)
    if n in ("auto", "logical"):
        return 2  # as many as the machine has: more than one
    try:
        return int(n or 0)
    except (TypeError, ValueError):
        return 0


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    """One line naming the device, its sensor and boundary, the thread count and the protocol."""
    e3p = config.stash.get(SESSION_KEY, None)
    if e3p is None:
        return None
    info = e3p.sensor.info if e3p.sensor else None
    energy = f"{info.kind} by {info.name} ({info.boundary})" if info else f"unavailable ({e3p.sensor_note})"
    p = e3p.protocol
    if p.name == "edgevit":
        shape = f"edgevit protocol: {p.passes} passes x {p.inferences} inferences of batch 1, background subtracted, {'/'.join(e3p.variants)}"
    else:
        shape = f"{p.passes} passes x {p.rounds} rounds of >= {p.min_round_s:g} s, batch {'/'.join(map(str, e3p.batch_sizes))}, {'/'.join(e3p.variants)}"
    lines = [f"e3p: device {e3p.device.name}, energy {energy}; torch threads {e3p.threads}; {shape}"]
    if config.pluginmanager.hasplugin("benchmark"):
        lines.append(
            "e3p: pytest-benchmark's table shows each case's rounds in seconds per image; its timing options "
            "(--benchmark-min-rounds, -max-time, -min-time, -timer, -warmup, -calibration-precision, -disable-gc) and the "
            "defaults in its header line do not apply to e3p cases, whose rounds the protocol times (--e3p-passes, --e3p-rounds, --e3p-min-round-s)"
        )
    return lines


class _PytestCache:
    """pytest's cache as the mapping screening.complexity_of wants."""

    def __init__(self, cache: Any):
        self._cache = cache

    def get(self, key: str, default: Any = None) -> Any:
        return self._cache.get(key, default)

    def __setitem__(self, key: str, value: Any) -> None:
        self._cache.set(key, value)


def _live_writer(config: pytest.Config):
    """A line to the terminal now, even from inside a test: output capture is suspended around it,
    as pytest's own live logging does, so the line is neither swallowed nor held until the end.
    The plugins are looked up at each write: the session can be created before the terminal
    reporter is registered."""

    def write(line: str) -> None:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            return
        capman = config.pluginmanager.get_plugin("capturemanager")
        with capman.global_and_fixture_disabled() if capman else contextlib.nullcontext():
            on_progress_line = reporter.currentfspath
            reporter.write_line(line)
            if isinstance(on_progress_line, os.PathLike):
                # pytest's progress line was interrupted mid-file: start it again with the file name,
                # so the test's letter does not stand alone
                reporter.write(os.path.relpath(on_progress_line, reporter.startpath) + " ")
                reporter.currentfspath = on_progress_line

    return write


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
    """The passes before the last, over every selected case, before the first test: their live
    lines come before pytest's progress line instead of inside it."""
    e3p = session.config.stash.get(SESSION_KEY, None)
    if e3p is None or session.config.option.collectonly or session.testsfailed or e3p.protocol.passes < 2:
        return
    cases = _cases_of(session)
    if cases:
        e3p.run_early_passes(cases)


def _session(config: pytest.Config):
    """The run's E3PSession, created on first use."""
    session = config.stash.get(SESSION_KEY, None)
    if session is None:
        from ..run.session import E3PSession, SetupError

        options = opts.read_options(config)
        cache = _PytestCache(config.cache) if getattr(config, "cache", None) is not None else None
        progress = _live_writer(config)
        try:
            session = E3PSession(options, cache, progress).start()
        except SetupError as exc:
            raise pytest.UsageError(str(exc)) from None
        config.stash[SESSION_KEY] = session
    return session


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "e3p_case" not in metafunc.fixturenames:
        return
    session = _session(metafunc.config)
    cases = session.cases()
    metafunc.config.hook.pytest_e3p_modify_cases(config=metafunc.config, cases=cases)
    metafunc.parametrize("e3p_case", cases, ids=[c.id for c in cases])


@pytest.fixture(scope="session")
def e3p_session(request: pytest.FixtureRequest):
    """The run: device, sensor, options, results so far."""
    return _session(request.config)


@pytest.fixture
def e3p_model(e3p_case, e3p_session):
    """The case's model, built with its weights, on the device, in eval mode (a LoadedModel)."""
    from ..models.build import WeightsError
    from ..run.session import CaseSkipped

    skip = fail = ""
    try:
        return e3p_session.load_model(e3p_case)
    except CaseSkipped as exc:  # a variant or image size this machine or model cannot take
        skip = str(exc)
    except WeightsError as exc:  # a bad checkpoint: its message names the file and the fix
        fail = str(exc)
    if skip:  # outside `except`: no chained traceback
        pytest.skip(skip)
    pytest.fail(fail, pytrace=False)


@pytest.fixture
def e3p_sensor(e3p_session):
    """The device's power sensor (None where energy is unavailable)."""
    return e3p_session.sensor


@pytest.fixture
def e3p(request: pytest.FixtureRequest, e3p_case, e3p_model, e3p_session):
    """The case runner: e3p.measure(benchmark), e3p.evaluate(), e3p.result."""
    from ..run.session import CaseRunner

    # Results and baselines hold one measurement per case: a second benchmark of the same case would
    # silently replace the first, so it is stopped before it measures anything.
    owner = e3p_session.owners.setdefault(e3p_case.id, request.node.nodeid)
    if owner != request.node.nodeid:
        pytest.fail(
            f"case {e3p_case.id} is already measured in this run by {owner}; results and baselines keep one "
            "measurement per case: select one of the two with -k, or run each in its own run with its own --e3p-results",
            pytrace=False,
        )
    if not e3p_session.early_done and e3p_session.protocol.passes > 1:
        e3p_session.run_early_passes(_cases_of(request.session))
    runner = CaseRunner(e3p_session, e3p_case, e3p_model, benchmark_fixture=lambda: _benchmark_fixture(request))
    request.node.stash[RUNNER_KEY] = runner
    return runner


def _benchmark_fixture(request: pytest.FixtureRequest):
    """pytest-benchmark's fixture where that plugin is active and enabled, else None: the suite runs
    without it (-p no:benchmark), and --benchmark-disable does not leave an unused fixture behind."""
    config = request.config
    if not config.pluginmanager.hasplugin("benchmark") or config.getoption("benchmark_disable", False):
        return None
    try:
        return request.getfixturevalue("benchmark")
    except pytest.FixtureLookupError:
        return None


def _cases_of(session: pytest.Session) -> list:
    """The cases the selected benchmarks will measure, in their order, each once."""
    seen: dict[str, Any] = {}
    for item in session.items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "e3p" in getattr(item, "fixturenames", ()) and "e3p_case" in callspec.params:
            case = callspec.params["e3p_case"]
            seen.setdefault(case.id, case)
    return list(seen.values())


MARKER_KEYWORDS = {"energy_tolerance": "energy", "latency_tolerance": "latency", "top1_tolerance": "top1"}


def _tolerances(item: pytest.Item, session):
    """The run's tolerances with the benchmark's `e3p` marker applied; a usage error for a marker
    keyword or value that would silently keep (or switch off) the gate."""
    from ..gate.baseline import ToleranceError, check_tolerance, parse_tolerances

    marker = item.get_closest_marker("e3p")
    if marker is None:
        return session.tolerances
    unknown = sorted(set(marker.kwargs) - set(MARKER_KEYWORDS))
    if unknown or marker.args:
        what = ", ".join(unknown) if unknown else f"positional arguments {marker.args!r}"
        raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.e3p takes only {', '.join(sorted(MARKER_KEYWORDS))} as keywords, not {what}")
    values = {}
    for key, metric in MARKER_KEYWORDS.items():
        value = marker.kwargs.get(key)
        if value is not None:
            try:
                if isinstance(value, str):  # "8%" reads as on the command line
                    values[metric] = getattr(parse_tolerances(f"{metric}={value}"), metric)
                else:
                    values[metric] = check_tolerance(metric, value, f"@pytest.mark.e3p({key}={value!r})")
            except ToleranceError as exc:
                raise pytest.UsageError(f"{item.nodeid}: {exc}") from None
    return session.tolerances.with_overrides(**values)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list) -> None:
    """Markers are checked before anything is measured; feasibility of the gate is said once."""
    e3p = config.stash.get(SESSION_KEY, None)
    if e3p is None:
        return
    for item in items:
        if "e3p_case" in getattr(item, "fixturenames", ()):
            _tolerances(item, e3p)
    write = _live_writer(config)
    for note in [*e3p.start_notes, *e3p.gate_notes()]:
        write(f"[e3p] {note}")
    if e3p.options.slowdown:
        write(f"[e3p] --e3p-slowdown {e3p.options.slowdown:g}: every measured forward pass does extra work (for testing the gate only)")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """After a benchmark's body: finish its result, record it, and fail the test on a regression."""
    runner = item.stash.get(RUNNER_KEY, None)
    try:
        outcome = yield
    except pytest.skip.Exception:
        raise
    except MeasurementError as exc:
        if runner is not None:
            _record(item, runner)
        message = str(exc)
        pytest.fail(message, pytrace=False)
    except BaseException as exc:
        if runner is not None:
            r = runner.result
            if r.status == OK:
                r.status, r.reason = FAILED, error_line(exc)
            _record(item, runner)
        raise
    if runner is not None and (runner.measured or runner.evaluated):
        regressions = _record(item, runner)
        if regressions:
            pytest.fail("E3P regression: " + "; ".join(c.describe() for c in regressions), pytrace=False)
    return outcome


def _record(item: pytest.Item, runner) -> list:
    """Finish the case's result (SAM and its notes), keep it, and return its regressions."""
    from ..gate.baseline import REGRESSED, IncompatibleBaseline

    runner.finalize()
    session = runner.session
    session.release(runner.case.id)  # its passes are done: its prepared variant is not needed again
    item.config.hook.pytest_e3p_case_result(config=item.config, result=runner.result)
    try:
        checks = session.record(runner.result, _tolerances(item, session))
    except IncompatibleBaseline as exc:
        pytest.fail(f"baseline refused: {exc}", pytrace=False)
    return [c for c in checks if c.verdict == REGRESSED]


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    session = config.stash.get(SESSION_KEY, None)
    if session is not None:
        machine_info["e3p_device"] = session.device_record()
        machine_info["e3p_energy"] = {k: v for k, v in session.protocol_record().items() if k in ("energy_kind", "energy_source", "boundary")}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    e3p = session.config.stash.get(SESSION_KEY, None)
    if e3p is None:
        return
    passed = exitstatus == pytest.ExitCode.OK and session.testsfailed == 0
    config = session.config
    session.config.stash[_FINISH_LINES] = e3p.finish(passed, lambda data: config.hook.pytest_e3p_update_json(config=config, results=data))
    if e3p.options.report is not None and e3p.results:
        from ..report.markdown import write_report

        try:
            written = write_report([e3p.results_file()], e3p.options.report, reference_model=e3p.options.reference_model)
        except OSError as exc:  # one line; the tables are still printed
            session.config.stash[_FINISH_LINES].append(f"report NOT written to {e3p.options.report}: {exc.strerror or exc}")
        else:
            session.config.stash[_FINISH_LINES].append(f"report written to {written}")


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    e3p = config.stash.get(SESSION_KEY, None)
    if e3p is None:
        return
    from ..report.sections import summary_sections, write_terminal

    lead = [line for line in (e3p.device.note, f"energy: {e3p.sensor_note}" if e3p.sensor_note else "") if line]
    finish_lines = config.stash.get(_FINISH_LINES, [])
    sections = summary_sections(
        e3p.stage1,
        e3p.results.values(),
        e3p.checks if e3p.baseline is not None else None,
        lead=lead,
        closing=finish_lines,
        table3_set=e3p.options.models == "edgevit-table3",
        baseline_ids=e3p.baseline.cases if e3p.baseline is not None else None,
    )
    write_terminal(terminalreporter, sections)
