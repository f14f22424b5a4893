"""The regression gate on real runs of the suite: false alarms, detection, and cost.

Every figure comes from complete runs of `pytest benchmarks/ --device cpu` in fresh processes, with
the default protocol (passes, rounds, tolerance), compared by the same code as `--e3p-baseline`:

1. False alarms: R identical runs. Each is compared with a baseline merged (as --e3p-save-baseline
   does) from K *other* identical runs, the K before it in time order (cyclically), so R runs give R
   comparisons per case. Also against one-run baselines, to show what K buys.
2. Detection: runs with --e3p-slowdown 0.05 and 0.10 (extra matrix work of that fraction of each
   forward pass's time), each compared with a K-run baseline of identical runs. The slowed and the
   identical runs are interleaved in time, so a drift of the machine hits both alike.
3. Noise: the between-run spread of each case's run values, and the between-pass spread within runs.
   The smallest slowdown the gate catches at this false-alarm rate is max(tolerance, noise).
4. Cost (--full): the wall time of one default run of the paper's 13 models.

    python scripts/bench_gate.py [--models levit_128s,deit_tiny_patch16_224] [--runs 20] [--slowed 6] [--full]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pytest_e3p.config import DEFAULTS
from pytest_e3p.gate.baseline import REGRESSED, compare_files, merge_runs, parse_tolerances
from pytest_e3p.storage import results

ROOT = Path(__file__).resolve().parent.parent


def run_suite(models: str, out: Path, slowdown: float = 0.0) -> float:
    """One run in a fresh process; returns its wall time in seconds."""
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "benchmarks/",
        "--device=cpu",
        f"--e3p-models={models}",
        "--e3p-weights=random",
        "-q",
        "-p",
        "no:cacheprovider",
        "--benchmark-disable",
        f"--e3p-results={out}",
    ]
    if slowdown:
        cmd.append(f"--e3p-slowdown={slowdown}")
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"run failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    return time.monotonic() - t0


def baseline_of(runs: list[results.ResultsFile], keep: int) -> results.ResultsFile:
    """Merge runs, oldest first, exactly as repeated --e3p-save-baseline would."""
    base = None
    for rf in runs:
        base, _ = merge_runs(base, rf, keep)
    assert base is not None
    return base


def verdicts(base: results.ResultsFile, cur: results.ResultsFile, tol) -> list[tuple[str, str, float, float | None]]:
    """(case, verdict, change, noise) of the energy check of each case."""
    out = []
    for cid, checks in compare_files(base, cur, tol).checks.items():
        for c in checks:
            if c.metric == "energy":
                out.append((cid, c.verdict, c.change, c.noise))
    return out


def log_cv(values: list[float]) -> float:
    logs = [math.log(v) for v in values]
    return statistics.stdev(logs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="levit_128s,deit_tiny_patch16_224")
    ap.add_argument("--runs", type=int, default=20, help="identical runs")
    ap.add_argument("--slowed", type=int, default=6, help="runs at each slowdown (5%% and 10%%)")
    ap.add_argument("--keep", type=int, default=int(DEFAULTS["baseline_runs"]), help="runs per baseline (K)")
    ap.add_argument("--full", action="store_true", help="also time one default run of the paper's 13 models")
    ap.add_argument("--out", default="", help="keep the results files here")
    ap.add_argument("--analyse-only", action="store_true", help="no new runs: analyse the NNN-kind.json files already in --out")
    args = ap.parse_args()
    tol = parse_tolerances(DEFAULTS["tolerance"])
    folder = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_gate."))
    folder.mkdir(parents=True, exist_ok=True)

    # interleave: the slowed runs spread evenly among the identical ones
    slowed = [("slow5", 0.05), ("slow10", 0.10)] * args.slowed
    total = args.runs + len(slowed)
    at = {round((i + 1) * total / (len(slowed) + 1)): s for i, s in enumerate(slowed)}
    same = iter([("same", 0.0)] * args.runs)
    plan: list[tuple[str, float]] = [at[i] if i in at else next(same) for i in range(total)]
    if args.analyse_only:
        kinds = {"same": 0.0, "slow5": 0.05, "slow10": 0.10}
        plan = [(p.stem.split("-", 1)[1], kinds[p.stem.split("-", 1)[1]]) for p in sorted(folder.glob("[0-9][0-9][0-9]-*.json"))]
    print(f"protocol: passes {DEFAULTS['passes']}, rounds {DEFAULTS['rounds']} per pass, tolerance {DEFAULTS['tolerance']}, baselines of K={args.keep} runs")
    print(f"{len(plan)} runs of {args.models} on --device cpu (energy: the labelled CPU estimate), results in {folder}", flush=True)
    runs: dict[str, list[results.ResultsFile]] = {"same": [], "slow5": [], "slow10": []}
    order: list[tuple[str, int]] = []  # (kind, index within kind) in time order
    walls = []
    for i, (kind, slowdown) in enumerate(plan):
        out = folder / f"{i:03d}-{kind}.json"
        if not out.exists():
            if args.analyse_only:
                sys.exit(f"{out} is missing")
            walls.append(run_suite(args.models, out, slowdown))
        rf = results.load(out)
        runs[kind].append(rf)
        order.append((kind, len(runs[kind]) - 1))
        values = ", ".join(f"{cid.split('-')[0]} {c.energy_mj_per_image:.4g}" for cid, c in sorted(rf.cases.items()))
        print(f"  run {i + 1:2d}/{len(plan)} {kind:6s} energy/img (est.): {values}", flush=True)
    same = runs["same"]
    n = len(same)
    k = min(args.keep, n - 1)

    print("\n1. false alarms: each identical run against a baseline of the K identical runs before it (cyclically)")
    rows = []
    for i in range(n):
        donors = [same[(i - j) % n] for j in range(k, 0, -1)]
        rows += verdicts(baseline_of(donors, args.keep), same[i], tol)
    flagged = sum(v == REGRESSED for _, v, _, _ in rows)
    print(f"   K={k}: {flagged} of {len(rows)} case comparisons flagged ({flagged / len(rows):.1%}; target <= 1%)")
    changes = sorted(abs(c) for _, _, c, _ in rows)
    noises = [nz for _, _, _, nz in rows if nz is not None]
    print(
        f"   |change| between identical runs: median {statistics.median(changes):.1%}, max {changes[-1]:.1%}; noise threshold median {statistics.median(noises):.1%}"
    )
    one = [verdicts(baseline_of([same[(i - 1) % n]], 1), same[i], tol) for i in range(n)]
    one_rows = [r for rs in one for r in rs]
    one_flagged = sum(v == REGRESSED for _, v, _, _ in one_rows)
    print(f"   K=1 (a one-run baseline): {one_flagged} of {len(one_rows)} flagged ({one_flagged / len(one_rows):.1%})")

    print("\n2. detection: slowed runs against a K-run baseline of the identical runs nearest in time")
    same_positions = [i for i, (kind, _) in enumerate(order) if kind == "same"]
    for kind, label in (("slow5", "+5%"), ("slow10", "+10%")):
        rows = []
        for j, rf in enumerate(runs[kind]):
            pos = next(i for i, (kd, idx) in enumerate(order) if kd == kind and idx == j)
            nearest = sorted(same_positions, key=lambda p: abs(p - pos))[: args.keep]
            donors = [same[order[p][1]] for p in sorted(nearest)]
            rows += verdicts(baseline_of(donors, args.keep), rf, tol)
        if not rows:
            continue
        caught = sum(v == REGRESSED for _, v, _, _ in rows)
        achieved = statistics.median(c for _, _, c, _ in rows)
        print(f"   {label} work: caught {caught} of {len(rows)} ({caught / len(rows):.0%}; target >= 90% at +10%), measured change median {achieved:+.1%}")

    print("\n3. noise on this machine (identical runs)")
    for cid in sorted(same[0].cases):
        run_values = [statistics.median(rf.cases[cid].energy_mj_per_image_passes) for rf in same if cid in rf.cases]
        pass_cvs = [rf.cases[cid].energy_spread for rf in same if cid in rf.cases and rf.cases[cid].energy_spread is not None]
        print(
            f"   {cid}: between runs sd {log_cv(run_values):.1%} (range {min(run_values):.4g}-{max(run_values):.4g} mJ/img), "
            f"within a run between passes median CV {statistics.median(pass_cvs):.1%}"
        )
    noise_med = statistics.median(noises) if noises else float("nan")
    print(
        f"   smallest slowdown caught at this false-alarm rate: about max(tolerance {tol.energy:.0%}, noise {noise_med:.1%}) = {max(tol.energy, noise_med):.1%}"
    )
    if walls:
        print(f"   wall time of one {args.models} run: median {statistics.median(walls):.0f} s")

    if args.full:
        print("\n4. cost: one default run of the paper's 13 models (pretrained weights unavailable here: random)")
        wall = run_suite("paper13", folder / "paper13.json")
        print(f"   {wall / 60:.1f} min (target < 15 min)")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    main()
