"""Where the between-run noise of a CPU figure comes from: identical runs in fresh processes, with
glibc malloc's thresholds pinned (--e3p-malloc fixed, the default) and left adaptive (default),
alternating so that a drift of the machine hits both alike.

Prints, per setting and case, the latency per image of each process (median of its passes), the
between-process spread (sd of the log values) and the within-process spread (CV of the passes).

    python scripts/bench_noise.py [--models levit_128s,deit_tiny_patch16_224] [--processes 6]
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from pytest_e3p import results

ROOT = Path(__file__).resolve().parent.parent


def one_run(models: str, malloc: str, out: Path) -> results.ResultsFile:
    cmd = [
        sys.executable, "-m", "pytest", "benchmarks/", "--device=cpu", f"--e3p-models={models}", "--e3p-weights=random",
        f"--e3p-malloc={malloc}", "--e3p-passes=3", "-q", "-p", "no:cacheprovider", "--benchmark-disable", f"--e3p-results={out}",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"run failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-1000:]}")
    return results.load(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="levit_128s,deit_tiny_patch16_224")
    ap.add_argument("--processes", type=int, default=6, help="fresh processes per setting")
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench_noise."))
    runs: dict[str, list[results.ResultsFile]] = {"fixed": [], "default": []}
    for i in range(args.processes):
        for malloc in ("fixed", "default"):
            runs[malloc].append(one_run(args.models, malloc, folder / f"{i}-{malloc}.json"))
            print(f"  process {i + 1}/{args.processes} malloc {malloc} done", flush=True)
    for malloc, rfs in runs.items():
        print(f"\n--e3p-malloc {malloc} ({rfs[0].protocol.get('allocator')}):")
        for cid in sorted(rfs[0].cases):
            values = [rf.cases[cid].latency_ms_per_image for rf in rfs]
            within = statistics.median(rf.cases[cid].latency_spread or 0.0 for rf in rfs)
            between = statistics.stdev(math.log(v) for v in values)
            print(f"   {cid}: ms/img per process {', '.join(f'{v:.3g}' for v in values)}; between processes sd {between:.1%}, "
                  f"range {max(values) / min(values) - 1:.0%}; within a process, passes CV {within:.1%}")


if __name__ == "__main__":
    main()
