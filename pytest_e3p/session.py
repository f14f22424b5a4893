"""One pytest-e3p run: the device and its sensor, the cases, their results, the baseline, the files.

The plugin (plugin.py) is thin glue around this; pytest-benchmark's BenchmarkSession plays the same
part there.
"""

from __future__ import annotations

import datetime
import platform
import statistics
import time
import warnings
import zlib
from collections.abc import Callable, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch

from . import __version__, data, gate, results, zoo
from .accuracy import default_workers, evaluate, make_loader
from .allocator import default_malloc, pin_glibc_malloc
from .baseline import (
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
    supported_tolerance_note,
)
from .benchmark_bridge import record_rounds
from .complexity import Complexity, model_input_size
from .devices import Device, DeviceError, resolve
from .measure import Protocol, SteadyState, run_protocol
from .metrics import netscore, sam
from .models import CHECKPOINT, RANDOM, Weights, build_model, checkpoint_path
from .options import Options
from .screening import Stage1Row, complexity_of, screen, stage1_row
from .sensors import ESTIMATE, EnergySensor, SensorFault, SensorUnavailable
from .zoo import ModelName, UnknownModel

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class SetupError(Exception):
    """Bad input found before anything is measured; the plugin turns it into a usage error."""


@dataclass(frozen=True)
class Case:
    """One (model x device x dataset) combination: one test id."""

    model: ModelName
    device: str
    dataset: data.DatasetSpec

    @property
    def id(self) -> str:
        return f"{self.model.case_id}-{self.device}-{self.dataset.name}"


@dataclass
class LoadedModel:
    """A case's model on its device, with where its weights came from and its stage-1 figures."""

    name: ModelName
    module: torch.nn.Module
    weights: Weights
    complexity: Complexity
    input_size: tuple[int, int, int]
    num_classes: int


class E3PSession:
    """The run. Building it only reads and checks the options (cheap, no side effects, testable on
    its own); start() opens the sensor, pins the process's threads and allocator, loads the baseline
    and screens the models."""

    def __init__(self, options: Options, cache: Any = None, progress: Callable[[str], None] | None = None):
        self.options = options
        # pytest's cache across runs; a dict within this run when it is off (-p no:cacheprovider)
        self.cache = cache if cache is not None else {}
        self.progress = progress or (lambda line: None)
        try:
            self.device: Device = resolve(options.device)
            self.models = zoo.resolve_models(options.models)
            self.datasets = data.parse_datasets(options.datasets)
            for spec in self.datasets:
                data.validate(spec)
            self.tolerances: Tolerances = parse_tolerances(options.tolerance)
            zoo.parse_model(options.reference_model)
        except (DeviceError, UnknownModel, data.DatasetError, ToleranceError) as exc:
            raise SetupError(str(exc)) from None
        batch = options.batch_size or self.device.default_batch_size
        self.protocol = Protocol(batch, options.rounds, options.passes, options.min_round_s, options.warmup_s, options.idle_s)
        self.threads = options.threads or torch.get_num_threads()
        self.allocator = default_malloc()
        self.dtype = DTYPES[options.precision]
        self.sensor: EnergySensor | None = None
        self.sensor_note = ""
        self.baseline: results.ResultsFile | None = None
        self.priors: dict[str, Any] = {}  # the baseline's pooled between-run noise, per metric
        self.stage1: list[Stage1Row] = []
        self._weights_warned = False
        self._versions = self.environment()
        self.results: dict[str, results.CaseResult] = {}
        self.owners: dict[str, str] = {}  # case id -> the test that measures it in this run
        self.checks: dict[str, list[Check]] = {}
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
        self._open_sensor()
        try:
            if self.options.baseline is not None:
                self._load_baseline(self.options.baseline)
            if self.options.screen == "pareto":
                self._screen()
        except BaseException:
            if self.sensor is not None:
                self.sensor.close()  # no sampler thread left behind by a usage error
            raise
        return self

    def _open_sensor(self) -> None:
        try:
            self.sensor, self.sensor_note = self.device.open_sensor(
                self.options.require_sensor, self.options.w_per_core, self.options.sample_hz, self.options.static_w
            )
        except SensorUnavailable as exc:
            raise SetupError(f"--e3p-require-sensor: no power sensor for --device {self.device.name}: {exc}") from None
        if self.sensor is not None:
            self.sensor.start()

    def reopen_sensor(self) -> None:
        """After a sensor fault: a fresh sensor for the next case, so the other cases go on."""
        if self.sensor is not None:
            self.sensor.close()
        try:
            self._open_sensor()
        except SetupError as exc:
            self.sensor, self.sensor_note = None, str(exc)

    @property
    def energy_kind(self) -> str:
        return self.sensor.info.kind if self.sensor else "unavailable"

    def _load_baseline(self, path: Path) -> None:
        try:
            self.baseline = results.load(path)
        except results.ResultsFileError as exc:
            raise SetupError(f"--e3p-baseline: {exc}") from None
        why = device_incompatibility(self.baseline, self.device_record()) or protocol_incompatibility(self.baseline.protocol, self.protocol_record())
        if why:
            raise SetupError(f"--e3p-baseline {path} cannot be compared with this run: {why}")
        self.priors = priors(self.baseline)

    def gate_notes(self) -> list[str]:
        """Said at the start: cases the gate could never fail with these counts, and baselines whose
        own noise is wider than the tolerance."""
        if self.baseline is None or self.tolerances.energy is None:
            return []
        notes = []
        for case in self.cases():
            base = self.baseline.cases.get(case.id)
            if base is None:
                continue
            why = gate_feasibility(base, self.protocol.passes)
            if why:
                return [f"the gate cannot fail: {why}"]
            note = supported_tolerance_note(base, self.protocol.passes, self.tolerances.energy, self.priors.get("energy"))
            if note:
                notes.append(note)
        return notes

    def _screen(self) -> None:
        rows = [stage1_row(m, complexity_of(m, self.cache)) for m in self.models]
        keep = [k.strip() for k in self.options.screen_keep.split(",") if k.strip()]
        self.stage1 = screen(rows, keep=keep)
        kept = {r.model for r in self.stage1 if r.kept}
        self.models = [m for m in self.models if m.full in kept]

    def cases(self) -> list[Case]:
        return [Case(m, self.device.name, d) for m in self.models for d in self.datasets]

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
        info = self.sensor.info if self.sensor else None
        return {
            "batch_size": self.protocol.batch_size,
            "passes": self.protocol.passes,
            "rounds": self.protocol.rounds,
            "threads": self.threads,
            "allocator": self.allocator,
            "slowdown": self.options.slowdown or None,
            "tolerances": self.tolerances_record(),
            "min_round_s": self.protocol.min_round_s,
            "warmup_s": self.protocol.warmup_s,
            "idle_s": self.protocol.idle_s,
            "precision": self.options.precision,
            "energy_kind": self.energy_kind,
            "energy_source": info.name if info else "unavailable",
            "boundary": info.boundary if info else "",
            "sensor_note": self.sensor_note,
            "limit": self.options.limit or None,
        }

    def results_file(self) -> results.ResultsFile:
        protocol = self.protocol_record()
        sources = sorted({f"{r.energy_kind} ({r.energy_source})" for r in self.results.values()})
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
        classes = data.num_classes(case.dataset)
        ckpt = None
        if self.options.checkpoints is not None:
            candidate = checkpoint_path(self.options.checkpoints, case.model, case.dataset.name)
            # A missing checkpoint is not fatal: energy and latency stay valid, top-1 says why not.
            ckpt = candidate if candidate.exists() else None
        # Random weights are the same in every pass and run: energy does not depend on weight values,
        # but denormal numbers and the like would make two draws differ.
        torch.manual_seed(zlib.crc32(case.model.full.encode()))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the weights fallback is reported once, by us
            net, weights = build_model(case.model, self.options.weights, ckpt, classes if classes != 1000 else None)
        if weights.source == RANDOM and self.options.weights != RANDOM and not self._weights_warned:
            self._weights_warned = True  # one warning per run, not one per model
            self.progress(f"[e3p] {weights.detail}; using random weights: energy and latency stay valid, top-1 is the reference figure")
        head = getattr(net, "num_classes", classes or 1000)
        cx = complexity_of(case.model, self.cache, built=net if head == 1000 else None)
        net = net.to(self.device.torch_device, dtype=self.dtype).eval()
        return LoadedModel(case.model, net, weights, cx, model_input_size(net), head)

    def new_result(self, case: Case, loaded: LoadedModel) -> results.CaseResult:
        ref = zoo.reference(case.model)
        info = self.sensor.info if self.sensor else None
        top1_ref = ref.top1 if ref else None
        return results.CaseResult(
            case_id=case.id,
            model=case.model.full,
            device=self.device.name,
            dataset=case.dataset.name,
            batch_size=self.protocol.batch_size,
            image_size=list(loaded.input_size),
            precision=self.options.precision,
            weights=loaded.weights.source,
            weights_detail=loaded.weights.detail,
            params_m=loaded.complexity.params_m,
            gmacs=loaded.complexity.gmacs,
            top1_ref=top1_ref,
            top1_ref_source=ref.source if ref else "",
            netscore=netscore(top1_ref, loaded.complexity.params_m, loaded.complexity.gmacs) if top1_ref else None,
            energy_kind=info.kind if info else "unavailable",
            energy_source=info.name if info else "unavailable",
            boundary=info.boundary if info else self.sensor_note,
            total_rail=info.total_rail if info else None,
            sam_alpha=self.options.sam_alpha,
            versions=self._versions,
            passes=self.protocol.passes,
            threads=self.threads,
        )

    # -- passes ------------------------------------------------------------------------------
    def steady_state(self, case: Case, loaded: LoadedModel) -> SteadyState:
        """One pass of the protocol's rounds on a case's model (random input of its size)."""
        gen = torch.Generator().manual_seed(0)
        x = torch.randn((self.protocol.batch_size, *loaded.input_size), generator=gen).to(self.device.torch_device, dtype=self.dtype)
        model = loaded.module
        with torch.inference_mode():
            return run_protocol(
                lambda: model(x),
                self.protocol.batch_size,
                self.device.synchronize,
                self.sensor,
                self.protocol,
                slowdown=self.options.slowdown,
                device=self.device.torch_device,
            )

    def run_early_passes(self, cases: list[Case]) -> None:
        """Passes 1 .. P-1 over every case, before the benchmarks run the last pass in their own body.

        Pass k covers all cases before pass k+1 starts, so a drift of the machine shows up as
        spread between passes instead of as a difference between the first and last cases."""
        if self.early_done:
            return
        self.early_done = True
        total = self.protocol.passes
        for k in range(1, total):
            for case in cases:
                if case.id in self.early_errors:
                    continue
                loaded: LoadedModel | None
                try:
                    loaded = self.load_model(case)
                    steady = self.steady_state(case, loaded)
                except SensorFault as exc:
                    self.early_errors[case.id] = f"sensor fault in pass {k}/{total}: {exc}"
                    self.reopen_sensor()
                    continue
                except Exception as exc:  # the case's own test reports it; the other cases go on
                    first = next(iter(str(exc).strip().splitlines()), "")
                    self.early_errors[case.id] = f"pass {k}/{total}: {type(exc).__name__}: {first}"
                    continue
                finally:
                    loaded = None  # free the model before the next case
                self.early.setdefault(case.id, []).append(steady)
                energy = steady.energy_mj_per_image
                shown = "" if energy is None else f", {energy:.4g} mJ/img" + (" (est.)" if self.energy_kind == ESTIMATE else "")
                self.progress(f"[e3p] pass {k}/{total} {case.id}: {steady.latency_ms_per_image:.4g} ms/img{shown}")

    def record(self, result: results.CaseResult, tolerances: Tolerances | None = None) -> list[Check]:
        """Keep a finished case; compare it with the baseline (with the run's tolerances unless a
        benchmark's marker gives its own). Returns the checks."""
        self.results[result.case_id] = result
        tol = tolerances or self.tolerances
        if tol.energy is not None and result.energy_spread is not None and result.energy_spread > tol.energy:
            result.unstable = True  # its passes alone spread wider than the tolerance
        if self.baseline is None or result.status != results.OK:
            return []
        base = self.baseline.cases.get(result.case_id)
        if base is None:
            result.verdict = "new"
            return []
        try:
            checks = compare_case(base, result, tol, self.priors)
        except IncompatibleBaseline as exc:
            result.status, result.reason = results.INVALID, str(exc)
            raise
        self.checks[result.case_id] = checks
        energy = next((c for c in checks if c.metric == "energy"), None)
        if energy is not None:
            result.change_vs_baseline, result.noise_vs_baseline = energy.change, energy.noise
            if energy.noise is not None and tol.energy is not None and energy.noise > tol.energy:
                result.unstable = True
        worst = [c.verdict for c in checks]
        result.verdict = next((v for v in (gate.REGRESSED, gate.INCONCLUSIVE, gate.IMPROVED) if v in worst), gate.UNCHANGED if checks else "")
        return checks

    # -- the end ---------------------------------------------------------------------------
    def finish(self, run_passed: bool, update_json: Callable[[dict[str, Any]], None] | None = None) -> list[str]:
        """Write the results file (always) and the baseline (only after a passing run).

        Returns lines for the terminal saying what was written or why not."""
        lines: list[str] = []
        if self.sensor is not None:
            self.sensor.close()
        if not self.results:
            return lines
        rf = self.results_file()
        if self.options.results is not None:
            lines.append(_save(rf, self.options.results, "results", update_json))
        if self.options.history is not None:
            from . import history

            try:
                lines.append(f"run appended to the history: {history.append_run(rf, self.options.history)}")
            except OSError as exc:
                lines.append(f"history NOT written to {self.options.history}: {exc.strerror or exc}")
        target = self.options.save_baseline
        if target is not None:
            bad = [cid for cid, r in self.results.items() if r.status != results.OK]
            if not (run_passed and not bad):
                why = f"{len(bad)} case(s) did not pass" if bad else "the run did not pass"
                lines.append(f"baseline NOT written ({why}); {target} is unchanged")
                return lines
            old = None
            if target.exists():
                try:
                    old = results.load(target)
                except results.ResultsFileError as exc:
                    lines.append(f"baseline NOT written: the existing {target} cannot be read ({exc}); move it away to start a new one")
                    return lines
            merged, notes = merge_runs(old, rf, self.options.baseline_runs)
            lines.append(_save(merged, target, "baseline", update_json))
            lines += [f"baseline: {n}" for n in notes]
        return lines


def _save(rf: results.ResultsFile, path: Path, what: str, update_json: Callable[[dict[str, Any]], None] | None = None) -> str:
    """Write a file; one line saying where, or why not (a full disk must not lose the tables)."""
    try:
        results.save(rf, path, update_json)
    except OSError as exc:
        return f"{what} NOT written to {path}: {exc.strerror or exc}"
    return f"{what} written to {path}"


class CaseRunner:
    """What the `e3p` fixture gives a benchmark: measure(), evaluate(), and the result record."""

    def __init__(self, session: E3PSession, case: Case, loaded: LoadedModel, benchmark_fixture: Callable[[], Any] | None = None):
        self.session, self.case, self.loaded = session, case, loaded
        self._benchmark_fixture = benchmark_fixture  # pytest-benchmark's, looked up only when measuring
        self.result = session.new_result(case, loaded)
        self.measured = False
        self.evaluated = False

    def measure(self, benchmark: Any = None) -> results.CaseResult:
        """Steady-state energy, latency and power of the case's model: the last pass of the
        protocol's rounds, joined with the passes the session ran before over every case.

        Where pytest-benchmark is active, the rounds' per-image latencies also appear in its table and
        JSON, and the energy figures in its extra_info (pass its `benchmark` fixture, or let the
        runner look it up)."""
        s, r = self.session, self.result
        if benchmark is None and self._benchmark_fixture is not None:
            benchmark = self._benchmark_fixture()
        if self.case.id in s.early_errors:
            r.status, r.reason = results.INVALID, s.early_errors[self.case.id]
            raise results.MeasurementError(f"{self.case.id}: {r.reason}")
        r.temperature_c_start = s.device.temperature_c()
        try:
            last = s.steady_state(self.case, self.loaded)
        except SensorFault as exc:
            r.status, r.reason = results.INVALID, f"sensor fault: {exc}"
            s.reopen_sensor()
            raise
        r.temperature_c_end = s.device.temperature_c()
        passes = [*s.early.get(self.case.id, []), last]
        sources = {p.sensor.name if p.sensor else "unavailable" for p in passes}
        if len(sources) > 1:
            # a sensor fault in an earlier pass switched the run to another source: never mix them
            r.status, r.reason = results.INVALID, f"energy sources differ between passes ({', '.join(sorted(sources))}) after a sensor fault"
            raise results.MeasurementError(f"{self.case.id}: {r.reason}")
        rounds = [x for p in passes for x in p.rounds]
        r.passes = len(passes)
        r.latency_ms_per_image_samples = [x.latency_ms_per_image for x in rounds]
        r.energy_mj_per_image_samples = [x.energy_mj_per_image for x in rounds if x.energy_mj_per_image is not None]
        r.latency_ms_per_image_passes = [p.latency_ms_per_image for p in passes]
        r.energy_mj_per_image_passes = [p.energy_mj_per_image for p in passes if p.energy_mj_per_image is not None]
        r.latency_ms_per_image = statistics.median(r.latency_ms_per_image_passes)
        r.energy_mj_per_image = statistics.median(r.energy_mj_per_image_passes) if r.energy_mj_per_image_passes else None
        r.latency_spread = gate.spread(r.latency_ms_per_image_passes)
        r.energy_spread = gate.spread(r.energy_mj_per_image_passes)
        joined = SteadyState(rounds, last.sensor)  # every pass's rounds: the power over all of them
        r.power_w = joined.power_w
        r.rails_mj_per_image = last.rails_mj_per_image
        idle = [p.idle_power_w for p in passes if p.idle_power_w is not None]
        if idle and r.energy_kind != ESTIMATE:
            r.idle_power_w = statistics.median(idle)
        self.measured = True
        record_rounds(benchmark, joined, r)
        return r

    def evaluate(self) -> results.CaseResult:
        """Top-1/top-5 on the case's dataset, where it has labels and the weights are trained;
        the reference top-1 (labelled so) otherwise."""
        s, r, case = self.session, self.result, self.case
        self.evaluated = True
        if not case.dataset.has_labels:
            return self._reference_top1("the synthetic dataset has no labels")
        if self.loaded.num_classes != data.num_classes(case.dataset) or (case.dataset.kind != data.IMAGENET and self.loaded.weights.source != CHECKPOINT):
            r.top1_source = results.NO_TOP1
            where = (
                f"{checkpoint_path(s.options.checkpoints, case.model, case.dataset.name)} does not exist"
                if s.options.checkpoints is not None
                else f"--e3p-checkpoints DIR with {case.model.arch}_{case.dataset.name}.pth"
            )
            r.reason = f"{case.dataset.name} needs a fine-tuned checkpoint: {where} (see `python -m pytest_e3p finetune`)"
            return r
        if self.loaded.weights.source == RANDOM:
            return self._reference_top1("random weights (pretrained ones unavailable)")
        model = self.loaded.module
        transform = data.eval_transform(case.dataset, model)
        dataset = data.open_dataset(case.dataset, transform.per_image)
        subset = data.limited(dataset, s.options.limit or None)
        workers = s.options.workers if s.options.workers >= 0 else default_workers(s.device.torch_device)
        loader = make_loader(subset, s.protocol.batch_size, workers, pin_memory=s.device.torch_device.startswith("cuda"))
        last = [time.monotonic()]

        def progress(done: int, total: int, elapsed: float) -> None:
            if time.monotonic() - last[0] >= s.options.progress_s and done < total:
                last[0] = time.monotonic()
                rate = done / elapsed
                s.progress(f"[e3p] {case.id}: {done}/{total} images, {rate:.1f} img/s, {(total - done) / rate:.0f} s left")

        try:
            ev = evaluate(model, loader, s.device.torch_device, s.device.synchronize, s.sensor, s.dtype, progress, transform.normalize)
        except SensorFault as exc:
            r.status, r.reason = results.INVALID, f"sensor fault during the accuracy pass: {exc}"
            s.reopen_sensor()
            raise
        except Exception as exc:
            # a loader process wraps the error in its traceback text: find our one line in it
            line = next((ln.split("CorruptImage: ", 1)[-1] for ln in str(exc).splitlines() if "cannot be decoded" in ln), None)
            if line is None:
                raise
            r.status, r.reason = results.FAILED, f"accuracy pass stopped: {line}"
            raise results.MeasurementError(f"{case.id}: {r.reason}") from None
        r.top1, r.top5, r.top1_source = ev.top1, ev.top5, results.MEASURED_TOP1
        r.eval_images, r.eval_duration_s, r.eval_energy_mj = ev.images, ev.duration_s, ev.energy_mj
        n_subset, n_all = len(cast(Sized, subset)), len(cast(Sized, dataset))
        if n_subset < n_all:
            r.eval_subset = f"{n_subset} of {n_all} images, evenly spaced (--e3p-limit)"
        return r

    def _reference_top1(self, why: str) -> results.CaseResult:
        r = self.result
        if r.top1_ref is not None and self.case.dataset.kind in (data.SYNTHETIC, data.IMAGENET):
            r.top1, r.top1_source = r.top1_ref, results.REFERENCE_TOP1
            ref = zoo.reference(self.case.model)
            r.top5 = ref.top5 if ref else None
        else:
            r.top1_source = results.NO_TOP1
        r.sam_note = why
        return r

    def finalize(self) -> results.CaseResult:
        """SAM from whatever the case measured, with notes saying what it rests on."""
        r = self.result
        if not self.evaluated and r.status == results.OK:
            self._reference_top1("accuracy was not evaluated")
        notes = []
        if r.top1 is None or r.energy_mj_per_image is None:
            r.sam = None
            notes.append("no SAM: " + ("top-1 unavailable" if r.top1 is None else "energy unavailable"))
        else:
            r.sam = sam(r.top1 / 100.0, r.energy_mj_per_image, r.sam_alpha)
            if r.sam is None:
                notes.append(f"SAM undefined: energy {r.energy_mj_per_image:.3g} mJ/image <= 1 mJ")
            if r.top1_source == results.REFERENCE_TOP1:
                notes.append("SAM on reference top-1")
            if r.energy_kind == ESTIMATE:
                notes.append("SAM on estimated energy")
        r.sam_note = "; ".join(n for n in [r.sam_note, *notes] if n)
        return r
