"""`python -m pytest_e3p COMMAND`: the parts of the pipeline that need no benchmark run.

    screen    stage 1 on its own: params, GMACs, NetScore, Pareto screening
    sensors   which power sensors this machine has, their boundary, unit and update period
    compare   a results file against a baseline; exit 1 on a regression
    report    Markdown report with plots from one or more results files
    finetune  the paper's CIFAR-10 fine-tuning recipe, writing a checkpoint the suite loads
"""

from __future__ import annotations

import argparse
import sys


def _screen(args: argparse.Namespace) -> int:
    from .report import stage1_table
    from .screening import complexity_of, screen, stage1_row
    from .zoo import UnknownModel, resolve_models

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
    from .sensors import SamplingSensor, SensorUnavailable, measure_update_period_s
    from .sensors.estimate import CpuTimeEstimate
    from .sensors.jetson import open_jetson_sensor
    from .sensors.nvml import open_nvml_sensor
    from .sensors.rapl import RaplSensor

    found = 0
    for label, opener in (("NVIDIA GPU (NVML)", lambda: open_nvml_sensor(rate_hz=args.sample_hz)), ("Jetson INA3221 rails", lambda: open_jetson_sensor(args.sample_hz)), ("CPU (RAPL)", RaplSensor)):
        try:
            sensor = opener()
        except SensorUnavailable as exc:
            print(f"{label}: unavailable: {exc}")
            continue
        found += 1
        with sensor:
            period = measure_update_period_s(sensor)
        info = sensor.info
        measured = f"{period * 1000:.1f} ms measured" if period else "no change seen in 3 s (idle, or a stuck sensor)"
        sampled = f", sampled every {sensor.period_s * 1000:.1f} ms" if isinstance(sensor, SamplingSensor) else ""
        print(f"{label}: {info.name}, boundary: {info.boundary}, unit: {info.unit}, update period: {measured}{sampled}")
        if info.rails:
            print(f"  rails: {', '.join(info.rails)}; total: {info.total_rail or 'sum of rails'}")
    if not found:
        est = CpuTimeEstimate()
        print(f"no power sensor on this machine: --device cpu will report a labelled estimate ({est.info.boundary})")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from .baseline import IncompatibleBaseline, ToleranceError, compare_files, parse_tolerances
    from .report import comparison_table
    from .results import ResultsFileError, load

    try:
        tol = parse_tolerances(args.tolerance)
        base, cur = load(args.baseline), load(args.results)
        cmp = compare_files(base, cur, tol)
    except (ResultsFileError, ToleranceError, IncompatibleBaseline) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(comparison_table(cmp))
    for cid, checks in cmp.regressions.items():
        for c in checks:
            print(f"REGRESSION {cid}: {c.describe()}")
    return 1 if cmp.failed else 0


def _report(args: argparse.Namespace) -> int:
    import time

    from .report_md import ReportError, write_report
    from .results import ResultsFileError, load

    files, problems = [], []
    for path in args.results:
        try:
            files.append(load(path))
        except ResultsFileError as exc:
            problems.append(str(exc))
    for p in problems:
        print(f"skipped: {p}", file=sys.stderr)
    if not files:
        print("error: no readable results file to report", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    try:
        path = write_report(files, args.out, args.reference_model)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"report written to {path} in {time.perf_counter() - t0:.2f} s")
    return 1 if problems else 0


def _finetune(args: argparse.Namespace) -> int:
    from .finetune import FinetuneConfig, finetune

    cfg = FinetuneConfig(model=args.model, dataset=args.dataset, out=args.out, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed, eval_every=args.eval_every, device=args.device, limit=args.limit)
    try:
        path = finetune(cfg)
    except Exception as exc:  # the commands below report their own bad input as one line
        from .data import DatasetError
        from .zoo import UnknownModel

        if isinstance(exc, (DatasetError, UnknownModel, ValueError)):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise
    print(f"checkpoint written to {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_e3p", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("screen", help="stage 1: NetScore and Pareto screening, no measurement")
    p.add_argument("--models", default="candidates", help="paper13, candidates (default) or a comma list of timm names")
    p.add_argument("--objectives", default="top1,gmacs,params", help="Pareto objectives among top1, gmacs, params")
    p.add_argument("--keep", default="", help="comma list of models always kept")
    p.set_defaults(run=_screen)

    p = sub.add_parser("sensors", help="list the power sensors of this machine")
    p.add_argument("--sample-hz", type=float, default=100.0)
    p.set_defaults(run=_sensors)

    p = sub.add_parser("compare", help="compare a results file with a baseline; exit 1 on a regression")
    p.add_argument("baseline")
    p.add_argument("results")
    p.add_argument("--tolerance", default="energy=5%", help="e.g. energy=5%%,latency=10%%,top1=0.5")
    p.set_defaults(run=_compare)

    p = sub.add_parser("report", help="Markdown report and plots from results files")
    p.add_argument("results", nargs="+")
    p.add_argument("--out", required=True)
    p.add_argument("--reference-model", default="vit_small_patch16_224")
    p.set_defaults(run=_report)

    p = sub.add_parser("finetune", help="fine-tune a model on CIFAR-10 with the paper's recipe")
    p.add_argument("--model", required=True)
    p.add_argument("--dataset", required=True, help="cifar10=PATH (the cifar-10-batches-py folder or its parent)")
    p.add_argument("--out", required=True, help="folder for <arch>_cifar10.pth")
    p.add_argument("--steps", type=int, default=15000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=1000)
    p.add_argument("--limit", type=int, default=0, help="use only N training images (quick trials)")
    p.add_argument("--device", default="cuda" if _cuda() else "cpu")
    p.set_defaults(run=_finetune)

    args = parser.parse_args(argv)
    return args.run(args)


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False
