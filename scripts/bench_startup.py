"""What the plugin costs at startup when a project has e3p benchmarks but only a plain test is selected.

A temporary project holds one e3p benchmark and one plain test; `pytest --collect-only -q -k plain`
is timed there, 5 rounds, the three set-ups interleaved within each round (so a machine that slows
down during the script slows all three alike):

- no plugin:  `-p no:e3p`, the floor;
- before:     the plugin without pytest's cache (`-p no:cacheprovider`): the case list is built at
              collection as it always was before issue 29 (torch and timm imported, device resolved);
- after:      the plugin with the case ids cached by an earlier run of the same options: the
              benchmarks are parametrized by id and the run starts only if one is selected.

Each timing is a fresh interpreter (imports are what is measured), wall clock of the whole command.
Also printed: `python -c "import pytest_e3p.plugin"` and whether torch/timm were imported by the
"after" run. Usage: python scripts/bench_startup.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROJECT = {
    "test_mixed.py": """
def test_plain():
    assert True


def test_bench(e3p):
    e3p.measure()
""",
    # says, after the run, which heavy modules the process imported
    "conftest.py": """
import sys


def pytest_unconfigure(config):
    print("heavy modules imported:", ",".join(m for m in ("torch", "timm") if m in sys.modules) or "none")
""",
}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return elapsed, proc.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds of each set-up (default: 5)")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))}
    pytest = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-k", "plain", "-s"]
    setups = {
        "no plugin": [*pytest, "-p", "no:e3p"],
        "before (case list built at collection)": [*pytest, "-p", "no:cacheprovider"],
        "after (case ids cached, run not started)": pytest,
    }
    with tempfile.TemporaryDirectory(prefix="e3p-startup-") as tmp:
        project = Path(tmp)
        for name, text in PROJECT.items():
            (project / name).write_text(text)
        # an earlier run of the same options, which caches the case ids (what any earlier run does)
        timed([sys.executable, "-m", "pytest", "--collect-only", "-q"], project, env)
        times: dict[str, list[float]] = {name: [] for name in setups}
        imported = ""
        for _ in range(args.rounds):
            for name, cmd in setups.items():
                elapsed, out = timed(cmd, project, env)
                times[name].append(elapsed)
                if name.startswith("after"):
                    imported = next((line for line in out.splitlines() if line.startswith("heavy modules")), "?")
        plugin_import = [timed([sys.executable, "-c", "import pytest_e3p.plugin"], project, env)[0] for _ in range(args.rounds)]

    print(f"CPU: {cpu_name()}, {os.cpu_count()} logical CPUs; Python {platform.python_version()}; {args.rounds} rounds, interleaved")
    print("`pytest --collect-only -q -k plain` in a project with one e3p benchmark and one plain test (wall clock, s):")
    floor = statistics.median(times["no plugin"])
    for name, values in times.items():
        med = statistics.median(values)
        print(f"  {name:42s} median {med:6.2f}  [{' '.join(f'{v:.2f}' for v in values)}]  x{med / floor:.1f} of no plugin")
    before, after = statistics.median(times["before (case list built at collection)"]), statistics.median(times["after (case ids cached, run not started)"])
    print(f"  after / before: {after / before:.2f} ({before - after:.2f} s saved per run)")
    print(f"  {imported} (the after run)")
    print(f"`python -c 'import pytest_e3p.plugin'`: median {statistics.median(plugin_import):.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
