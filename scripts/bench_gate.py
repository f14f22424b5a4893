"""The regression gate on real runs of the suite: false alarms and detection, measured.

Every figure comes from complete runs of `pytest benchmarks/ --device cpu` in fresh processes, with
the default protocol (passes, rounds, tolerance), compared by the same code as `--e3p-baseline` and
`compare` (one look: the confirmation passes of --e3p-confirm need a run against a baseline):

1. False alarms: R identical runs. Each is compared with a baseline merged (as --e3p-save-baseline
   does) from K *other* identical runs, the K before it in time order (cyclically), for K = 1 and
   K = 3 (or R - 1 where fewer): R comparisons per case and K.
2. Detection: runs with --e3p-slowdown 0.05, 0.10 and 0.20 (extra matrix work of that fraction of
   each forward pass's time), each compared with a baseline of the K identical runs nearest in time,
   K = 1 and 3. Slowed and identical runs are interleaved, so a drift of the machine hits both.
   The rate printed is the share of case comparisons flagged "regressed": measured, not computed.
3. Noise: the between-run spread of each case's run values, the between-pass spread within runs,
   and the gate's noise threshold (median).
4. Cost (--full): the wall time of one default run.

The default suite is the paper's 13 models (what a user runs first). A reduced study, for a busy
machine or a quick look: --models levit_128s,deit_tiny_patch16_224 --runs 3 --slowed 1. The full
study (a quiet machine, about 2 h on the 2-core VM):

    python scripts/bench_gate.py --models paper13 --runs 6 --slowed 2 --out bench-gate-13
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


def run_suite(models: str, out: Path, slowdown: float = 0.0, extra: tuple[str, ...] = ()) -> float:
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
    cmd += extra
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


LEVELS = (("slow5", 0.05), ("slow10", 0.10), ("slow20", 0.20))
KINDS = {"same": 0.0, **dict(LEVELS)}


def plan_runs(runs: int, slowed: int) -> list[tuple[str, float]]:
    """The identical and slowed runs in time order: the slowed ones spread evenly among the others."""
    slow = [level for _ in range(slowed) for level in LEVELS]
    total = runs + len(slow)
    at = {round((i + 1) * total / (len(slow) + 1)): s for i, s in enumerate(slow)}
    same = iter([("same", 0.0)] * runs)
    return [at[i] if i in at else next(same) for i in range(total)]


def rate(rows: list[tuple[str, str, float, float | None]]) -> str:
    flagged = sum(v == REGRESSED for _, v, _, _ in rows)
    return f"{flagged} of {len(rows)} ({flagged / len(rows):.0%})" if rows else "no comparison"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="paper13", help="a model set (paper13: the default suite) or a comma-separated list")
    ap.add_argument("--runs", type=int, default=6, help="identical runs")
    ap.add_argument("--slowed", type=int, default=2, help="runs at each slowdown (+5%%, +10%%, +20%%)")
    ap.add_argument("--threads", type=int, default=0, help="--e3p-threads for every run (0: the default)")
    ap.add_argument("--full", action="store_true", help="also time one default run of the paper's 13 models")
    ap.add_argument("--out", default="", help="keep the results files here (a later call with the same --out reuses them)")
    ap.add_argument("--analyse-only", action="store_true", help="no new runs: analyse the NNN-kind.json files already in --out")
    args = ap.parse_args()
    tol = parse_tolerances(DEFAULTS["tolerance"])
    folder = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_gate."))
    folder.mkdir(parents=True, exist_ok=True)
    plan = plan_runs(args.runs, args.slowed)
    if args.analyse_only:
        plan = [(p.stem.split("-", 1)[1], KINDS[p.stem.split("-", 1)[1]]) for p in sorted(folder.glob("[0-9][0-9][0-9]-*.json"))]
    threads = f"--e3p-threads {args.threads}" if args.threads else "default threads"
    print(f"protocol: passes {DEFAULTS['passes']}, rounds {DEFAULTS['rounds']} per pass, tolerance {DEFAULTS['tolerance']}, {threads}")
    print(f"{len(plan)} runs of {args.models} on --device cpu (energy: the labelled CPU estimate), results in {folder}", flush=True)
    runs: dict[str, list[results.ResultsFile]] = {kind: [] for kind in KINDS}
    order: list[tuple[str, int]] = []  # (kind, index within kind) in time order
    walls = []
    for i, (kind, slowdown) in enumerate(plan):
        out = folder / f"{i:03d}-{kind}.json"
        if not out.exists():
            if args.analyse_only:
                sys.exit(f"{out} is missing")
            walls.append(run_suite(args.models, out, slowdown, (f"--e3p-threads={args.threads}",) if args.threads else ()))
        rf = results.load(out)
        runs[kind].append(rf)
        order.append((kind, len(runs[kind]) - 1))
        values = ", ".join(f"{cid.split('-')[0]} {c.energy_mj_per_image:.4g}" for cid, c in sorted(rf.cases.items()) if c.energy_mj_per_image)
        print(f"  run {i + 1:2d}/{len(plan)} {kind:6s} energy/img (est.): {values}", flush=True)
    same = runs["same"]
    n = len(same)
    if n < 2:
        sys.exit("at least 2 identical runs are needed (--runs)")
    ks = sorted({1, min(3, n - 1)})

    print("\n1. false alarms: each identical run against a baseline of the K identical runs before it (cyclically)")
    noises: list[float] = []
    for k in ks:
        rows = []
        for i in range(n):
            donors = [same[(i - j) % n] for j in range(k, 0, -1)]
            rows += verdicts(baseline_of(donors, k), same[i], tol)
        noises += [nz for _, _, _, nz in rows if nz is not None and k == ks[-1]]
        changes = sorted(abs(c) for _, _, c, _ in rows)
        print(f"   K={k}: flagged {rate(rows)} case comparisons (target <= 1%); |change| median {statistics.median(changes):.1%}, max {changes[-1]:.1%}")

    print("\n2. detection: slowed runs against a baseline of the K identical runs nearest in time")
    same_positions = [i for i, (kind, _) in enumerate(order) if kind == "same"]
    for kind, level in LEVELS:
        for k in sorted({1, min(3, n)}):
            rows = []
            for j, rf in enumerate(runs[kind]):
                pos = next(i for i, (kd, idx) in enumerate(order) if kd == kind and idx == j)
                nearest = sorted(same_positions, key=lambda p: abs(p - pos))[:k]
                rows += verdicts(baseline_of([same[order[p][1]] for p in sorted(nearest)], k), rf, tol)
            if rows:
                achieved = statistics.median(c for _, _, c, _ in rows)
                print(f"   +{level:.0%} work, K={k}: caught {rate(rows)} (target >= 90% at +10%); measured change median {achieved:+.1%}")

    print("\n3. noise on this machine (identical runs)")
    for cid in sorted(same[0].cases):
        run_values = [
            statistics.median(rf.cases[cid].energy_mj_per_image_passes) for rf in same if cid in rf.cases and rf.cases[cid].energy_mj_per_image_passes
        ]
        pass_cvs = [rf.cases[cid].energy_spread for rf in same if cid in rf.cases and rf.cases[cid].energy_spread is not None]
        if len(run_values) >= 2 and pass_cvs:
            print(
                f"   {cid}: between runs sd {log_cv(run_values):.1%} (range {min(run_values):.4g}-{max(run_values):.4g} mJ/img), "
                f"within a run between passes median CV {statistics.median(pass_cvs):.1%}"
            )
    if noises:
        print(f"   the gate's noise threshold against K={ks[-1]}: median {statistics.median(noises):.1%} (target <= 6%)")
    if walls:
        print(f"   wall time of one {args.models} run: median {statistics.median(walls) / 60:.1f} min (target < 15 min for paper13)")

    if args.full:
        print("\n4. cost: one default run of the paper's 13 models (pretrained weights unavailable here: random)")
        wall = run_suite("paper13", folder / "paper13.json")
        print(f"   {wall / 60:.1f} min (target < 15 min)")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    main()
