"""The regression gate by simulation, and on the real CPU here.

1. Simulation (the decision rule of pytest_e3p.baseline.decide, unchanged): per-round energy samples
   with a coefficient of variation of 2-5 %, the suite's default round count, 2,000 trials each:
   false alarms on an unchanged model, the share of true +10 % regressions caught, and the smallest
   regression caught 95 % of the time. The CV of real rounds is printed from results files when given
   (--results), so the assumed noise can be checked against measured noise.
2. Real CPU (--real): the same model measured twice back to back (must pass), then with torch limited
   to one thread instead of two (a real slow-down: must fail), on latency and on the labelled energy
   estimate; the estimate is compared only with an estimate baseline.

    python scripts/bench_gate.py [--results .e3p/results.json] [--real]
"""

from __future__ import annotations

import argparse
import json
import statistics

import numpy as np

from pytest_e3p.baseline import REGRESSED, decide
from pytest_e3p.options import SPEC

DEFAULT_ROUNDS = int(next(s[2] for s in SPEC if s[0] == "rounds"))


def rate(shift: float, cv: float, rounds: int, trials: int, rng: np.random.Generator, tol: float = 0.05, run_sd: float = 0.0) -> float:
    hits = 0
    for _ in range(trials):
        base = 40.0 * (1 + rng.normal(0, run_sd)) * (1 + rng.normal(0, cv, rounds))
        cur = 40.0 * (1 + shift) * (1 + rng.normal(0, run_sd)) * (1 + rng.normal(0, cv, rounds))
        hits += decide("energy", "mJ/img", base.tolist(), cur.tolist(), tol).verdict == REGRESSED
    return hits / trials


def smallest_caught(cv: float, rounds: int, trials: int, rng: np.random.Generator) -> float:
    for shift in np.arange(0.05, 0.40, 0.005):
        if rate(shift, cv, rounds, trials, rng) >= 0.95:
            return float(shift)
    return float("nan")


def measured_cv(paths: list[str]) -> None:
    for path in paths:
        cases = json.load(open(path))["cases"]
        cvs = {cid: statistics.stdev(c["energy_mj_per_image_samples"]) / statistics.median(c["energy_mj_per_image_samples"]) for cid, c in cases.items() if len(c["energy_mj_per_image_samples"]) > 2}
        if cvs:
            values = sorted(cvs.values())
            print(f"   {path}: per-round energy CV over {len(values)} cases: median {statistics.median(values):.1%}, range {values[0]:.1%}-{values[-1]:.1%}")


def real_cpu() -> None:
    import subprocess
    import sys
    import tempfile

    from pytest_e3p import results
    from pytest_e3p.baseline import compare_files, parse_tolerances

    model = "deit_tiny_patch16_224"
    common = [sys.executable, "-m", "pytest", "benchmarks/", "--device=cpu", f"--e3p-models={model}", "--e3p-weights=random", "-q", "-p", "no:cacheprovider", "--benchmark-disable"]
    with tempfile.TemporaryDirectory() as d:
        runs = {}
        for name, threads in (("base", "2"), ("again", "2"), ("one-thread", "1")):
            out = f"{d}/{name}.json"
            env = {"OMP_NUM_THREADS": threads, "PATH": "/usr/bin:/bin"}
            subprocess.run([*common, f"--e3p-results={out}"], check=True, capture_output=True, env={**__import__("os").environ, **env})
            runs[name] = results.load(out)
        tol = parse_tolerances("energy=5%,latency=10%")
        for name in ("again", "one-thread"):
            cmp = compare_files(runs["base"], runs[name], tol)
            for checks in cmp.checks.values():
                for c in checks:
                    print(f"   {name:10s} {c.describe()} -> {c.verdict}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=2000)
    ap.add_argument("--results", nargs="*", default=[])
    ap.add_argument("--real", action="store_true")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"1. simulation: tolerance 5 %, Mann-Whitney U at alpha 0.01, {args.trials} trials per figure")
    print("   noise assumed: independent per-round CV 2-5 % (METHOD.md: energy samples are noisy; the CV measured below)")
    measured_cv(args.results)
    for rounds in sorted({5, 10, DEFAULT_ROUNDS}):
        label = " (default)" if rounds == DEFAULT_ROUNDS else ""
        for cv in (0.02, 0.03, 0.05):
            fa = rate(0.0, cv, rounds, args.trials, rng)
            caught = rate(0.10, cv, rounds, args.trials, rng)
            small = smallest_caught(cv, rounds, max(400, args.trials // 5), rng)
            print(f"   rounds {rounds:2d}{label:10s} CV {cv:.0%}: false alarms {fa:.2%} (<= 1%), +10% caught {caught:.1%} (>= 95%), smallest caught 95%: +{small:.1%}")
    fa_drift = rate(0.0, 0.03, DEFAULT_ROUNDS, args.trials, rng, run_sd=0.03)
    print(f"   with a run-to-run offset of 3 % sd on top (thermals, a shared runner): false alarms {fa_drift:.2%} at CV 3 %")
    if args.real:
        print("2. real CPU: deit_tiny, two threads twice, then one thread (energy is the labelled estimate)")
        real_cpu()


if __name__ == "__main__":
    main()
