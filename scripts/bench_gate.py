"""The regression gate on real runs of the suite: false alarms and detection, measured.

Every figure comes from complete runs of `pytest benchmarks/ --device cpu` in fresh processes with
the default options (passes, rounds, tolerance, --e3p-confirm), as a user runs them:

1. A baseline of 3 runs: three plain runs, merged as three --e3p-save-baseline would merge them.
2. Then identical runs and runs with --e3p-slowdown 0.05, 0.10 and 0.20 (extra matrix work of that
   fraction of each forward pass's time), interleaved so a drift of the machine hits both, each run
   with --e3p-baseline (the 3-run baseline): the verdicts are the run's own, confirmation passes
   included. False alarms: the share of the identical runs' case verdicts that are "regressed";
   detection: the share of the slowed runs' that are.
3. The same runs against 1-run baselines (each run against the run just before it in time that
   is identical or a baseline run), compared afterwards by the same code as `compare`: one look
   at the run's pass values (with the confirmation passes it took against the 3-run baseline).
4. Noise: the between-run spread of each case's run values, the between-pass spread within a run,
   and the gate's noise threshold (median over the case comparisons against the 3-run baseline).
5. Cost: the wall time of each run (confirmation passes included).

With --analyse-only it reads the runs of an earlier --out and also re-decides every comparison with
this checkout's gate (the last look each case reached, at that look's false-alarm level): a change
to the gate's statistics is seen on stored runs before any new run is paid for.

The default suite is the paper's 13 models (what a user runs first). A reduced study, for a busy
machine or a quick look: --models levit_128s,deit_tiny_patch16_224 --runs 3 --slowed 1. The full
study (a quiet machine; about 2 h on the 2-core VM):

    python scripts/bench_gate.py --models paper13 --runs 5 --slowed 1 --out bench-gate-13
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from pytest_e3p.config import DEFAULTS
from pytest_e3p.gate.baseline import REGRESSED, compare_case, compare_files, merge_runs, parse_tolerances, priors
from pytest_e3p.gate.stats import look_alpha, run_value
from pytest_e3p.storage import results

ROOT = Path(__file__).resolve().parent.parent
BASE_RUNS = 3  # the baseline the figures are for
LEVELS = (("slow5", 0.05), ("slow10", 0.10), ("slow20", 0.20))
KINDS = {"base": 0.0, "same": 0.0, **dict(LEVELS)}


def cpu_times() -> list[int]:
    """The machine's CPU time counters (user, nice, system, idle, iowait, irq, softirq, steal), in
    ticks; empty where /proc/stat is not there."""
    try:
        return [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return []


def steal_share(before: list[int], after: list[int]) -> float | None:
    """The share of the CPU time the hypervisor gave to others (steal) between two readings."""
    if len(before) < 8 or len(after) < 8:
        return None
    delta = [a - b for a, b in zip(after, before)]
    return delta[7] / sum(delta) if sum(delta) else None


def run_suite(models: str, out: Path, slowdown: float = 0.0, extra: tuple[str, ...] = ()) -> float:
    """One run in a fresh process; returns its wall time in seconds. A gated run exits 1 when it
    finds a regression: that is a result here, not a failure."""
    cmd = [sys.executable, "-m", "pytest", "benchmarks/", "--device=cpu", f"--e3p-models={models}", "--e3p-weights=random"]
    cmd += ["-q", "-p", "no:cacheprovider", "--benchmark-disable", f"--e3p-results={out}"]
    if slowdown:
        cmd.append(f"--e3p-slowdown={slowdown}")
    cmd += extra
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    out.with_suffix(".log").write_text(proc.stdout + proc.stderr)  # what the user would have seen
    if proc.returncode not in (0, 1) or not out.exists():
        sys.exit(f"run failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    return time.monotonic() - t0


def baseline_of(runs: list[results.ResultsFile]) -> results.ResultsFile:
    """Merge runs, oldest first, exactly as repeated --e3p-save-baseline would."""
    base = None
    for rf in runs:
        base, _ = merge_runs(base, rf, len(runs))
    assert base is not None
    return base


def offline_verdicts(base: results.ResultsFile, cur: results.ResultsFile) -> list[tuple[str, float, float | None]]:
    """(verdict, change, noise) of each case's energy check, one look, as `compare` decides it."""
    tol = parse_tolerances(DEFAULTS["tolerance"])
    out = []
    for checks in compare_files(base, cur, tol).checks.values():
        out += [(c.verdict, c.change, c.noise) for c in checks if c.metric == "energy"]
    return out


def in_run_verdicts(rf: results.ResultsFile) -> list[tuple[str, float, float | None]]:
    """(verdict, change, noise) the run itself gave each measured case against its baseline."""
    return [(c.verdict, c.change_vs_baseline, c.noise_vs_baseline) for c in rf.cases.values() if c.verdict and c.change_vs_baseline is not None]


def redecided_verdicts(base: results.ResultsFile, prior: dict, rf: results.ResultsFile) -> list[tuple[str, float, float | None]]:
    """(verdict, change, noise) of each case's energy against `base` (whose priors() is `prior`),
    decided by this checkout's gate at the last look the run took (its passes beyond the default's
    are confirmation passes)."""
    tol, confirm, passes = parse_tolerances(DEFAULTS["tolerance"]), int(DEFAULTS["confirm"]), int(DEFAULTS["passes"])
    out = []
    for cid, c in rf.cases.items():
        if cid in base.cases and c.change_vs_baseline is not None:
            look = 1 + max(0, len(c.pass_values("energy")) - passes)
            checks = compare_case(base.cases[cid], c, tol, prior, alpha=look_alpha(look, confirm))
            out += [(ch.verdict, ch.change, ch.noise) for ch in checks if ch.metric == "energy"]
    return out


def plan_runs(runs: int, slowed: int) -> list[str]:
    """The kinds of the runs in time order: the baseline's, then the identical and slowed ones,
    the slowed spread evenly among the identical."""
    slow = [level for _ in range(slowed) for level, _ in LEVELS]
    total = runs + len(slow)
    at = {round((i + 1) * total / (len(slow) + 1)) - 1: s for i, s in enumerate(slow)}
    return ["base"] * BASE_RUNS + [at.get(i, "same") for i in range(total)]


def rate(rows: list[tuple[str, float, float | None]]) -> str:
    flagged = sum(v == REGRESSED for v, _, _ in rows)
    return f"{flagged} of {len(rows)} ({flagged / len(rows):.0%})" if rows else "no comparison"


def spread_of_verdicts(rows: list[tuple[str, float, float | None]]) -> str:
    return ", ".join(f"{v} {n}" for v, n in Counter(v for v, _, _ in rows).most_common())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="paper13", help="a model set (paper13: the default suite) or a comma-separated list")
    ap.add_argument("--runs", type=int, default=5, help="identical runs against the baseline (after the baseline's 3)")
    ap.add_argument("--slowed", type=int, default=1, help="runs at each slowdown (+5%%, +10%%, +20%%)")
    ap.add_argument("--extra", default="", help="more pytest options for every run, space-separated (e.g. --e3p-threads=1)")
    ap.add_argument("--out", default="", help="keep the results files here (a later call with the same --out reuses them)")
    ap.add_argument("--analyse-only", action="store_true", help="no new runs: analyse the NNN-kind.json files already in --out")
    args = ap.parse_args()
    folder = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_gate."))
    folder.mkdir(parents=True, exist_ok=True)
    plan = plan_runs(args.runs, args.slowed)
    if args.analyse_only:
        plan = [p.stem.split("-", 1)[1] for p in sorted(folder.glob("[0-9][0-9][0-9]-*.json"))]
    extra = tuple(args.extra.split())
    print(
        f"defaults: passes {DEFAULTS['passes']}, rounds {DEFAULTS['rounds']} per pass, tolerance {DEFAULTS['tolerance']}, "
        f"--e3p-confirm {DEFAULTS['confirm']}{'; every run also ' + ' '.join(extra) if extra else ''}"
    )
    print(f"{len(plan)} runs of {args.models} on --device cpu (energy: the labelled CPU estimate), results in {folder}", flush=True)
    base_path = folder / "baseline-3.json"
    timeline: list[tuple[str, results.ResultsFile]] = []
    walls: list[float] = []
    for i, kind in enumerate(plan):
        out = folder / f"{i:03d}-{kind}.json"
        wall = ""
        if not out.exists():
            if args.analyse_only:
                sys.exit(f"{out} is missing")
            gated = () if kind == "base" else (f"--e3p-baseline={base_path}",)
            before = cpu_times()
            walls.append(run_suite(args.models, out, KINDS[kind], extra + gated))
            steal = steal_share(before, cpu_times())
            wall = f" {walls[-1] / 60:4.1f} min" + (f", steal {steal:.1%}" if steal is not None else "")
        rf = results.load(out)
        timeline.append((kind, rf))
        if kind == "base" and sum(k == "base" for k, _ in timeline) == BASE_RUNS and not base_path.exists():
            results.save(baseline_of([r for k, r in timeline if k == "base"]), base_path)
        shown = ", ".join(
            f"{cid.split('-')[0]} {c.energy_mj_per_image:.4g}{' ' + c.verdict if c.verdict else ''}"
            for cid, c in sorted(rf.cases.items())
            if c.energy_mj_per_image
        )
        print(f"  run {i + 1:2d}/{len(plan)} {kind:6s}{wall}  energy/img (est.): {shown}", flush=True)

    by_kind = {k: [rf for kd, rf in timeline if kd == k] for k in KINDS}
    print(f"\n1. default options, against the baseline of {BASE_RUNS} runs (the run's own verdicts, confirmation passes included)")
    same_rows = [row for rf in by_kind["same"] for row in in_run_verdicts(rf)]
    drift = f", measured change median {statistics.median(c for _, c, _ in same_rows):+.1%}" if same_rows else ""
    print(f"   false alarms: {rate(same_rows)} case comparisons flagged (target <= 1%){drift}; verdicts: {spread_of_verdicts(same_rows)}")
    for kind, level in LEVELS:
        rows = [row for rf in by_kind[kind] for row in in_run_verdicts(rf)]
        if rows:
            achieved = statistics.median(c for _, c, _ in rows)
            print(
                f"   +{level:.0%} work: caught {rate(rows)} (target >= 90% at +10%), measured change median {achieved:+.1%}; verdicts: {spread_of_verdicts(rows)}"
            )
    if args.analyse_only and base_path.exists():
        base3 = results.load(base_path)
        prior3 = priors(base3)
        print("   re-decided by this checkout's gate (the same pass values, the last look each case took):")
        for kind in ("same", *(k for k, _ in LEVELS)):
            rows = [row for rf in by_kind[kind] for row in redecided_verdicts(base3, prior3, rf)]
            if rows:
                noises = [nz for _, _, nz in rows if nz is not None]
                what = "false alarms" if kind == "same" else f"+{KINDS[kind]:.0%} work caught"
                print(
                    f"     {what}: {rate(rows)}; noise median {statistics.median(noises):.1%}, above 50 %: {sum(nz > 0.5 for nz in noises)}; verdicts: {spread_of_verdicts(rows)}"
                )
    confirmed = [c.confirm_passes for kd, rf in timeline if kd != "base" for c in rf.cases.values() if c.confirm_passes]
    compared = sum(len(in_run_verdicts(rf)) for kd, rf in timeline if kd != "base")
    print(f"   confirmation passes: {len(confirmed)} of {compared} case comparisons took some ({sum(confirmed)} passes in all)")

    print("\n2. against a 1-run baseline (the identical or baseline run just before, in time), one look, compared afterwards")
    for kind in ("same", *(k for k, _ in LEVELS)):
        rows = []
        for i, (kd, rf) in enumerate(timeline):
            if kd != kind:
                continue
            before = next((r for k, r in reversed(timeline[:i]) if k in ("base", "same")), None)
            if before is not None:
                rows += offline_verdicts(baseline_of([before]), rf)
        if rows:
            what = "false alarms" if kind == "same" else f"+{KINDS[kind]:.0%} work caught"
            print(f"   {what}: {rate(rows)}; verdicts: {spread_of_verdicts(rows)}")

    print("\n3. noise on this machine (the baseline's and the identical runs)")
    quiet = by_kind["base"] + by_kind["same"]
    for cid in sorted(quiet[0].cases):
        # a run's value as the gate takes it (the median of its log pass values), so the sd is the gate's
        run_values = [run_value(rf.cases[cid].energy_mj_per_image_passes) for rf in quiet if cid in rf.cases and rf.cases[cid].energy_mj_per_image_passes]
        pass_cvs = [rf.cases[cid].energy_spread for rf in quiet if cid in rf.cases and rf.cases[cid].energy_spread is not None]
        if len(run_values) >= 2 and pass_cvs:
            print(f"   {cid}: between runs sd {statistics.stdev(run_values):.1%}, within a run between passes median CV {statistics.median(pass_cvs):.1%}")
    noises = [nz for _, _, nz in same_rows if nz is not None]
    if noises:
        print(f"   the gate's noise threshold against the {BASE_RUNS}-run baseline: median {statistics.median(noises):.1%} (target <= 6%)")
    if walls:
        print(f"   wall time of one {args.models} run: median {statistics.median(walls) / 60:.1f} min, max {max(walls) / 60:.1f} (target < 15 min for paper13)")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    main()
