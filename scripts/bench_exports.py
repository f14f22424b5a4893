"""What each --e3p-export adds to the end of a run: the wall time of every kind on a results file of
N cases (a copy of one recorded case, each with its own id), in a fresh temporary folder.

MLflow is timed twice: into a new sqlite store (its first use creates the database's tables, what
the first export of a project pays) and into the same store again (every later run). Kinds whose
library is not installed print their one line instead of a time.

    python scripts/bench_exports.py [--cases 13] [--repeat 3] [--results tests/data/results-v3-feb1c46.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time
from pathlib import Path

from pytest_e3p.export import ExportContext, export_results
from pytest_e3p.storage.results import ResultsFile, load


def many_cases(rf: ResultsFile, n: int) -> ResultsFile:
    template = next(c for c in rf.cases.values() if c.energy_mj_per_image is not None)
    cases = {f"{template.case_id}-{i}": dataclasses.replace(template, case_id=f"{template.case_id}-{i}") for i in range(n)}
    return dataclasses.replace(rf, cases=cases)


def timed(rf: ResultsFile, kind: str, dest: str, folder: Path) -> tuple[float, str]:
    t0 = time.perf_counter()
    [done] = export_results(rf, [(kind, dest)], ExportContext(results_path=folder / "results.json"))
    return time.perf_counter() - t0, done.line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=13)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--results", default=str(Path(__file__).resolve().parent.parent / "tests/data/results-v3-feb1c46.json"))
    args = parser.parse_args()
    rf = many_cases(load(args.results), args.cases)
    print(f"{args.cases} cases, median of {args.repeat} runs (wall time)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        os.chdir(folder)  # MLflow's local store puts its artifacts under ./mlruns
        for kind in ("csv", "bencher", "openmetrics"):
            runs = [timed(rf, kind, "", folder) for _ in range(args.repeat)]
            line = runs[-1][1]
            print(
                f"{kind:>12}: {statistics.median(t for t, _ in runs) * 1000:8.1f} ms   {line}"
                if "NOT" not in line and "needs" not in line
                else f"{kind:>12}: {line}"
            )
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        first, line = timed(rf, "mlflow", uri, folder)
        if "needs" in line or "NOT" in line:
            print(f"{'mlflow':>12}: {line}")
            return
        later = [timed(rf, "mlflow", uri, folder)[0] for _ in range(args.repeat)]
        print(f"{'mlflow':>12}: {first:8.2f} s into a new store (creating its tables), {statistics.median(later):.2f} s into it again")


if __name__ == "__main__":
    main()
