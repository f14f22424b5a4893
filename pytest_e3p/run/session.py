"""One pytest-e3p run: the device and its bench, the cases, their results, the baseline, the files.

The plugin is thin glue around this; pytest-benchmark's BenchmarkSession plays the same part there.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .. import __version__
from ..config import Options
from ..gate import Circumstances, Recorded, Verdict, changes, final_verdict, look_alpha
from ..gate.baseline import (
    Check,
    IncompatibleBaseline,
    ToleranceError,
    Tolerances,
    compare_case,
    device_incompatibility,
    gate_feasibility,
    merge_runs,
    parse_tolerances,
    priors,
    protocol_incompatibility,
    supported_tolerance_notes,
    supports,
    unfit_message,
    unfit_to_gate,
)
from ..hardware.allocator import default_malloc, pin_glibc_malloc
from ..hardware.devices import Device, DeviceError, resolve
from ..hardware.sensors import ESTIMATE, EnergySensor, SensorFault
from ..measure.protocols import EDGEVIT, Protocol, SteadyState
from ..models import datasets as data
from ..models import zoo
from ..models.screening import Stage1Row, complexity_of, screen, stage1_row
from ..models.zoo import UnknownModel
from ..remote.boards import RemoteDevice, is_remote, resolve_board
from ..storage import results
from ..storage.files import locked
from ..text import error_line
from .bench import Bench, NoSensor
from .case import Case, CaseSkipped, case_matrix
from .loading import LoadedModel, ModelLoader
from .record import CaseSetup
from .runner import RunnerContext
from .within_pass import compare_variants, pass_order

if TYPE_CHECKING:
    from ..measure.memory import PeakMemory
    from ..measure.sustained import SustainedRun


class SetupError(Exception):
    """Bad input found before anything is measured; the plugin turns it into a usage error."""


class E3PSession:
    """The run. Building it only reads and checks the options (cheap, no side effects, testable on
    its own); start() opens the bench (sensor, thermal monitor, peak memory), pins the process's
    threads and allocator, loads the baseline and screens the models."""

    def __init__(self, options: Options, cache: Any = None, progress: Callable[[str], None] | None = None):
        self.options = options
        # pytest's cache across runs; a dict within this run when it is off (-p no:cacheprovider)
        self.cache = cache if cache is not None else {}
        self.progress = progress or (lambda line: None)
        try:
            # a board over SSH (an ssh:// URL, or a board of the devices file), else a device of this machine
            remote = is_remote(options.device, options.devices_file)
            self.device: Device = resolve_board(options.device, options.devices_file) if remote else resolve(options.device)
            self.models = zoo.resolve_models(options.models)
            self.datasets = data.parse_datasets(options.datasets)
            for spec in self.datasets:
                data.validate(spec)
            self.tolerances: Tolerances = parse_tolerances(options.tolerance)
            zoo.parse_model(options.reference_model)
            self.variants = self._variants(options)
        except (DeviceError, UnknownModel, data.DatasetError, ToleranceError, ValueError) as exc:
            raise SetupError(str(exc)) from None
        # the protocol's batch: the paper's 1 for edgevit; else the device's unless one value is given
        default = 1 if options.protocol == EDGEVIT else self.device.default_batch_size
        batch = options.batch_size[0] or default if len(options.batch_size) == 1 else default
        self.protocol = Protocol(
            batch, options.rounds, options.passes, options.min_round_s, options.warmup_s, options.idle_s, options.protocol, options.inferences
        )
        self.batch_sizes = list(dict.fromkeys(b or default for b in options.batch_size))
        self.threads = options.threads or torch.get_num_threads()
        self.allocator = default_malloc()
        self.bench: Bench | None = None  # from start()
        self.loader = ModelLoader(self.device, options.weights, options.checkpoints, self.cache, self.progress)
        self.sustained_runs: dict[str, SustainedRun] = {}  # case id -> its sustained run, plotted at the end
        # said once at the start of the run (plugin's pytest_collection_modifyitems)
        self.start_notes = (
            [f"--e3p-precision is deprecated: measuring it as --e3p-variants {options.precision} (case ids end in -{options.precision})"]
            if options.precision != "fp32"
            else []
        )
        cpus = available_cpus()
        if options.threads is not None and cpus and options.threads > cpus:
            self.start_notes.append(
                f"--e3p-threads {options.threads} is more than the {cpus} CPUs this process may run on: the threads share them, "
                f"and latency and energy measure the contention; give --e3p-threads {cpus} or fewer"
            )
        if options.attribution != "off":
            from ..measure.attribution import cost_note

            self.start_notes.append(cost_note(options.attribution, self.protocol))
        self.baseline: results.ResultsFile | None = None
        self.priors: dict[str, Any] = {}  # the baseline's pooled between-run noise, per metric
        self.stage1: list[Stage1Row] = []
        self._versions = self.environment()
        self.results: dict[str, results.CaseResult] = {}
        self.owners: dict[str, str] = {}  # case id -> the test that measures it in this run
        self.checks: dict[str, list[Check]] = {}
        self.confirmed: dict[str, int] = {}  # case id -> confirmation passes it took (--e3p-confirm)
        # requested outputs that could not be written (a full disk, a folder gone): the run then exits non-zero
        self.unwritten: list[str] = []
        # passes before the last, measured for every case before the first benchmark body runs
        self.early: dict[str, list[SteadyState]] = {}
        self.early_errors: dict[str, str] = {}
        self.early_done = False
        self.started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")

    # -- setup -------------------------------------------------------------------------------
    def start(self) -> E3PSession:
        """Everything with an effect on the machine or the file system, before the first case."""
        if self.options.threads is not None:
            torch.set_num_threads(self.options.threads)
        self.threads = torch.get_num_threads()
        if self.options.malloc == "fixed":
            self.allocator = pin_glibc_malloc()
        self.bench = self._open_bench()
        try:
            if self.options.baseline is not None:
                self._load_baseline(self.options.baseline)
            if self.options.screen == "pareto":
                self._screen()
        except BaseException:
            self.bench.close()  # no sampler thread left behind by a usage error
            raise
        return self

    def _open_bench(self) -> Bench:
        """The device, its sensor and monitors: a board over SSH brings its own (none of this host's
        instruments measure it); SetupError when the sensor cannot be opened."""
        if isinstance(self.device, RemoteDevice):
            from .remote_bench import RemoteBench

            try:
                return RemoteBench(self.device, self.protocol, self.options, self.progress)  # type: ignore[return-value]
            except NoSensor as exc:
                raise SetupError(str(exc)) from None
        memory = self._open_memory()
        from ..measure.thermal import open_thermal

        # the device the model runs on: a Jetson board whose torch has no CUDA runs on its CPU
        kind = "cpu" if self.device.torch_device == "cpu" else self.device.kind
        thermal = open_thermal(kind, self.device.cuda_index, self.device.identity.get("uuid"))
        thermal.start()
        try:
            return Bench(self.device, self.protocol, self.options, thermal, memory)
        except NoSensor as exc:
            thermal.close()
            raise SetupError(str(exc)) from None

    def _open_memory(self) -> PeakMemory | None:
        """The peak-memory reader, or None with a start note saying why."""
        from ..measure.memory import MemoryUnavailable, PeakMemory

        try:
            memory = PeakMemory(self.device.kind, self.device.torch_device)
            memory.reset()  # a probe: a machine without /proc fails here, not in every case
            memory.read()
        except (MemoryUnavailable, OSError) as exc:  # the cases then record no peak memory
            self.start_notes.append(f"peak memory unavailable: {exc}")
            return None
        return memory

    @property
    def sensor(self) -> EnergySensor | None:
        """The bench's power sensor (a NullSensor where energy is unavailable); None before start()."""
        return self.bench.sensor if self.bench is not None else None

    @sensor.setter
    def sensor(self, sensor: EnergySensor) -> None:
        assert self.bench is not None, "the session is not started"
        self.bench.sensor = sensor

    @property
    def sensor_note(self) -> str:
        """Why energy is an estimate or unavailable ("" where it is measured)."""
        return self.bench.sensor_note if self.bench is not None else ""

    @property
    def energy_kind(self) -> str:
        return self.sensor.info.kind if self.sensor is not None else "unavailable"

    def _load_baseline(self, path: Path) -> None:
        try:
            self.baseline = results.load(path)
        except results.ResultsFileError as exc:
            raise SetupError(f"--e3p-baseline: {exc}") from None
        if self.baseline.upgrade_note:
            self.start_notes.append(f"--e3p-baseline {self.baseline.upgrade_note}")
        why = device_incompatibility(self.baseline, self.device_record()) or protocol_incompatibility(self.baseline.protocol, self.protocol_record())
        if why:
            raise SetupError(f"--e3p-baseline {path} cannot be compared with this run: {why}")
        self.priors = priors(self.baseline)

    def gate_notes(self) -> list[str]:
        """Said at the start: cases the gate could never fail with these counts, and, for each case
        whose baseline cannot meet its own tolerance, the tolerance its data support."""
        if self.baseline is None or (self.tolerances.energy is None and self.tolerances.latency is None):
            return []
        ids = [case.id for case in self.cases() if case.id in self.baseline.cases]
        for cid in ids:
            why = gate_feasibility(self.baseline.cases[cid], self.protocol.passes)
            if why:
                return [f"the gate cannot fail: {why}"]
        return supported_tolerance_notes(self.baseline, ids, self.protocol.passes, self.tolerances, self.priors)

    def _screen(self) -> None:
        rows = [stage1_row(m, complexity_of(m, self.cache)) for m in self.models]
        keep = [k.strip() for k in self.options.screen_keep.split(",") if k.strip()]
        self.stage1 = screen(rows, keep=keep)
        kept = {r.model for r in self.stage1 if r.kept}
        self.models = [m for m in self.models if m.full in kept]

    @staticmethod
    def _variants(options: Options) -> list[str]:
        """--e3p-variants, with the deprecated --e3p-precision as its variant."""
        from ..variants.catalog import parse_variants

        variants = parse_variants(options.variants)
        if options.precision != "fp32":
            if variants != ["fp32"]:
                raise ValueError(f"--e3p-precision {options.precision} and --e3p-variants {options.variants}: give the precision as a variant only")
            variants = [options.precision]
        return variants

    def cases(self) -> list[Case]:
        return case_matrix(self.models, self.device.name, self.datasets, self.variants, self.batch_sizes, self.options.image_size)

    # -- records -----------------------------------------------------------------------------
    def device_record(self) -> dict[str, Any]:
        return {"name": self.device.name, "kind": self.device.kind, "identity": self.device.identity}

    def environment(self) -> dict[str, str]:
        """Versions that make results comparable (recorded per file and per case)."""
        import timm

        return {"torch": torch.__version__, "timm": timm.__version__, "pytest_e3p": __version__, "python": platform.python_version()}

    def tolerances_record(self) -> dict[str, float | None]:
        return {"energy": self.tolerances.energy, "latency": self.tolerances.latency, "top1": self.tolerances.top1}

    def protocol_record(self) -> dict[str, Any]:
        sensor = self.sensor
        edgevit = self.protocol.name == EDGEVIT
        return {
            "protocol": self.protocol.name,
            "model_set": self.options.models if self.options.models in zoo.MODEL_SETS else None,
            "inferences": self.protocol.inferences if edgevit else None,
            "energy_subtracts_background": edgevit,
            "batch_size": self.batch_sizes[0] if len(self.batch_sizes) == 1 else self.batch_sizes,
            "image_size": None if self.options.image_size == (None,) else list(self.options.image_size),
            "passes": self.protocol.passes,
            "rounds": self.protocol.rounds,
            "threads": self.threads,
            "allocator": self.allocator,
            "slowdown": self.options.slowdown or None,
            "tolerances": self.tolerances_record(),
            "min_round_s": self.protocol.min_round_s,
            "warmup_s": self.protocol.warmup_s,
            "idle_s": self.protocol.idle_s,
            "variants": self.variants,
            "energy_kind": self.energy_kind,
            "energy_source": sensor.info.name if sensor is not None else "unavailable",
            "boundary": sensor.info.boundary if sensor is not None else "",
            "sensor_note": self.sensor_note,
            "limit": self.options.limit or None,
        }

    def results_file(self) -> results.ResultsFile:
        protocol = self.protocol_record()
        # a skipped case measured nothing: it names no source
        sources = sorted({f"{r.energy_kind} ({r.energy_source})" for r in self.results.values() if r.status != results.SKIPPED})
        if len(sources) > 1:
            # a sensor fault switched later cases to another source: the file says so, per case too
            protocol["energy_kind"] = "mixed"
            protocol["energy_sources"] = sources
        return results.ResultsFile(
            device=self.device_record(),
            environment=self.environment(),
            protocol=protocol,
            cases=dict(self.results),
            screening=[r.to_dict() for r in self.stage1],
            created=self.started,
        )

    # -- a case ------------------------------------------------------------------------------
    def load_model(self, case: Case) -> LoadedModel:
        """The case's model on the device in the case's form, built once and kept until release();
        CaseSkipped where the case cannot run here."""
        return self.loader.load(case)

    def release(self, case_id: str) -> None:
        """Drop a case's model: after its test, or after each pass where peak memory is budgeted, so
        no case's peak holds another case's models."""
        self.loader.release(case_id)

    def runner_context(self, case: Case, loaded: LoadedModel) -> RunnerContext:
        """What a CaseRunner of `case` needs from the run, as one value."""
        assert self.bench is not None, "the session is not started"
        setup = CaseSetup(
            case,
            loaded,
            self.device.name,
            self.bench.sensor.info,
            self.protocol,
            self.threads,
            self._versions,
            self.options.sam_alpha,
            carbon_g_per_kwh=self.options.carbon_g_per_kwh,
            price_per_kwh=self.options.price_per_kwh,
        )
        early = tuple(self.early.get(case.id, []))
        return RunnerContext(self.bench, self.options, self.progress, setup, early, self.early_errors.get(case.id))

    # -- passes ------------------------------------------------------------------------------
    def run_early_passes(self, cases: list[Case]) -> None:
        """Passes 1 .. P-1 over every case, before the benchmarks run the last pass in their own body.

        Pass k covers all cases before pass k+1 starts, so a drift of the machine shows up as
        spread between passes instead of as a difference between the first and last cases; within
        a pass each fp32 case is followed by its variants (the order of the tests, which the plugin
        groups the same way), so a variant's ratio to fp32 is taken back to back in every pass."""
        if self.early_done:
            return
        self.early_done = True
        assert self.bench is not None, "the session is not started"
        total = self.protocol.passes
        cases = pass_order(cases)
        for k in range(1, total):
            for case in cases:
                if case.id in self.early_errors:
                    continue
                try:
                    loaded = self.load_model(case)
                    if loaded.broken:
                        continue  # a broken variant is reported by its test, never measured
                    steady = self.bench.steady_state(case, loaded)
                except CaseSkipped:
                    continue  # its test skips, saying why
                except SensorFault as exc:
                    self.early_errors[case.id] = f"sensor fault in pass {k}/{total}: {exc}"
                    self.bench.reopen_sensor()
                    continue
                except Exception as exc:  # the case's own test reports it; the other cases go on
                    self.early_errors[case.id] = f"pass {k}/{total}: {error_line(exc)}"
                    continue
                finally:
                    if self.options.max_memory_mb:
                        self.release(case.id)  # built again for the next pass: peaks hold one case's models
                self.early.setdefault(case.id, []).append(steady)
                energy = steady.energy_mj_per_image
                shown = "" if energy is None else f", {energy:.4g} mJ/img" + (" (est.)" if self.energy_kind == ESTIMATE else "")
                self.progress(f"[e3p] pass {k}/{total} {case.id}: {steady.latency_ms_per_image:.4g} ms/img{shown}")

    def skipped_result(self, case: Case, reason: str) -> results.CaseResult:
        """The record of a requested case that did not run here: what was asked and why not, and no
        figure (every measured field None or empty; no passes)."""
        px = case.image_size or zoo.default_image_size(case.model)
        return results.CaseResult(
            case_id=case.id,
            model=case.model.full,
            device=self.device.name,
            dataset=case.dataset.name,
            batch_size=case.batch_size,
            image_size=[3, px, px],
            # the dtype a variant computes in is known only once it is prepared: only the eager ones say it
            precision=case.variant if case.variant in ("fp32", "fp16", "bf16") else "",
            variant=case.variant,
            weights="",
            passes=0,
            protocol=self.protocol.name,
            sam_alpha=self.options.sam_alpha,
            status=results.SKIPPED,
            reason=reason,
        )

    def record_skipped(self, case: Case, reason: str) -> results.CaseResult | None:
        """Keep a case whose test was skipped, with its reason; None where the case already has a
        record (another benchmark measured it: a measurement is never replaced by a skip)."""
        if case.id in self.results:
            return None
        result = self.skipped_result(case, reason)
        self.record(result)
        return result

    def record(self, result: results.CaseResult, tolerances: Tolerances | None = None, look: int = 1) -> list[Check]:
        """Keep a finished case; compare it with the baseline (with the run's tolerances unless a
        benchmark's marker gives its own), and a variant with its fp32 reference. Returns the checks.
        A skipped case is kept and never compared. `look`: 1, or 1 + the confirmation passes
        measured so far (each look at its share of the false-alarm level, gate.look_alpha)."""
        self.results[result.case_id] = result
        compare_variants(self.results)  # the reference ran first (the test order); finish() completes the rest
        tol = tolerances or self.tolerances
        if tol.energy is not None and result.energy_spread is not None and result.energy_spread > tol.energy:
            result.unstable = True  # its passes alone spread wider than the tolerance
        if self.baseline is None or result.status != results.OK:
            return []
        base = self.baseline.cases.get(result.case_id)
        checks: list[Check] = []
        if base is not None:
            try:
                checks = compare_case(base, result, tol, self.priors, look_alpha(look, self.options.confirm))
            except IncompatibleBaseline as exc:
                result.status, result.reason = results.INVALID, str(exc)
                raise
        final = final_verdict(checks, Circumstances.of(result, base))
        result.verdict = final.verdict
        if base is None:
            return []
        self.checks[result.case_id] = checks = final.checks
        if final.verdict not in (Verdict.UNCHANGED, Verdict.NEW, Verdict.NOT_COMPARED):
            b = self.baseline
            result.changes_vs_baseline = changes(
                Recorded(base, b.device, b.environment, b.protocol), Recorded(result, self.device_record(), self._versions, self.protocol_record())
            )
        energy = next((c for c in checks if c.metric == "energy"), None)
        if energy is not None:
            result.change_vs_baseline, result.noise_vs_baseline = energy.change, energy.noise
            if energy.noise is not None and tol.energy is not None and energy.noise > tol.energy:
                result.unstable = True
        return checks

    def needs_confirmation(self, case_id: str) -> bool:
        """Whether a case's energy or latency came out inconclusive against the baseline for its
        noise (not for throttling, which more passes of a hot device do not settle)."""
        return any(c.verdict == Verdict.INCONCLUSIVE and not c.throttled and c.metric != "top1" for c in self.checks.get(case_id, []))

    def confirm(
        self, case: Case, loaded: LoadedModel, passes: list[SteadyState], build: Callable[[], results.CaseResult], tolerances: Tolerances | None = None
    ) -> list[Check]:
        """--e3p-confirm: measure an inconclusive case again, one pass at a time, up to N passes,
        until its verdict is decided; each look at its share of the false-alarm level.

        Runs in the case's test body right after its last pass (the model is loaded, the test's
        outcome follows the final verdict). `passes` is the case's list of passes, extended in place;
        `build` makes its record from them. Returns the final checks (the record is the session's)."""
        assert self.bench is not None, "the session is not started"
        n_max = self.options.confirm
        checks = self.checks.get(case.id, [])
        n = 0
        while n < n_max and self.needs_confirmation(case.id):
            try:
                passes.append(self.bench.steady_state(case, loaded))
            except SensorFault as exc:
                self.progress(f"[e3p] confirming {case.id}: stopped after {n} pass(es): sensor fault: {exc}")
                self.bench.reopen_sensor()
                break
            n += 1
            result = build()
            result.confirm_passes = n
            checks = self.record(result, tolerances, look=n + 1)
            energy = next((c for c in checks if c.metric == "energy"), None)
            shown = f": {energy.label}" if energy is not None else ""
            self.progress(f"[e3p] confirming {case.id}: pass {n}/{n_max}{shown}")
        if n:
            self.confirmed[case.id] = n
        return checks

    def confirmation_lines(self) -> list[str]:
        """Which cases --e3p-confirm measured again, how many passes each took, and the outcome."""
        if not self.confirmed:
            return []
        each = ", ".join(f"{cid} {n} pass{'es' if n != 1 else ''} -> {self.results[cid].verdict}" for cid, n in sorted(self.confirmed.items()))
        return [f"confirmed (--e3p-confirm {self.options.confirm}, false-alarm level held at {look_alpha(1, 0):g} over the looks): {each}"]

    def support_lines(self) -> list[str]:
        """What the data support: per compared case, the smallest regression this baseline catches,
        and the baseline runs or passes it would take to reach the tolerance."""
        if self.baseline is None:
            return []
        lines = []
        for cid, r in sorted(self.results.items()):
            base = self.baseline.cases.get(cid)
            if base is None or r.status != results.OK or cid not in self.checks:
                continue
            lines += [s.text() for s in supports(base, r.passes, self.tolerances, self.priors, r)]
        return [f"what the data support: {line}" for line in lines]

    # -- the end ---------------------------------------------------------------------------
    def finish(self, run_passed: bool, update_json: Callable[[dict[str, Any]], None] | None = None) -> list[str]:
        """Write the results file (always) and the baseline (only after a passing run).

        Returns lines for the terminal saying what was written or why not."""
        lines: list[str] = []
        if self.bench is not None:
            self.bench.close()
        if not self.results:
            return lines
        compare_variants(self.results)  # variants whose reference was recorded after them
        lines += self._skipped_baseline_lines()
        lines += self.confirmation_lines()
        lines += self.support_lines()
        rf = self.results_file()
        if self.options.results is not None:
            lines.append(self._save(rf, self.options.results, "results", update_json))
        lines += self._sustained_plots()
        if self.options.history is not None:
            from ..storage import history

            try:
                lines.append(f"run appended to the history: {history.append_run(rf, self.options.history)}")
            except OSError as exc:
                lines.append(self.lost(f"history NOT written to {self.options.history}: {exc.strerror or exc}"))
        target = self.options.save_baseline
        if target is not None:
            # a skipped case is not a failure of the run, and never a measured run of a baseline
            bad = [cid for cid, r in self.results.items() if r.status not in (results.OK, results.SKIPPED)]
            if not (run_passed and not bad):
                why = f"{len(bad)} case(s) did not pass" if bad else "the run did not pass"
                lines.append(f"baseline NOT written ({why}); {target} is unchanged")
                return lines
            try:
                measured = {cid: r for cid, r in rf.cases.items() if r.status != results.SKIPPED}
                with locked(target):  # from reading the old baseline to replacing it: a concurrent run waits
                    # a skipped case stays out: the baseline keeps its earlier record, as for a case not run
                    lines += self._save_baseline(dataclasses.replace(rf, cases=measured), target, update_json)
            except OSError as exc:  # the lock file cannot be made
                lines.append(self.lost(f"baseline NOT written to {target}: {exc.strerror or exc}"))
        return lines

    def _save_baseline(self, rf: results.ResultsFile, target: Path, update_json: Callable[[dict[str, Any]], None] | None) -> list[str]:
        """Add this run to the baseline at target (merged with its earlier runs); lines saying so."""
        old = None
        if target.exists():
            try:
                old = results.load(target)
            except results.ResultsFileError as exc:
                return [self.lost(f"baseline NOT written: the existing {target} cannot be read ({exc}); move it away to start a new one")]
        merged, notes = merge_runs(old, rf, self.options.baseline_runs)
        if old is not None and old.upgrade_note:
            notes.insert(0, f"previous {old.upgrade_note}")
        # fit to gate: a baseline whose noise is wider than the tolerance would pass any regression
        unfit = unfit_to_gate(merged, list(rf.cases), self.protocol.passes, self.tolerances)
        if unfit and not self.options.save_noisy_baseline:
            return [self.lost(f"{unfit_message(unfit, forced=False)}; {target} is unchanged")]
        written = [self._save(merged, target, "baseline", update_json), *(f"baseline: {n}" for n in notes)]
        return [*written, unfit_message(unfit, forced=True)] if unfit else written

    def _skipped_baseline_lines(self) -> list[str]:
        """One line per baseline case that this run skipped: it was not compared, and why."""
        if self.baseline is None:
            return []
        return [
            f"{cid}: not compared: skipped ({r.reason})"
            for cid, r in sorted(self.results.items())
            if r.status == results.SKIPPED and cid in self.baseline.cases
        ]

    def lost(self, line: str) -> str:
        """Note a requested output that could not be written; the line, for the terminal."""
        self.unwritten.append(line)
        return line

    def _save(self, rf: results.ResultsFile, path: Path, what: str, update_json: Callable[[dict[str, Any]], None] | None = None) -> str:
        """Write a file; one line saying where, or why not (a full disk must not lose the tables)."""
        try:
            results.save(rf, path, update_json)
        except OSError as exc:
            return self.lost(f"{what} NOT written to {path}: {exc.strerror or exc}")
        return f"{what} written to {path}"

    def _sustained_plots(self) -> list[str]:
        """A plot per sustained run (power, temperature, clock, latency over time), into the report
        folder or beside the results file."""
        if not self.sustained_runs:
            return []
        from ..measure.sustained import plot, plot_name

        folder = self.options.report or (self.options.results.parent if self.options.results else Path("."))
        written = []
        for case_id, run in self.sustained_runs.items():
            path = folder / plot_name(case_id)  # the name the report links
            try:
                plot(run, path)
            except ImportError as exc:
                return [f"sustained plots not drawn: {exc}"]
            except OSError as exc:
                return [self.lost(f"sustained plots NOT written to {folder}: {exc.strerror or exc}")]
            written.append(str(path))
        return [f"sustained plots written: {', '.join(written)}"]


def available_cpus() -> int | None:
    """The CPUs this process may run on: its affinity mask (taskset, a container's cpuset) where the
    platform has one, else the machine's count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count()
