"""The hooks that need the run: one object, registered with the session once the session exists, as
pytest's junitxml registers its LogXML. It never sees a run without a session, so no hook asks
whether there is one."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from ..hardware.sensors.null import measures_energy
from ..storage.results import FAILED, MeasurementError
from ..text import error_line

if TYPE_CHECKING:
    from ..gate.baseline import Tolerances
    from ..run.runner import CaseRunner
    from ..run.session import E3PSession

RUNNER_KEY = pytest.StashKey["CaseRunner"]()  # the item's case runner, from the `e3p` fixture


class E3PPlugin:
    """The run's hooks, around its E3PSession."""

    def __init__(self, config: pytest.Config, session: E3PSession):
        self.config, self.session = config, session
        self.finish_lines: list[str] = []  # what the end of the run wrote, for the summary

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        config.pluginmanager.unregister(self)

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        """One line naming the device, its sensor and boundary, the thread count and the protocol."""
        e3p = self.session
        sensor = e3p.sensor
        assert sensor is not None  # the plugin is registered with a started session
        info = sensor.info
        energy = f"{info.kind} by {info.name} ({info.boundary})" if measures_energy(sensor) else f"unavailable ({info.boundary})"
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

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> None:
        """The passes before the last, over every selected case, before the first test: their live
        lines come before pytest's progress line instead of inside it."""
        if session.config.option.collectonly or session.testsfailed or self.session.protocol.passes < 2:
            return
        cases = cases_of(session)
        if cases:
            self.session.run_early_passes(cases)

    @pytest.hookimpl(trylast=True)  # after any plugin that reorders (pytest-randomly): the grouping must hold
    def pytest_collection_modifyitems(self, session: pytest.Session, config: pytest.Config, items: list) -> None:
        """Each fp32 case's test is followed by its variants' (the last pass runs in the tests'
        bodies, so this is what puts a variant right after its reference there, as the earlier passes
        do); markers are checked before anything is measured; feasibility of the gate is said once."""
        items[:] = variants_after_reference(items)
        e3p = self.session
        for item in items:
            if "e3p_case" in getattr(item, "fixturenames", ()):
                tolerances(item, e3p)
        write = live_writer(config)
        for note in [*e3p.start_notes, *e3p.gate_notes()]:
            write(f"[e3p] {note}")
        if e3p.options.slowdown:
            write(f"[e3p] --e3p-slowdown {e3p.options.slowdown:g}: every measured forward pass does extra work (for testing the gate only)")

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        """A case whose test is skipped, in its setup (a variant, size or provider this machine or
        model cannot take) or in its body, is kept in the results with its reason: every case the
        run asked for is accounted for, without -rs."""
        report = yield
        case = case_of(item) if "e3p" in getattr(item, "fixturenames", ()) else None  # a benchmark's, as cases_of
        if case is not None and report.skipped and call.excinfo is not None and call.excinfo.errisinstance(pytest.skip.Exception):
            result = self.session.record_skipped(case, str(getattr(call.excinfo.value, "msg", "") or call.excinfo.value))
            if result is not None:
                item.config.hook.pytest_e3p_case_result(config=item.config, result=result)
        return report

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item):
        """After a benchmark's body: finish its result, record it, and fail the test on a regression."""
        runner = item.stash.get(RUNNER_KEY, None)
        try:
            outcome = yield
        except pytest.skip.Exception:
            raise  # recorded as a skipped case by pytest_runtest_makereport, with its reason
        except MeasurementError as exc:
            if runner is not None:
                self._record(item, runner)
            pytest.fail(str(exc), pytrace=False)
        except BaseException as exc:
            if runner is not None:
                runner.fail(FAILED, error_line(exc))
                self._record(item, runner)
            raise
        if runner is not None and (runner.measured or runner.evaluated):
            regressions = self._record(item, runner)
            if regressions:
                pytest.fail("E3P regression: " + "; ".join(c.describe() for c in regressions), pytrace=False)
        return outcome

    def _record(self, item: pytest.Item, runner: CaseRunner) -> list:
        """Finish the case's result, keep it and compare it with the baseline, hand the final record
        to pytest_e3p_case_result, and return its regressions."""
        from ..gate.baseline import REGRESSED, IncompatibleBaseline

        result = runner.final_result()
        if runner.sustained_run is not None:
            self.session.sustained_runs[result.case_id] = runner.sustained_run
        tol = tolerances(item, self.session)
        try:
            checks = self.session.record(result, tol)
        except IncompatibleBaseline as exc:
            item.config.hook.pytest_e3p_case_result(config=item.config, result=result)
            pytest.fail(f"baseline refused: {exc}", pytrace=False)
        if runner.measured and self.session.needs_confirmation(result.case_id):
            # --e3p-confirm: more passes now, with the model loaded; the test reports the final verdict
            checks = self.session.confirm(runner.case, runner.loaded, runner.got.passes, runner.final_result, tol)
            result = self.session.results[result.case_id]
        item.config.hook.pytest_e3p_case_result(config=item.config, result=result)
        return [c for c in checks if c.verdict == REGRESSED]

    @pytest.hookimpl(optionalhook=True)
    def pytest_benchmark_update_machine_info(self, config: pytest.Config, machine_info: dict) -> None:
        machine_info["e3p_device"] = self.session.device_record()
        machine_info["e3p_energy"] = {k: v for k, v in self.session.protocol_record().items() if k in ("energy_kind", "energy_source", "boundary")}

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Write the run's outputs. One that was asked for and could not be written makes a run that
        would have exited 0 exit 3 (pytest.ExitCode.INTERNAL_ERROR); the tables still print."""
        e3p = self.session
        passed = exitstatus == pytest.ExitCode.OK and session.testsfailed == 0
        config = session.config
        self.finish_lines = e3p.finish(passed, lambda data: config.hook.pytest_e3p_update_json(config=config, results=data))
        if e3p.options.report is not None and e3p.results:
            from ..report.markdown import write_report

            try:
                written = write_report(
                    [e3p.results_file()], e3p.options.report, reference_model=e3p.options.reference_model, budget_mj=e3p.options.energy_budget_mj or None
                )
            except OSError as exc:  # one line; the tables are still printed
                self.finish_lines.append(e3p.lost(f"report NOT written to {e3p.options.report}: {exc.strerror or exc}"))
            else:
                self.finish_lines.append(f"report written to {written}")
        if e3p.options.export and e3p.results:
            # after the results file and the report: an export reads what they hold, and its failure loses neither
            from ..export import ExportContext, export_results
            from ..storage.history import commit_info

            commit = commit_info(config.rootpath) if any(kind == "mlflow" for kind, _ in e3p.options.export) else None  # MLflow tags it
            ctx = ExportContext(e3p.options.results, e3p.options.report, commit)
            for done in export_results(e3p.results_file(), e3p.options.export, ctx):
                self.finish_lines.append(e3p.lost(done.line) if done.failed else done.line)
        if e3p.unwritten and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            # A requested output was lost (a full disk): CI must not go green on it. INTERNAL_ERROR (3),
            # not TESTS_FAILED (1), which the gate uses for regressions, nor USAGE_ERROR (4), which
            # means the command line was wrong. A run already failed or interrupted keeps its status.
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
            self.finish_lines.append(f"exit status {int(pytest.ExitCode.INTERNAL_ERROR)}: {len(e3p.unwritten)} requested output(s) NOT written (above)")

    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
        e3p = self.session
        from ..report.sections import summary_sections, write_terminal

        lead = [line for line in (e3p.device.note, f"energy: {e3p.sensor_note}" if e3p.sensor_note else "") if line]
        sections = summary_sections(
            e3p.stage1,
            e3p.results.values(),
            e3p.checks if e3p.baseline is not None else None,
            lead=lead,
            closing=self.finish_lines,
            table3_set=e3p.options.models == "edgevit-table3",
            baseline_ids=e3p.baseline.cases if e3p.baseline is not None else None,
            budget_mj=e3p.options.energy_budget_mj or None,
        )
        write_terminal(terminalreporter, sections)


def case_of(item: pytest.Item) -> Any:
    """The e3p case (run.case.Case) an item is parametrized with, or None."""
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("e3p_case") if callspec is not None else None


def cases_of(session: pytest.Session) -> list:
    """The cases the selected benchmarks will measure, in their order, each once."""
    seen: dict[str, Any] = {}
    for item in session.items:
        case = case_of(item)
        if case is not None and "e3p" in getattr(item, "fixturenames", ()):
            seen.setdefault(case.id, case)
    return list(seen.values())


def variants_after_reference(items: list) -> list:
    """`items` with each test of a variant moved right after the same test of its fp32 reference
    (same function and other parameters; same model, device, dataset, batch and image size). Other
    items keep their order."""
    from ..run.within_pass import grouped, reference_key

    keys, variants = {}, {}
    for i, item in enumerate(items):
        case = case_of(item)
        if case is None:
            continue
        head, _, params = item.nodeid.partition("[")
        keys[i] = (head, params.replace(case.id, "", 1), *reference_key(case))
        variants[i] = case.variant
    return grouped(items, keys, variants) if keys else items


def live_writer(config: pytest.Config) -> Callable[[str], None]:
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


MARKER_KEYWORDS = {"energy_tolerance": "energy", "latency_tolerance": "latency", "top1_tolerance": "top1"}


def tolerances(item: pytest.Item, session: E3PSession) -> Tolerances:
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
