"""`python -m pytest_e3p COMMAND`: the parts of the pipeline that need no benchmark run.

screen    stage 1 on its own: params, GMACs, NetScore, Pareto screening
sensors   which power sensors this machine has (boundary, unit, update period) and their power now
compare   a results file against a baseline; exit 1 on a regression, 2 on an error
report    Markdown report with plots from one or more results files
finetune  the paper's CIFAR-10 fine-tuning recipe, writing a checkpoint the suite loads
history   the runs kept by --e3p-history (and pruning them)
dashboard a static site of the history: trends, steps, regressions
pr-comment comment on the pull request, only when a case regressed, turned inconclusive or became unstable
doctor    this machine, its sensors and every pre-run check, for a bug report; --record-tree saves its sysfs files
export    a results file as CSV, OpenMetrics, MLflow runs or Bencher JSON (as --e3p-export)
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable

from . import __version__, doctor
from .config import DEFAULTS, positive_float
from .export import command as export_command
from .finetune import FinetuneConfig
from .report import dashboard, pr_comment
from .storage import history


def _screen(args: argparse.Namespace) -> int:
    from .models.screening import complexity_of, screen, stage1_row
    from .models.zoo import UnknownModel, resolve_models
    from .report.terminal import stage1_table

    try:
        models = resolve_models(args.models)
    except UnknownModel as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = [stage1_row(m, complexity_of(m)) for m in models]
    keep = [k for k in args.keep.split(",") if k]
    screen(rows, objectives=args.objectives.split(","), keep=keep)
    print(stage1_table(rows))
    kept = [r.model for r in rows if r.kept]
    print(f"\nkept {len(kept)} of {len(rows)}: {','.join(kept)}")
    return 0


def _sensors(args: argparse.Namespace) -> int:
    from functools import partial

    from .hardware.sensors import EnergySensor, SamplingSensor, SensorFault, SensorUnavailable
    from .hardware.sensors.estimate import CpuTimeEstimate
    from .hardware.sensors.jetson import open_jetson_sensor
    from .hardware.sensors.nvml import gpu_count, open_nvml_sensor
    from .hardware.sensors.rapl import RaplSensor
    from .hardware.thermal import describe_lines as describe_thermal

    openers: list[tuple[str, Callable[[], EnergySensor]]] = []
    try:
        openers += [(f"NVIDIA GPU {i} (NVML)", partial(open_nvml_sensor, index=i, rate_hz=args.sample_hz)) for i in range(gpu_count())]
    except SensorUnavailable as exc:
        print(f"NVIDIA GPU (NVML): unavailable: {exc}")
    openers += [("Jetson INA3221 rails", partial(open_jetson_sensor, args.sample_hz)), ("CPU (RAPL)", RaplSensor)]

    found, faults = 0, 0
    for label, opener in openers:
        try:
            sensor = opener()
        except SensorUnavailable as exc:
            print(f"{label}: unavailable: {exc}")
            continue
        found += 1
        info = sensor.info
        try:
            with sensor:
                period, w = _probe(sensor, args.window_s)
        except SensorFault as exc:
            print(f"{label}: {info.name}, boundary: {info.boundary}: reading failed: {exc}")
            faults += 1
            continue
        measured = f"{period * 1000:.1f} ms measured" if period else "no change seen in 3 s (idle, or a stuck sensor)"
        sampled = f", sampled every {sensor.period_s * 1000:.1f} ms" if isinstance(sensor, SamplingSensor) else ""
        print(f"{label}: {info.name}, boundary: {info.boundary}, unit: {info.unit}, update period: {measured}{sampled}")
        if info.rails:
            print(f"  rails: {', '.join(info.rails)}; total: {info.total_rail or 'sum of rails'}")
        if info.outside_rails:
            print(f"  outside the boundary, not in the total (carrier board): {', '.join(info.outside_rails)}")
        total_is = f" ({info.total_rail})" if info.total_rail not in (None, "sum") else (" (sum of the rails)" if info.rails else "")
        print(f"  power over {w.duration_s:.2f} s: total {w.power_w:.3f} W{total_is}")
        for rail in sorted(info.rails, key=lambda r: r != info.total_rail):  # the total first
            rail_w = w.rails_mj.get(rail, float("nan")) / 1000.0 / w.duration_s
            print(f"    {rail}: {rail_w:.3f} W" + (" (the total)" if rail == info.total_rail else ""))
    if not found:
        est = CpuTimeEstimate()
        print(f"no power sensor on this machine: --device cpu will report a labelled estimate ({est.info.boundary})")
    # Thermal state beside the power sensors: a throttled chip changes both energy and latency. It is
    # auxiliary, so it never changes the exit status.
    for line in describe_thermal():
        print(line)
    return 1 if faults else 0


def _probe(sensor, window_s: float):
    """The sensor's update period, then its power over one window, through its normal read path."""
    import time

    from .hardware.sensors import measure_update_period_s, window

    period = measure_update_period_s(sensor)
    start = sensor.read()
    time.sleep(window_s)
    return period, window(start, sensor.read())


COMPARE_EXIT_CODES = """exit status:
  0  no case regressed
  1  at least one case regressed (cases that could not be compared are listed too)
  2  error, one line on stderr: a file unreadable, corrupt, not UTF-8 or not a pytest-e3p
     results file; a bad --tolerance; a baseline of another device; or, with no regression,
     a case whose conditions differ from the baseline's (batch size, precision, boundary...)"""


def _compare(args: argparse.Namespace) -> int:
    from .gate.baseline import IncompatibleBaseline, ToleranceError, compare_files, parse_tolerances
    from .report.terminal import comparison_table
    from .storage.results import ResultsFileError, load_for_command

    try:
        tol = parse_tolerances(args.tolerance)
        base, cur = load_for_command(args.baseline), load_for_command(args.results)
        cmp = compare_files(base, cur, tol)
    except (ResultsFileError, ToleranceError, IncompatibleBaseline) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for note in cmp.supported:  # first: the tolerance each too-noisy baseline supports
        print(f"note: {note}")
    print(comparison_table(cmp))
    for cid, checks in cmp.regressions.items():
        for c in checks:
            print(f"REGRESSION {cid}: {c.describe()}")
    for cid, lines in cmp.changes.items():
        print(f"{cid}: since the baseline: {'; '.join(lines)}")
    for s in cmp.support:
        print(f"what the data support: {s.text()}")
    for why in cmp.refused.values():
        print(f"error: not compared: {why}", file=sys.stderr)
    if cmp.regressions:
        return 1
    return 2 if cmp.refused else 0


def _report(args: argparse.Namespace) -> int:
    import time

    from .report.markdown import ReportError, write_report
    from .storage.results import ResultsFileError, load_for_command

    files, problems = [], []
    for path in args.results:
        try:
            files.append(load_for_command(path))
        except ResultsFileError as exc:
            problems.append(str(exc))
    for p in problems:
        print(f"skipped: {p}", file=sys.stderr)
    if not files:
        print("error: no readable results file to report", file=sys.stderr)
        return 2
    if args.carbon_g_per_kwh or args.price_per_kwh:
        _refactor_footprints(files, args.carbon_g_per_kwh, args.price_per_kwh)
    t0 = time.perf_counter()
    try:
        path = write_report(files, args.out, args.reference_model, args.energy_budget_mj)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"report written to {path} in {time.perf_counter() - t0:.2f} s")
    return 1 if problems else 0


def _refactor_footprints(files, carbon_g_per_kwh: float | None, price_per_kwh: float | None) -> None:
    """Each case's footprint again from its recorded energy, at the factors given here (a factor not
    given keeps the one the run recorded)."""
    from .run.record import footprint

    for f in files:
        for c in f.cases.values():
            old = c.footprint
            carbon = carbon_g_per_kwh or (old.carbon_g_per_kwh if old else None) or 0.0
            price = price_per_kwh or (old.price_per_kwh if old else None) or 0.0
            c.footprint = footprint(c.energy_mj_per_image, c.energy_kind, carbon, price)


def _finetune(args: argparse.Namespace) -> int:
    from .finetune import FinetuneConfig, finetune

    device = args.device or ("cuda" if _cuda() else "cpu")
    cfg = FinetuneConfig(
        model=args.model,
        dataset=args.dataset,
        out=args.out,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        eval_every=args.eval_every,
        device=device,
        limit=args.limit,
    )
    try:
        path = finetune(cfg)
    except Exception as exc:  # the commands below report their own bad input as one line
        from .models.datasets import DatasetError
        from .models.zoo import UnknownModel

        if isinstance(exc, (DatasetError, UnknownModel, ValueError)):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise
    print(f"checkpoint written to {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    # Help strings go through %-formatting: a literal percent sign must be written %%.
    parser = argparse.ArgumentParser(prog="python -m pytest_e3p", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"pytest-e3p {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("screen", help="stage 1: NetScore and Pareto screening, no measurement")
    p.add_argument("--models", default="candidates", help="paper13, candidates or a comma list of timm names")
    p.add_argument("--objectives", default="top1,gmacs,params", help="Pareto objectives among top1, gmacs, params")
    p.add_argument("--keep", default="", help="comma list of models always kept")
    p.set_defaults(run=_screen)

    p = sub.add_parser(
        "sensors",
        help="list the power sensors of this machine and read each once",
        description="List the power sensors of this machine (boundary, unit, update period) and print the "
        "power of each rail, zone or GPU and the total, in watts, over one short window.",
    )
    p.add_argument("--sample-hz", type=_positive_float, default=100.0, help="sampling rate of the sampling sensors, Hz")
    p.add_argument("--window-s", type=_positive_float, default=1.0, help="length of the window the power is read over, seconds")
    p.set_defaults(run=_sensors)

    p = sub.add_parser(
        "compare",
        help="compare a results file with a baseline; exit 1 on a regression, 2 on an error",
        description="Compare a results file with a baseline, case by case.",
        epilog=COMPARE_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("baseline", help="the baseline file (--e3p-save-baseline)")
    p.add_argument("results", help="the results file to check (--e3p-results)")
    p.add_argument("--tolerance", default=DEFAULTS["tolerance"], help="regression tolerances, e.g. energy=5%%,latency=10%%,top1=0.5")
    p.set_defaults(run=_compare)

    p = sub.add_parser("report", help="Markdown report and plots from results files")
    p.add_argument("results", nargs="+", help="one or more results files (--e3p-results)")
    p.add_argument("--out", required=True, help="folder for report.md and its plots")
    p.add_argument("--reference-model", default=DEFAULTS["reference_model"], help="the model savings are computed against")
    p.add_argument(
        "--energy-budget-mj",
        type=_positive_float,
        default=None,
        metavar="MJ",
        help="energy per image the deployment can afford: the answer names the most accurate case within it",
    )
    p.add_argument(
        "--carbon-g-per-kwh",
        type=_positive_float,
        default=None,
        metavar="G",
        help="grid carbon intensity (g CO2e per kWh): each case's energy again as grams CO2e per million images (default: the run's)",
    )
    p.add_argument(
        "--price-per-kwh",
        type=_positive_float,
        default=None,
        metavar="PRICE",
        help="electricity price per kWh: each case's energy again as the cost of a million images (default: the run's)",
    )
    p.set_defaults(run=_report)

    p = sub.add_parser(
        "finetune",
        help="fine-tune a model on CIFAR-10 with the paper's recipe",
        description="Fine-tune a model on CIFAR-10 with the E3P paper's recipe; the defaults below are that recipe.",
    )
    recipe = FinetuneConfig  # the recipe's defaults live on its record, read here without importing torch
    p.add_argument("--model", required=True, help="timm name, arch or arch.tag (its pretrained weights are the start)")
    p.add_argument("--dataset", required=True, help="cifar10=PATH (the cifar-10-batches-py folder or its parent)")
    p.add_argument("--out", required=True, help="folder for <arch>_cifar10.pth (what --e3p-checkpoints reads)")
    p.add_argument("--steps", type=_positive_int, default=recipe.steps, help="SGD steps; the cosine schedule spans them")
    p.add_argument("--batch-size", type=_positive_int, default=recipe.batch_size, help="training images per step")
    p.add_argument("--lr", type=_positive_float, default=recipe.lr, help="initial learning rate of SGD with momentum 0.9")
    p.add_argument("--seed", type=int, default=recipe.seed, help="seed of the weights' head, the 45k/5k split and the shuffling")
    p.add_argument("--eval-every", type=_positive_int, default=recipe.eval_every, help="steps between validation top-1 lines")
    p.add_argument("--limit", type=int, default=recipe.limit, help="use only N training images (quick trials; 0: all 50000)")
    # No default computed here: finding out whether CUDA exists imports torch, which --help must not wait for.
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda where available)")
    p.set_defaults(run=_finetune)
    history.add_cli(sub)
    dashboard.add_cli(sub)
    pr_comment.add_cli(sub)
    doctor.add_cli(sub)
    export_command.add_cli(sub)
    for command in sub.choices.values():  # every subcommand's help shows its defaults
        command.formatter_class = _HelpFormatter
    return parser


DEFAULT_SAID = re.compile(r"\(default\b|(?<!\()\bdefault:")  # a help text that gives its default in its own words


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Each option's default said once: "(default: X)" appended, unless the help says it in its own
    words (a default found at run time: "cuda where available"). Never for a required option or a
    positional argument, which have none. Descriptions and epilogs kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if not action.option_strings or action.required or action.default is argparse.SUPPRESS or DEFAULT_SAID.search(text):
            return text
        default = action.default
        if default is False:  # a switch
            shown = "off"
        elif default is None or default == "" or default == []:
            shown = "none"
        else:
            shown = "%(default)s"
        return f"{text} (default: {shown})"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


def _positive_float(text: str) -> float:
    try:
        return positive_float(text)
    except ValueError as exc:  # argparse shows an ArgumentTypeError's own words
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be at least 1")
    return value


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False
