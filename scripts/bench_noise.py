"""Where the per-pass level shifts come from: a reproducible study of the between-pass spread.

The rounds of one pass agree to 1-3 %, but the same model's passes sit at different levels (issue
24). Each setting below runs the same passes of the same models in fresh processes, and the script
prints, per model and setting, the between-pass spread (CV of the pass values within a process,
median over the processes) and the between-process spread (sd of the processes' medians):

  suite         the suite's way: each pass over all models in turn (pass 1 of every model, then
                pass 2, ...), the model built once and kept, glibc malloc pinned (--e3p-malloc fixed)
  rebuild       the model built afresh for each pass (where its weights and activations land)
  thp           torch's THP_MEM_ALLOC_ENABLE=1 (large CPU allocations on transparent huge pages)
  no-onednn-cache  ONEDNN_PRIMITIVE_CACHE_CAPACITY=0 (oneDNN's primitive cache off)
  heap-after    every measured model preceded by building and running the other models' (the heap
                after other models, as in a 13-model run)
  reversed      the models in the reverse order
  one-model     each model alone in its own process (no other model in the heap at all)

Latency only (energy on this VM is an estimate from CPU time, so it follows latency).

    python scripts/bench_noise.py --models levit_128s,deit_tiny_patch16_224 --repeats 2          # reduced
    python scripts/bench_noise.py --models paper13 --repeats 3 --passes 3                         # full (quiet machine, ~1 h)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SETTINGS: dict[str, dict[str, str]] = {  # setting -> environment it adds
    "suite": {},
    "rebuild": {},
    "thp": {"THP_MEM_ALLOC_ENABLE": "1"},
    "no-onednn-cache": {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "0"},
    "heap-after": {},
    "reversed": {},
    "one-model": {},
}


def worker(setting: str, models: list[str], passes: int, rounds: int, min_round_s: float, threads: int) -> None:
    """In a fresh process: the passes of `models` under `setting`; prints {model: [pass values]}."""
    import timm
    import torch

    from pytest_e3p.hardware.allocator import pin_glibc_malloc

    pin_glibc_malloc()  # the suite's default (--e3p-malloc fixed)
    if threads:
        torch.set_num_threads(threads)  # as --e3p-threads

    def build(name: str):
        torch.manual_seed(0)  # the same random weights in every pass and process, as the suite seeds them
        model = timm.create_model(name, pretrained=False).eval()
        size = model.pretrained_cfg.get("input_size", (3, 224, 224))
        return model, torch.randn(1, *size)

    def one_pass(model, x) -> float:
        with torch.inference_mode():
            model(x)  # warm-up
            values = []
            for _ in range(rounds):
                n, t0 = 0, time.perf_counter()
                while time.perf_counter() - t0 < min_round_s:
                    model(x)
                    n += 1
                values.append((time.perf_counter() - t0) * 1000.0 / n)
        return statistics.median(values)

    if setting == "reversed":
        models = models[::-1]
    built = {} if setting == "rebuild" else {m: build(m) for m in models}
    out: dict[str, list[float]] = {m: [] for m in models}
    for _ in range(passes):
        for m in models:
            if setting == "heap-after":
                for other in models:  # the heap after the other models ran
                    if other != m:
                        om, ox = build(other)
                        with torch.inference_mode():
                            om(ox)
                        del om
            model, x = build(m) if setting == "rebuild" else built[m]
            out[m].append(one_pass(model, x))
    print(json.dumps(out))


def run_worker(setting: str, models: list[str], args: argparse.Namespace) -> dict[str, list[float]]:
    cmd = [sys.executable, __file__, "--worker", setting, "--models", ",".join(models), "--passes", str(args.passes)]
    cmd += ["--rounds", str(args.rounds), "--min-round-s", str(args.min_round_s), "--threads", str(args.threads)]
    env = {**os.environ, **SETTINGS[setting], "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        sys.exit(f"{setting}: worker failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cv(values: list[float]) -> float:
    logs = [math.log(v) for v in values]
    return statistics.stdev(logs) if len(logs) >= 2 else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="paper13", help="a model set (paper13) or a comma-separated list")
    ap.add_argument("--settings", default=",".join(SETTINGS), help=f"which of {', '.join(SETTINGS)}")
    ap.add_argument("--repeats", type=int, default=3, help="fresh processes per setting")
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--min-round-s", type=float, default=0.2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads, as --e3p-threads (0: torch's default)")
    ap.add_argument("--worker", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    from pytest_e3p.models.zoo import MODEL_SETS

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.models in MODEL_SETS:
        models = [str(m) for m in MODEL_SETS[args.models]]
    if args.worker:
        worker(args.worker, models, args.passes, args.rounds, args.min_round_s, args.threads)
        return
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        sys.exit(f"unknown setting(s) {', '.join(unknown)}: choose from {', '.join(SETTINGS)}")
    threads = f"{args.threads} torch thread(s)" if args.threads else "torch's default threads"
    print(
        f"{len(models)} model(s), {args.passes} passes x {args.rounds} rounds of >= {args.min_round_s:g} s, {threads}, {args.repeats} process(es) per setting"
    )
    print("per model: between-pass CV within a process (median over processes) / between-process sd of the pass medians; latency ms/img median")
    # the settings interleaved per repeat, so a drift of the machine hits them alike
    got: dict[str, dict[str, list[list[float]]]] = {s: {m: [] for m in models} for s in settings}
    for r in range(args.repeats):
        for s in settings:
            if s == "one-model":
                values = {m: v for m in models for v in run_worker(s, [m], args).values()}
            else:
                values = run_worker(s, models, args)
            for m, v in values.items():
                got[s][m].append(v)
            print(f"  repeat {r + 1}/{args.repeats} {s}: " + ", ".join(f"{m} {statistics.median(v):.3g}" for m, v in values.items()), flush=True)
    print()
    width = max(len(m) for m in models)
    print(f"{'model':{width}s}  " + "  ".join(f"{s:>22s}" for s in settings))
    for m in models:
        cells = []
        for s in settings:
            per_process = got[s][m]
            within = statistics.median(cv(v) for v in per_process)
            between = cv([statistics.median(v) for v in per_process]) if len(per_process) >= 2 else float("nan")
            cells.append(f"{within:6.1%} / {between:5.1%} {statistics.median(x for v in per_process for x in v):5.3g}")
        print(f"{m:{width}s}  " + "  ".join(f"{c:>22s}" for c in cells))


if __name__ == "__main__":
    main()
