"""What the `e3p` fixture gives a benchmark: measure(), evaluate(), and the case's record.

The runner sees only its RunnerContext, never the session: the bench to measure on, the options it
reads, where progress lines go, the case's setup and the passes the session measured before."""

from __future__ import annotations

import time
from collections.abc import Callable, Sized
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

from ..config import Options
from ..hardware.sensors import SensorFault
from ..measure.accuracy import default_workers, evaluate, make_loader
from ..measure.protocols import SteadyState
from ..models import datasets as data
from ..models.build import CHECKPOINT, RANDOM, checkpoint_path
from ..storage import results
from .bench import Bench
from .loading import agreement_text, fixed_batch
from .record import Accuracy, CaseSetup, Collected, build_result, joined_rounds

if TYPE_CHECKING:
    from ..measure.sustained import SustainedRun

T = TypeVar("T")


@dataclass(frozen=True)
class RunnerContext:
    """Everything a CaseRunner needs from the run."""

    bench: Bench
    options: Options
    progress: Callable[[str], None]
    setup: CaseSetup
    earlier: tuple[SteadyState, ...] = ()  # the case's passes before the last, from the session
    early_error: str | None = None  # why an earlier pass failed


class CaseRunner:
    def __init__(
        self,
        ctx: RunnerContext,
        benchmark_fixture: Callable[[], Any] | None = None,
        publish_rounds: Callable[[Any, SteadyState, results.CaseResult], None] | None = None,
    ):
        self.ctx = ctx
        self.case, self.loaded = ctx.setup.case, ctx.setup.loaded
        self._benchmark_fixture = benchmark_fixture  # pytest-benchmark's, looked up only when measuring
        # how the rounds reach pytest-benchmark's table: the plugin's bridge (the run layer knows no plugin)
        self._publish_rounds = publish_rounds
        self.got = Collected()
        self.measured = False
        self.evaluated = False

    @property
    def result(self) -> results.CaseResult:
        """The case's record so far (a new one at each call; final_result() when the case is over)."""
        return build_result(self.ctx.setup, self.got)

    def final_result(self) -> results.CaseResult:
        """The finished record: SAM and its notes, the reference top-1 where none was evaluated."""
        return build_result(self.ctx.setup, self.got, final=True)

    @property
    def sustained_run(self) -> SustainedRun | None:
        """The SustainedRun of --e3p-sustained-s, once measured."""
        return self.got.sustained

    def fail(self, status: results.Status, reason: str) -> None:
        """The test failed outside measure() and evaluate(): its record says why (the first failure wins)."""
        self.got.fail(status, reason)

    def _stop(self, status: results.Status, reason: str) -> NoReturn:
        self.got.fail(status, reason)
        raise results.MeasurementError(f"{self.case.id}: {reason}")

    def _watching_the_sensor(self, what: str, step: Callable[[], T]) -> T:
        """`step`; a sensor fault in it makes the case invalid, and the next case gets a fresh sensor."""
        try:
            return step()
        except SensorFault as exc:
            self.got.fail(results.INVALID, f"{what}: {exc}")
            self.ctx.bench.reopen_sensor()
            raise

    # -- energy and latency ------------------------------------------------------------------
    def measure(self, benchmark: Any = None) -> results.CaseResult:
        """Steady-state energy, latency and power of the case's model: the last pass of the
        protocol's rounds, joined with the passes the session ran before over every case.

        Where pytest-benchmark is active, the rounds' per-image latencies also appear in its table and
        JSON, and the energy figures in its extra_info (pass its `benchmark` fixture, or let the
        runner look it up)."""
        if benchmark is None and self._benchmark_fixture is not None:
            benchmark = self._benchmark_fixture()
        self._check_measurable()
        self.got.passes = self._passes()
        self.got.memory_unavailable = self.ctx.bench.memory_unavailable.get(self.case.id, "")
        self.got.thermal_note = self.ctx.bench.thermal.note if self.ctx.bench.thermal is not None else ""
        if self.ctx.options.sustained_s > 0:
            self.got.sustained = self._watching_the_sensor("sensor fault in the sustained run", lambda: self.ctx.bench.sustained(self.case, self.loaded))
        if self.ctx.options.attribution != "off":  # after the passes: the case's own figures are already taken
            from .attribution import attribute_case

            self.got.attribution = attribute_case(self.ctx.bench, self.case, self.loaded, self.result, self.ctx.options.attribution)
        self.measured = True
        if self._publish_rounds is not None:
            self._publish_rounds(benchmark, joined_rounds(self.got.passes), self.result)
        self._check_budget()
        return self.result

    def _check_measurable(self) -> None:
        """An earlier pass that failed, or a variant outside its bound, stops the case before it runs."""
        if self.ctx.early_error is not None:
            self._stop(results.INVALID, self.ctx.early_error)
        if self.loaded.broken and self.loaded.agreement is not None:  # broken: outside its agreement's bound
            self._stop(results.FAILED, f"broken variant, not measured: {agreement_text(self.loaded.agreement)}")

    def _passes(self) -> list[SteadyState]:
        """The last pass, after the earlier ones: all from one energy source."""
        bench = self.ctx.bench
        self.got.temperature_c_start = bench.device.temperature_c()
        last = self._watching_the_sensor("sensor fault", lambda: bench.steady_state(self.case, self.loaded))
        self.got.temperature_c_end = bench.device.temperature_c()
        passes = [*self.ctx.earlier, last]
        sources = {p.sensor.name for p in passes}
        if len(sources) > 1:
            # a sensor fault in an earlier pass switched the run to another source: never mix them
            self._stop(results.INVALID, f"energy sources differ between passes ({', '.join(sorted(sources))}) after a sensor fault")
        return passes

    def _check_budget(self) -> None:
        """--e3p-max-memory-mb: a case whose peak exceeds the board's budget fails, saying by how much."""
        from ..measure.memory import check_budget

        budget, peak = self.ctx.options.max_memory_mb, self.got.peak
        if budget and peak is None and self.got.memory_unavailable:
            # a budget that cannot be checked must not pass: torch's figure would be near zero
            self._stop(results.INVALID, f"{self.got.memory_unavailable}; --e3p-max-memory-mb cannot be checked for this case")
        over = check_budget(peak, budget) if budget and peak is not None else None
        if over:
            self._stop(results.FAILED, over)

    # -- accuracy ----------------------------------------------------------------------------
    def evaluate(self) -> results.CaseResult:
        """Top-1/top-5 on the case's dataset, where it has labels and the weights are trained;
        the reference top-1 (labelled so) otherwise."""
        self.evaluated = True
        self.got.accuracy = self._accuracy()
        return self.result

    def _accuracy(self) -> Accuracy:
        case, loaded, options = self.case, self.loaded, self.ctx.options
        if not case.dataset.has_labels:
            return Accuracy(reference_why="the synthetic dataset has no labels")
        if loaded.num_classes != data.num_classes(case.dataset) or (case.dataset.kind != data.IMAGENET and loaded.weights.source != CHECKPOINT):
            where = (
                f"{checkpoint_path(options.checkpoints, case.model, case.dataset.name)} does not exist"
                if options.checkpoints is not None
                else f"--e3p-checkpoints DIR with {case.model.arch}_{case.dataset.name}.pth"
            )
            return Accuracy(unavailable_reason=f"{case.dataset.name} needs a fine-tuned checkpoint: {where} (see `python -m pytest_e3p finetune`)")
        if loaded.weights.source == RANDOM:
            return Accuracy(reference_why="random weights (pretrained ones unavailable)")
        return self._accuracy_pass()

    def _accuracy_pass(self) -> Accuracy:
        """One pass over the (limited) dataset through the case's model, energy and time included."""
        case, loaded, options, bench = self.case, self.loaded, self.ctx.options, self.ctx.bench
        assert loaded.forward is not None  # set in LoadedModel.__post_init__
        model = fixed_batch(loaded.forward, loaded.variant.batch_size if loaded.variant is not None else None)
        transform = data.eval_transform(case.dataset, loaded.module, loaded.input_size)
        dataset = data.open_dataset(case.dataset, transform.per_image)
        subset = data.limited(dataset, options.limit or None)
        torch_device = bench.device.torch_device
        workers = options.workers if options.workers >= 0 else default_workers(torch_device)
        loader = make_loader(subset, case.batch_size, workers, pin_memory=torch_device.startswith("cuda"))
        progress = self._eval_progress()
        try:
            ev = self._watching_the_sensor(
                "sensor fault during the accuracy pass",
                lambda: evaluate(model, loader, bench.context(), loaded.input_dtype, progress, transform.normalize),
            )
        except SensorFault:
            raise
        except Exception as exc:
            # a loader process wraps the error in its traceback text: find our one line in it
            line = next((ln.split("CorruptImage: ", 1)[-1] for ln in str(exc).splitlines() if "cannot be decoded" in ln), None)
            if line is None:
                raise
            self._stop(results.FAILED, f"accuracy pass stopped: {line}")
        n_subset, n_all = len(cast(Sized, subset)), len(cast(Sized, dataset))
        subset_note = f"{n_subset} of {n_all} images, evenly spaced (--e3p-limit)" if n_subset < n_all else None
        return Accuracy(measured=ev, subset_note=subset_note)

    def _eval_progress(self) -> Callable[[int, int, float], None]:
        """A live line every --e3p-progress-s seconds of the accuracy pass."""
        last = [time.monotonic()]
        every_s, case_id, write = self.ctx.options.progress_s, self.case.id, self.ctx.progress

        def progress(done: int, total: int, elapsed: float) -> None:
            if time.monotonic() - last[0] >= every_s and done < total:
                last[0] = time.monotonic()
                rate = done / elapsed
                write(f"[e3p] {case_id}: {done}/{total} images, {rate:.1f} img/s, {(total - done) / rate:.0f} s left")

        return progress
