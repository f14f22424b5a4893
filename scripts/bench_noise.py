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
  threads1      one torch thread instead of torch's default (on a 2-vCPU VM the default is 2, and
                one thread descheduled by the host stalls the other at every barrier)

Each pass is timed as the suite times it: a warm-up of --warmup-s, then --rounds rounds of at least
--min-round-s, the pass's value the median of its rounds. Before each model's pass, a fixed probe (a
512x512 fp32 matmul, the same threads) is timed for 0.2 s: the host's speed at that moment. Its
spread, and the spread of model/probe, say how much of a model's level shift is the host (CPU
frequency, other tenants) rather than the process: a shift the probe shares is the host's.

Latency only (energy on this VM is an estimate from CPU time, so it follows latency).

    python scripts/bench_noise.py --models levit_128s,deit_tiny_patch16_224 --repeats 2          # reduced
    python scripts/bench_noise.py --models paper13 --repeats 1 --rounds 3 --min-round-s 0.5 --warmup-s 1 --out noise13.json
                                       # 13 models: about 5 min a process on 2 cores (heap-after: far longer, it builds every other model before each pass)
    python scripts/bench_noise.py --models paper13 --repeats 3                                    # the suite's protocol (quiet machine, hours)
    python scripts/bench_noise.py --analyse noise13.json                                         # the tables of a saved study
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

from pytest_e3p.config import DEFAULTS

ROOT = Path(__file__).resolve().parent.parent

SETTINGS: dict[str, dict[str, str]] = {  # setting -> environment it adds
    "suite": {},
    "rebuild": {},
    "thp": {"THP_MEM_ALLOC_ENABLE": "1"},
    "no-onednn-cache": {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "0"},
    "heap-after": {},
    "reversed": {},
    "one-model": {},
    "threads1": {},
}


def worker(setting: str, models: list[str], args: argparse.Namespace) -> None:
    """In a fresh process: the passes of `models` under `setting`; prints
    {"values": {model: [pass ms/img]}, "probe": {model: [probe ms before each pass]}}."""
    import timm
    import torch

    from pytest_e3p.hardware.allocator import pin_glibc_malloc
    from pytest_e3p.measure.protocols import warm_up

    pin_glibc_malloc()  # the suite's default (--e3p-malloc fixed)
    if setting == "threads1":
        torch.set_num_threads(1)
    elif args.threads:
        torch.set_num_threads(args.threads)  # as --e3p-threads

    def build(name: str):
        torch.manual_seed(0)  # the same random weights in every pass and process, as the suite seeds them
        model = timm.create_model(name, pretrained=False).eval()
        size = model.pretrained_cfg.get("input_size", (3, 224, 224))
        return model, torch.randn(args.batch, *size)

    def timed(call, min_s: float) -> float:
        n, t0 = 0, time.perf_counter()
        while n < 1 or time.perf_counter() - t0 < min_s:
            call()
            n += 1
        return (time.perf_counter() - t0) * 1000.0 / n  # ms per call

    a = torch.randn(512, 512, generator=torch.Generator().manual_seed(0))

    def probe() -> float:
        with torch.inference_mode():
            torch.mm(a, a)
            return timed(lambda: torch.mm(a, a), 0.2)

    def one_pass(model, x) -> float:
        with torch.inference_mode():
            warm_up(lambda: model(x), lambda: None, args.warmup_s)  # as the suite warms up
            return statistics.median(timed(lambda: model(x), args.min_round_s) for _ in range(args.rounds)) / args.batch  # ms/img

    if setting == "reversed":
        models = models[::-1]
    built = {} if setting == "rebuild" else {m: build(m) for m in models}
    out: dict[str, dict[str, list[float]]] = {"values": {m: [] for m in models}, "probe": {m: [] for m in models}}
    for _ in range(args.passes):
        for m in models:
            if setting == "heap-after":
                for other in models:  # the heap after the other models ran
                    if other != m:
                        om, ox = build(other)
                        with torch.inference_mode():
                            om(ox)
                        del om
            model, x = build(m) if setting == "rebuild" else built[m]
            out["probe"][m].append(probe())
            out["values"][m].append(one_pass(model, x))
    print(json.dumps(out))


def run_worker(setting: str, models: list[str], args: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    cmd = [sys.executable, __file__, "--worker", setting, "--models", ",".join(models), "--passes", str(args.passes)]
    cmd += [
        "--rounds",
        str(args.rounds),
        "--min-round-s",
        str(args.min_round_s),
        "--warmup-s",
        str(args.warmup_s),
        "--batch",
        str(args.batch),
        "--threads",
        str(args.threads),
    ]
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
    ap.add_argument("--rounds", type=int, default=int(DEFAULTS["rounds"]), help="rounds per pass (the suite's default)")
    ap.add_argument("--min-round-s", type=float, default=float(DEFAULTS["min_round_s"]), help="shortest round, s (the suite's default)")
    ap.add_argument("--warmup-s", type=float, default=float(DEFAULTS["warmup_s"]), help="warm-up before each pass, s (the suite's default)")
    ap.add_argument("--batch", type=int, default=16, help="images per forward pass (the suite's default on a CPU: 16)")
    ap.add_argument("--out", default="", help="also write every pass value (JSON) here")
    ap.add_argument("--threads", type=int, default=0, help="torch threads, as --e3p-threads (0: torch's default)")
    ap.add_argument("--analyse", default="", help="no new runs: print the tables of a file written by --out")
    ap.add_argument("--worker", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    from pytest_e3p.models.zoo import MODEL_SETS

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.models in MODEL_SETS:
        models = [str(m) for m in MODEL_SETS[args.models]]
    if args.worker:
        worker(args.worker, models, args)
        return
    if args.analyse:
        saved = json.loads(Path(args.analyse).read_text())
        report(saved["values"], saved["probe"])
        return
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        sys.exit(f"unknown setting(s) {', '.join(unknown)}: choose from {', '.join(SETTINGS)}")
    threads = f"{args.threads} torch thread(s)" if args.threads else "torch's default threads"
    print(
        f"{len(models)} model(s), {args.passes} passes x (warm-up {args.warmup_s:g} s + {args.rounds} rounds of >= {args.min_round_s:g} s), "
        f"batch {args.batch}, {threads}, {args.repeats} process(es) per setting"
    )
    # the settings interleaved per repeat, so a drift of the machine hits them alike
    got: dict[str, dict[str, list[list[float]]]] = {s: {m: [] for m in models} for s in settings}
    probes: dict[str, dict[str, list[list[float]]]] = {s: {m: [] for m in models} for s in settings}
    for r in range(args.repeats):
        for s in settings:
            t0 = time.monotonic()
            if s == "one-model":
                parts = [run_worker(s, [m], args) for m in models]
                values = {m: v for p in parts for m, v in p["values"].items()}
                probe = {m: v for p in parts for m, v in p["probe"].items()}
            else:
                out = run_worker(s, models, args)
                values, probe = out["values"], out["probe"]
            for m in models:
                got[s][m].append(values[m])
                probes[s][m].append(probe[m])
            if args.out:  # after every process, so a study cut short keeps what it measured
                Path(args.out).write_text(json.dumps({"args": vars(args), "values": got, "probe": probes}, indent=1))
            print(
                f"  repeat {r + 1}/{args.repeats} {s} ({time.monotonic() - t0:.0f} s): "
                + ", ".join(f"{m.split('_')[0]} {statistics.median(v):.3g}" for m, v in values.items()),
                flush=True,
            )
    report(got, probes)


def report(got: dict[str, dict[str, list[list[float]]]], probes: dict[str, dict[str, list[list[float]]]]) -> None:
    """The tables: per model and setting, then per setting over the models. A setting that did not
    run (a study cut short) is left out."""
    settings = [s for s, per_model in got.items() if all(per_model.values())]
    models = list(next(iter(got.values())))
    print()
    print("per model: between-pass CV within a process (median over processes) / between-process sd of the process medians; latency ms/img median")
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
    print()
    print("per setting, over the models (median; max): between-pass CV | between-process sd | the probe's between-pass CV | model/probe between-pass CV")
    for s in settings:
        within = [statistics.median(cv(v) for v in got[s][m]) for m in models]
        between = [cv([statistics.median(v) for v in got[s][m]]) for m in models] if min(len(got[s][m]) for m in models) >= 2 else [float("nan")]
        probe_cv = [statistics.median(cv(v) for v in probes[s][m]) for m in models]
        ratio_cv = [statistics.median(cv([x / p for x, p in zip(v, pv)]) for v, pv in zip(got[s][m], probes[s][m])) for m in models]
        print(
            f"  {s:16s} {statistics.median(within):6.1%} ({max(within):5.1%}) | {statistics.median(between):6.1%} ({max(between):5.1%}) | "
            f"{statistics.median(probe_cv):6.1%} ({max(probe_cv):5.1%}) | {statistics.median(ratio_cv):6.1%} ({max(ratio_cv):5.1%})"
        )


if __name__ == "__main__":
    main()
