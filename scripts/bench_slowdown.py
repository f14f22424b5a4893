"""What --e3p-slowdown really adds: the forward pass timed with and without its extra work, alternating.

scripts/bench_gate.py measures the gate's detection at +5/+10/+20 % of work, which is only as true as
the work `--e3p-slowdown` adds. This script builds each model as the suite does (batch 16 on the CPU,
the suite's warm-up), wraps its forward pass with `measure.protocols.slowed` exactly as a measured
pass does, and times plain and slowed rounds alternately in one process (so a drift of the machine
hits both alike). It prints the added time as a fraction of the plain time, per model and fraction,
median over the pairs of rounds, with the spread of the pairs.

    python scripts/bench_slowdown.py                                  # 3 models, +5/+10/+20 %
    python scripts/bench_slowdown.py --models paper13 --pairs 9
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

from pytest_e3p.config import DEFAULTS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="levit_192,tiny_vit_5m_224.in1k,deit_small_patch16_224", help="a model set (paper13) or a comma-separated list")
    ap.add_argument("--fractions", default="0.05,0.1,0.2", help="the --e3p-slowdown values to check")
    ap.add_argument("--pairs", type=int, default=7, help="plain/slowed round pairs per model and fraction")
    ap.add_argument("--round-s", type=float, default=0.5, help="shortest round, s")
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()

    import timm
    import torch

    from pytest_e3p.hardware.allocator import pin_glibc_malloc
    from pytest_e3p.hardware.devices import cpu_name
    from pytest_e3p.measure.protocols import slowed, warm_up
    from pytest_e3p.models.zoo import MODEL_SETS

    pin_glibc_malloc()  # the suite's default (--e3p-malloc fixed)
    models = [str(m) for m in MODEL_SETS[args.models]] if args.models in MODEL_SETS else [m.strip() for m in args.models.split(",") if m.strip()]
    fractions = [float(f) for f in args.fractions.split(",")]
    print(f"{cpu_name()}, {torch.get_num_threads()} torch threads, batch {args.batch}, {args.pairs} pairs of >= {args.round_s:g} s rounds")

    def ms_per_call(call) -> float:
        n, t0 = 0, time.perf_counter()
        while n < 1 or time.perf_counter() - t0 < args.round_s:
            call()
            n += 1
        return (time.perf_counter() - t0) * 1000.0 / n

    print(f"{'model':40s} " + "  ".join(f"{'+' + format(f, '.0%'):>20s}" for f in fractions))
    for name in models:
        torch.manual_seed(0)
        model = timm.create_model(name, pretrained=False).eval()
        x = torch.randn(args.batch, *model.pretrained_cfg.get("input_size", (3, 224, 224)))
        cells = []
        forward = functools.partial(model, x)  # one batch through the model
        with torch.inference_mode():
            for fraction in fractions:
                batch_s = warm_up(forward, lambda: None, float(DEFAULTS["warmup_s"]))
                extra = slowed(forward, lambda: None, batch_s, fraction)
                added = []
                for _ in range(args.pairs):
                    plain_ms = ms_per_call(forward)
                    added.append(ms_per_call(extra) / plain_ms - 1.0)
                q = statistics.quantiles(added, n=4) if len(added) >= 2 else [added[0]] * 3
                cells.append(f"{statistics.median(added):+6.1%} [{q[0]:+.1%},{q[2]:+.1%}]")
        print(f"{name:40s} " + "  ".join(f"{c:>20s}" for c in cells), flush=True)
    print("each cell: the added time as a fraction of the plain forward pass, median [quartiles] over the pairs")


if __name__ == "__main__":
    main()
