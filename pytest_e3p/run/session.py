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

from .. import __version__
from ..config import Options
from ..gate import Circumstances, final_verdict
from ..gate import stats as gate
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
    supported_tolerance_note,
)
from ..hardware.allocator import default_malloc, pin_glibc_malloc
from ..hardware.devices import Device, DeviceError, resolve
from ..hardware.sensors import ESTIMATE, EnergySensor, SensorFault, SensorUnavailable
from ..measure.accuracy import default_workers, evaluate, make_loader
from ..measure.protocols import EDGEVIT, Protocol, Round, SteadyState, run_edgevit, run_protocol
from ..metrics import netscore, sam
from ..models import datasets as data
from ..models import zoo
from ..models.build import CHECKPOINT, RANDOM, Weights, build_model, checkpoint_path
from ..models.complexity import Complexity, count_gmacs, count_params_m, model_input_size
from ..models.screening import Stage1Row, complexity_of, screen, stage1_row
from ..models.zoo import ModelName, UnknownModel
from ..plugin.benchmark_bridge import record_rounds
from ..storage import results
from ..text import error_line, first_line, slug


class SetupError(Exception):
    """Bad input found before anything is measured; the plugin turns it into a usage error."""


EAGER = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}  # variants that are a dtype of the eager model


class CaseSkipped(Exception):
    """A case that cannot run here (a variant whose library or device is missing, a model that cannot
    take the image size): its test is skipped with this one-line reason."""


@dataclass(frozen=True)
class Case:
    """One (model x device x dataset x variant x batch x image size) combination: one test id.

    The id names a variant other than fp32, and the batch and the image size where their option
    lists several values (each value is then a case), so a run without the axes keeps the ids, and
    baselines, it always had."""

    model: ModelName
    device: str
    dataset: data.DatasetSpec
    variant: str = "fp32"
    batch_size: int = 16
    image_size: int | None = None  # pixels; None: the model's own
    batch_axis: bool = False  # name the batch in the id
    size_axis: bool = False  # name the image size in the id

    @property
    def id(self) -> str:
        parts = [self.model.case_id, self.device, self.dataset.name]
        if self.variant != "fp32":
            parts.append(self.variant)
        if self.batch_axis:
            parts.append(f"bs{self.batch_size}")
        if self.size_axis:
            parts.append(f"{self.image_size or zoo.default_image_size(self.model)}px")
        return "-".join(parts)


@dataclass
class LoadedModel:
    """A case's model on its device, with where its weights came from and its stage-1 figures.

    `module` is the eager model (the fp32 reference of a variant); `forward` runs the case's form of
    it (the variant) on a batch of `input_dtype`."""

    name: ModelName
    module: torch.nn.Module
    weights: Weights
    complexity: Complexity
    input_size: tuple[int, int, int]
    num_classes: int
    forward: Callable[[torch.Tensor], Any] | None = None
    input_dtype: torch.dtype = torch.float32
    variant: Any = None  # the variants.PreparedVariant, for a non-eager variant
    agreement: Any = None  # its variants.Agreement with the fp32 eager model

    def __post_init__(self) -> None:
        if self.forward is None:
            self.forward = self.module


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
        self.memory: Any = None  # memory.PeakMemory, from start()
        self.thermal: Any = None  # thermal.ThermalMonitor, from start()
        self.sustained_runs: dict[str, Any] = {}  # case id -> sustained.SustainedRun, plotted at the end
        self.prepared: dict[str, LoadedModel] = {}
        # said once at the start of the run (plugin.pytest_collection_modifyitems)
        self.start_notes = (
            [f"--e3p-precision is deprecated: measuring it as --e3p-variants {options.precision} (case ids end in -{options.precision})"]
            if options.precision != "fp32"
            else []
        )  # non-eager variants: prepared once per run
        self.skipped: dict[str, str] = {}  # case id -> why it cannot run here
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
        from ..measure.memory import MemoryUnavailable, PeakMemory

        try:
            self.memory = PeakMemory(self.device.kind, self.device.torch_device)
            self.memory.reset()  # a probe: a machine without /proc fails here, not in every case
            self.memory.read()
        except (MemoryUnavailable, OSError) as exc:  # the cases then record no peak memory
            self.memory = None
            self.start_notes.append(f"peak memory unavailable: {exc}")
        from ..measure.thermal import open_thermal

        # the device the model runs on: a Jetson board whose torch has no CUDA runs on its CPU
        kind = "cpu" if self.device.torch_device == "cpu" else self.device.kind
        self.thermal = open_thermal(kind, self.device.cuda_index, self.device.identity.get("uuid"))
        self.thermal.start()
        self._open_sensor()
        try:
            if self.options.baseline is not None:
                self._load_baseline(self.options.baseline)
            if self.options.screen == "pareto":
                self._screen()
        except BaseException:
            if self.sensor is not None:
                self.sensor.close()  # no sampler thread left behind by a usage error
            self.thermal.close()
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
        if self.baseline.upgrade_note:
            self.start_notes.append(f"--e3p-baseline {self.baseline.upgrade_note}")
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
        out = []
        for m in self.models:
            own_size = zoo.default_image_size(m)
            for d in self.datasets:
                for v in self.variants:
                    sizes = list(dict.fromkeys(None if size in (None, own_size) else size for size in self.options.image_size))
                    for b in self.batch_sizes:
                        for px in sizes:
                            # a size is named in the id where the option lists several, or where it is not the model's own
                            out.append(Case(m, self.device.name, d, v, b, px, len(self.batch_sizes) > 1, len(sizes) > 1 or px is not None))
        return out

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
        """The case's model on the device in the case's form. A non-eager variant is prepared (and
        checked against fp32) once per run; CaseSkipped where the case cannot run here."""
        if case.id in self.skipped:
            raise CaseSkipped(self.skipped[case.id])
        if case.id in self.prepared:
            return self.prepared[case.id]
        try:
            loaded = self._load(case)
        except CaseSkipped as exc:
            self.skipped[case.id] = str(exc)
            raise
        if loaded.variant is not None:
            self.prepared[case.id] = loaded
        return loaded

    def _load(self, case: Case) -> LoadedModel:
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
            net, weights = build_model(case.model, self.options.weights, ckpt, classes if classes != 1000 else None, case.image_size)
        if weights.source == RANDOM and self.options.weights != RANDOM and not self._weights_warned:
            self._weights_warned = True  # one warning per run, not one per model
            self.progress(f"[e3p] {weights.detail}; using random weights: energy and latency stay valid, top-1 is the reference figure")
        head = getattr(net, "num_classes", classes or 1000)
        size = (3, case.image_size, case.image_size) if case.image_size else model_input_size(net)
        if case.image_size:
            _check_runs_at(net, case)
            # counted on the 1000-class model, as at the model's own size, so the two compare
            counted = net if head == 1000 else build_model(case.model, RANDOM, None, None, case.image_size)[0]
            cx = Complexity(count_params_m(counted), count_gmacs(counted, size), size)
        else:
            cx = complexity_of(case.model, self.cache, built=net if head == 1000 else None)
        if case.variant == "fp32":  # the eager reference; every other variant is checked against it
            net = net.to(self.device.torch_device).eval()
            return LoadedModel(case.model, net, weights, cx, size, head)
        return self._prepare_variant(case, net, weights, cx, size, head)

    def release(self, case_id: str) -> None:
        """Drop a case's prepared variant: after its test, or after each pass where peak memory is
        budgeted, so no case's peak holds another case's models."""
        self.prepared.pop(case_id, None)

    def _sample_images(self, case: Case, net: torch.nn.Module, size: tuple[int, int, int], n: int) -> torch.Tensor:
        """n fp32 images of the case's dataset, for calibrating a variant and checking it against
        fp32: seeded random ones for synthetic data, else the first n images of the dataset through
        the model's eval transform (the dataset is opened once)."""
        if case.dataset.kind == data.SYNTHETIC:
            return torch.randn((n, *size), generator=torch.Generator().manual_seed(1))
        return data.sample_images(case.dataset, net, size, n)

    def _batch(self, case: Case, size: tuple[int, int, int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The measured input: a seeded random batch of the case's size on the device (energy and
        latency do not depend on the pixel values)."""
        gen = torch.Generator().manual_seed(0)
        return torch.randn((case.batch_size, *size), generator=gen).to(self.device.torch_device, dtype=dtype)

    def _prepare_variant(self, case: Case, net: torch.nn.Module, weights: Weights, cx: Complexity, size: tuple[int, int, int], head: int) -> LoadedModel:
        from .. import variants

        dev = self.device.torch_device
        net = net.to(dev).eval()
        images = self._sample_images(case, net, size, 64).to(dev)
        calibration = list(images[:32].split(8))
        check = images[32:]  # not the calibration images
        example = self._batch(case, size)
        with torch.inference_mode():
            reference = net(check).float()
        try:
            # a Jetson whose torch has no CUDA runs its variants on the CPU, as its fp32 model
            prepared = variants.prepare(case.variant, net, example, calibration, "cpu" if dev == "cpu" else self.device.kind, dev)
        except variants.VariantUnavailable as exc:
            raise CaseSkipped(str(exc)) from None
        except Exception as exc:  # an export or conversion the runtime cannot do for this model
            first = first_line(exc)
            lines = [ln.strip() for ln in str(exc).splitlines() if "no conversion rule" in ln.lower() or "unsupported" in ln.lower()]
            raise CaseSkipped(f"{case.variant} could not be prepared for {case.model.full}: {type(exc).__name__}: {(lines or [first])[0][:200]}") from None
        with torch.inference_mode():
            logits = fixed_batch(prepared.forward, prepared.batch_size)(check).float()
        agreement = variants.agreement(reference, logits, prepared.bound)
        if prepared.params_m is not None or prepared.gmacs is not None:  # pruning changes both, ToMe the MACs only
            cx = Complexity(
                prepared.params_m if prepared.params_m is not None else cx.params_m, prepared.gmacs if prepared.gmacs is not None else cx.gmacs, size
            )
        self.progress(f"[e3p] {case.id}: {prepared.detail}; prepared in {prepared.prepare_s:.1f} s; {agreement_text(agreement)}")
        # the fp32 reference is not kept: only its data config is needed later (the eval transform),
        # and its weights would count in the variant's peak memory
        return LoadedModel(case.model, _ConfigOnly(net), weights, cx, size, head, prepared.forward, prepared.input_dtype, prepared, agreement)

    def new_result(self, case: Case, loaded: LoadedModel) -> results.CaseResult:
        ref = zoo.reference(case.model)
        info = self.sensor.info if self.sensor else None
        top1_ref = ref.top1 if ref else None
        return results.CaseResult(
            case_id=case.id,
            model=case.model.full,
            device=self.device.name,
            dataset=case.dataset.name,
            batch_size=case.batch_size,
            image_size=list(loaded.input_size),
            precision=_precision(loaded),
            variant=case.variant,
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
            protocol=self.protocol.name,
            **_variant_fields(loaded),
        )

    # -- passes ------------------------------------------------------------------------------
    def steady_state(self, case: Case, loaded: LoadedModel) -> SteadyState:
        """One pass of the protocol's rounds on a case's model (random input of its size), with the
        pass's peak memory: the resident model, its input batch and what running it takes."""
        if self.memory is not None:
            self.memory.reset()
        x = self._batch(case, loaded.input_size, loaded.input_dtype)
        model = loaded.forward
        assert model is not None  # set in LoadedModel.__post_init__
        sync, dev = self.device.synchronize, self.device.torch_device
        with torch.inference_mode():
            if self.protocol.name == EDGEVIT:
                steady = run_edgevit(lambda: model(x), sync, self.sensor, self.protocol, self.options.slowdown, dev, thermal=self.thermal)
            else:
                steady = run_protocol(
                    lambda: model(x), case.batch_size, sync, self.sensor, self.protocol, slowdown=self.options.slowdown, device=dev, thermal=self.thermal
                )
        if self.memory is not None:
            steady.memory = self.memory.read()
        return steady

    def sustained(self, case: Case, loaded: LoadedModel) -> Any:
        """--e3p-sustained-s: the case's model run back to back for that long, in windows."""
        from ..measure.sustained import run_sustained

        x = self._batch(case, loaded.input_size, loaded.input_dtype)
        model = loaded.forward
        assert model is not None
        with torch.inference_mode():
            return run_sustained(
                lambda: model(x), case.batch_size, self.device.synchronize, self.sensor, self.options.sustained_s, self.options.sustained_window_s, self.thermal
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
                    if loaded.agreement is not None and not loaded.agreement.ok:
                        continue  # a broken variant is reported by its test, never measured
                    steady = self.steady_state(case, loaded)
                except CaseSkipped:
                    continue  # its test skips, saying why
                except SensorFault as exc:
                    self.early_errors[case.id] = f"sensor fault in pass {k}/{total}: {exc}"
                    self.reopen_sensor()
                    continue
                except Exception as exc:  # the case's own test reports it; the other cases go on
                    self.early_errors[case.id] = f"pass {k}/{total}: {error_line(exc)}"
                    continue
                finally:
                    loaded = None  # free the model before the next case
                    if self.options.max_memory_mb:
                        self.release(case.id)  # prepared again for the next pass: peaks hold one case's models
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
        checks: list[Check] = []
        if base is not None:
            try:
                checks = compare_case(base, result, tol, self.priors)
            except IncompatibleBaseline as exc:
                result.status, result.reason = results.INVALID, str(exc)
                raise
        final = final_verdict(checks, Circumstances.of(result, base))
        result.verdict = final.verdict
        if base is None:
            return []
        self.checks[result.case_id] = checks = final.checks
        energy = next((c for c in checks if c.metric == "energy"), None)
        if energy is not None:
            result.change_vs_baseline, result.noise_vs_baseline = energy.change, energy.noise
            if energy.noise is not None and tol.energy is not None and energy.noise > tol.energy:
                result.unstable = True
        return checks

    # -- the end ---------------------------------------------------------------------------
    def finish(self, run_passed: bool, update_json: Callable[[dict[str, Any]], None] | None = None) -> list[str]:
        """Write the results file (always) and the baseline (only after a passing run).

        Returns lines for the terminal saying what was written or why not."""
        lines: list[str] = []
        if self.sensor is not None:
            self.sensor.close()
        if self.thermal is not None:
            self.thermal.close()
        if not self.results:
            return lines
        rf = self.results_file()
        if self.options.results is not None:
            lines.append(_save(rf, self.options.results, "results", update_json))
        lines += self._sustained_plots()
        if self.options.history is not None:
            from ..storage import history

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
            if old is not None and old.upgrade_note:
                notes.insert(0, f"previous {old.upgrade_note}")
            lines.append(_save(merged, target, "baseline", update_json))
            lines += [f"baseline: {n}" for n in notes]
        return lines

    def _sustained_plots(self) -> list[str]:
        """A plot per sustained run (power, temperature, clock, latency over time), into the report
        folder or beside the results file."""
        if not self.sustained_runs:
            return []
        from ..measure.sustained import plot

        folder = self.options.report or (self.options.results.parent if self.options.results else Path("."))
        written = []
        for case_id, run in self.sustained_runs.items():
            path = folder / f"sustained_{slug(case_id, '-_.')}.png"
            try:
                plot(run, path)
            except ImportError as exc:
                return [f"sustained plots not drawn: {exc}"]
            except OSError as exc:
                return [f"sustained plots NOT written to {folder}: {exc.strerror or exc}"]
            written.append(str(path))
        return [f"sustained plots written: {', '.join(written)}"]


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
        self._peak: Any = None  # the memory.MemoryPeak of the case's largest pass

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
        agreement = self.loaded.agreement
        if agreement is not None and not agreement.ok:
            r.status, r.reason = results.FAILED, f"broken variant, not measured: {agreement_text(agreement)}"
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
        r.energy_mj_per_image_samples = [v for p in passes for v in p.energy_mj_per_image_samples]  # net under edgevit
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
        if s.protocol.name == EDGEVIT:
            self._inference_statistics(passes)
        elif idle and r.energy_kind != ESTIMATE:
            r.idle_power_w = statistics.median(idle)
        self._memory(passes)
        self._thermal(rounds)
        if s.options.sustained_s > 0:
            try:
                run = s.sustained(self.case, self.loaded)
            except SensorFault as exc:
                r.status, r.reason = results.INVALID, f"sensor fault in the sustained run: {exc}"
                s.reopen_sensor()
                raise
            s.sustained_runs[self.case.id] = run
            r.sustained = run.to_dict()
        self.measured = True
        record_rounds(benchmark, joined, r)
        over = self._over_budget()
        if over:
            r.status, r.reason = results.FAILED, over
            raise results.MeasurementError(f"{self.case.id}: {over}")
        return r

    def _memory(self, passes: list[SteadyState]) -> None:
        """The largest pass's peak memory (and its growth over what was resident when it began)."""
        peaks = [p.memory for p in passes if p.memory is not None]
        if not peaks:
            return
        self._peak = max(peaks, key=lambda m: m.peak_mb)
        r = self.result
        r.peak_memory_mb, r.memory_growth_mb, r.memory_method, r.memory = self._peak.peak_mb, self._peak.growth_mb, self._peak.method, self._peak.to_dict()

    def _thermal(self, rounds: list[Round]) -> None:
        """Temperature and throttling through the rounds of every pass."""
        # one entry per thermal round: a round of the e3p protocol, a whole pass of the edgevit one
        # rounds without a thermal source say nothing about throttling: they are left out, not "not throttled"
        heat = list({id(x.thermal): x.thermal for x in rounds if x.thermal is not None and getattr(x.thermal, "available", True)}.values())
        r = self.result
        temps = [h.max_temperature_c for h in heat if h.max_temperature_c is not None]
        r.temperature_c_max = max(temps) if temps else None
        clocks = [h.min_clock_ratio for h in heat if h.min_clock_ratio is not None]
        r.clock_ratio_min = min(clocks) if clocks else None
        r.round_throttled = [bool(h.throttled) for h in heat]
        r.throttled_rounds = sum(r.round_throttled)
        r.throttle_reasons = sorted({reason for h in heat if h.throttled for reason in h.reasons})
        notes = {h.note for h in heat if h.note}
        r.thermal_note = "; ".join(sorted(notes)) or (self.session.thermal.note if self.session.thermal is not None else "")

    def _over_budget(self) -> str | None:
        """--e3p-max-memory-mb: the failure message of a case whose peak exceeds the board's budget."""
        from ..measure.memory import check_budget

        budget = self.session.options.max_memory_mb
        return check_budget(self._peak, budget) if budget and self._peak is not None else None

    def _inference_statistics(self, passes: list[SteadyState]) -> None:
        """The edgevit protocol's figures: mean +/- sd over every inference of every pass, net of the
        background; a pass whose inferences the sensor could not resolve gives window averages only."""
        r = self.result
        r.latency_ms_per_image_sd = _sd([x for p in passes for x in p.latency_ms_per_image_samples])
        backgrounds = [p.background_w for p in passes if p.background_w is not None]
        r.background_power_w = statistics.median(backgrounds) if backgrounds else None
        raw = [p.raw_energy_mj_per_image for p in passes if p.raw_energy_mj_per_image is not None]
        r.energy_raw_mj_per_image = statistics.median(raw) if raw else None
        powers = [p.power_w for p in passes if p.power_w is not None]
        r.power_w = statistics.median(powers) if powers else None
        r.per_inference = all(p.per_inference for p in passes)
        if r.per_inference:
            r.energy_mj_per_image_sd = _sd([x for p in passes for x in p.energy_mj_per_image_samples])
            r.power_w_sd = _sd([x for p in passes for x in p.power_w_samples])
        elif passes[-1].sensor is not None:
            info = passes[-1].sensor
            r.resolution_note = (
                f"inferences of {r.latency_ms_per_image:.3g} ms are shorter than 2 update periods of {info.name} "
                f"({1000 * info.update_period_s:.3g} ms): energy and power are averages over each pass's {self.session.protocol.inferences} inferences, "
                "not per inference (no sd)"
            )

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
        assert self.loaded.forward is not None  # set in LoadedModel.__post_init__
        model = fixed_batch(self.loaded.forward, self.loaded.variant.batch_size if self.loaded.variant is not None else None)
        transform = data.eval_transform(case.dataset, self.loaded.module, self.loaded.input_size)
        dataset = data.open_dataset(case.dataset, transform.per_image)
        subset = data.limited(dataset, s.options.limit or None)
        workers = s.options.workers if s.options.workers >= 0 else default_workers(s.device.torch_device)
        loader = make_loader(subset, case.batch_size, workers, pin_memory=s.device.torch_device.startswith("cuda"))
        last = [time.monotonic()]

        def progress(done: int, total: int, elapsed: float) -> None:
            if time.monotonic() - last[0] >= s.options.progress_s and done < total:
                last[0] = time.monotonic()
                rate = done / elapsed
                s.progress(f"[e3p] {case.id}: {done}/{total} images, {rate:.1f} img/s, {(total - done) / rate:.0f} s left")

        try:
            ev = evaluate(model, loader, s.device.torch_device, s.device.synchronize, s.sensor, self.loaded.input_dtype, progress, transform.normalize)
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
            if r.protocol == EDGEVIT:
                notes.append("SAM on net energy (background subtracted)")
        r.sam_note = "; ".join(n for n in [r.sam_note, *notes] if n)
        if r.protocol == EDGEVIT and r.top1 is not None and r.energy_mj_per_image is not None and r.energy_mj_per_image > 0:
            r.efficiency_pct_per_mj = r.top1 / r.energy_mj_per_image  # the EdgeViT paper's %/mJ
        return r


class _ConfigOnly(torch.nn.Module):
    """What remains of a variant's fp32 reference: its timm config, for the data transform."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.pretrained_cfg = getattr(net, "pretrained_cfg", None) or getattr(net, "default_cfg", {})
        self.default_cfg = self.pretrained_cfg
        self.num_classes = getattr(net, "num_classes", None)


def fixed_batch(forward: Callable[[torch.Tensor], Any], size: int | None) -> Callable[[torch.Tensor], Any]:
    """`forward` for any number of images where it takes batches of `size` only (an exported graph):
    the images in chunks of `size`, the last one padded with copies of its last image and its
    logits cut back. `size` None: `forward` itself."""
    if size is None:
        return forward

    def run(x: torch.Tensor) -> Any:
        if x.shape[0] == size:
            return forward(x)
        out = []
        for chunk in x.split(size):
            n = chunk.shape[0]
            if n < size:
                chunk = torch.cat([chunk, chunk[-1:].expand(size - n, *chunk.shape[1:])])
            out.append(forward(chunk)[:n])
        return torch.cat(out)

    return run


def _precision(loaded: LoadedModel) -> str:
    """fp32, fp16 or bf16: the dtype the case's model computes in (the variant's input dtype)."""
    dtype = loaded.variant.input_dtype if loaded.variant is not None else loaded.input_dtype
    return next((name for name, d in EAGER.items() if d == dtype), str(dtype).removeprefix("torch."))


def agreement_text(a: Any) -> str:
    """One line on a variant against fp32 eager (variants.Agreement)."""
    verdict = "within" if a.ok else "OUTSIDE"
    return f"top-1 agreement {a.top1_pct:.1f} % and max relative logit error {a.max_rel_err:.3g} on {a.samples} images, {verdict} the bound ({a.bound})"


def _variant_fields(loaded: LoadedModel) -> dict[str, Any]:
    prepared, a = loaded.variant, loaded.agreement
    if prepared is None or a is None:
        return {}
    return {
        "agreement_top1_pct": a.top1_pct,
        "max_rel_logit_error": a.max_rel_err,
        "agreement_bound": a.bound,
        "prepare_s": prepared.prepare_s,
        "variant_detail": prepared.detail,
    }


def _check_runs_at(net: torch.nn.Module, case: Case) -> None:
    """A model built for another resolution runs one image of it, or the case is skipped saying why."""
    px = case.image_size
    assert px is not None  # only image-size cases are checked
    try:
        with torch.inference_mode():
            net.eval()(torch.zeros(1, 3, px, px))
    except Exception as exc:
        first = first_line(exc) or type(exc).__name__
        raise CaseSkipped(f"{case.model.full} cannot take {px} x {px} input: {first[:200]}") from None


def _sd(values: list[float]) -> float | None:
    return statistics.stdev(values) if len(values) > 1 else None
