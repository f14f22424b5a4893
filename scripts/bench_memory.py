"""Peak-memory accounting against sizes computed by hand: a stack of nn.Linear(d, d) layers at batch B.

What the stack needs, in fp32 (4 bytes a value), inference mode:
  weights      L x (d x d + d)
  activations  B x d values a block. The input is made before the measurement starts, so it is not
               counted; while layer i runs, its input and its output are alive: 1 block allocated
               in the measurement for one layer, 2 from two layers on.
For each size, one fresh process (so no size inherits another's freed memory) runs a small GEMM to
get the BLAS library's one-time set-up out of the way, then measures with pytest_e3p.measure.memory.PeakMemory:
  build+fwd    the model built and run once inside the measurement: expected weights + activations
  2nd fwd      a second forward of the same model: expected activations
and prints expected and measured growth (MiB) and their ratio. Blocks of 32 MiB and more (glibc's
largest mmap threshold on 64-bit) are always fresh mappings, so their pages show exactly. Smaller blocks
go where glibc's adaptive thresholds put them (heap or mmap, pages reused or new), so the resident
growth they cause follows the allocator as much as the tensors: the 4x256 row's "2nd fwd" shows it.

    python scripts/bench_memory.py [--method hwm|sampler] [--d 4096] [--sizes 1x2048,2x2048,4x2048,4x256]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

MIB = 2**20


def expected_mib(layers: int, batch: int, d: int) -> tuple[float, float]:
    """(weights + activations, activations) in MiB."""
    weights = layers * (d * d + d) * 4
    acts = (1 if layers == 1 else 2) * batch * d * 4  # the input is allocated before the measurement
    return (weights + acts) / MIB, acts / MIB


def measure_one(layers: int, batch: int, d: int, method: str) -> dict:
    import torch

    from pytest_e3p.measure import memory

    if method == "sampler":
        memory.CLEAR_REFS = "/nonexistent/clear_refs"  # force the fallback
    torch.manual_seed(0)
    with torch.inference_mode():
        torch.nn.Linear(64, 64)(torch.randn(8, 64))  # BLAS set-up, outside the measurement
        x = torch.randn(batch, d)
        with memory.PeakMemory("cpu") as first:
            model = torch.nn.Sequential(*[torch.nn.Linear(d, d) for _ in range(layers)])
            y = model(x)
            del y
        with memory.PeakMemory("cpu") as second:
            y = model(x)
            del y
    assert first.peak is not None and second.peak is not None
    return {"build_fwd_mb": first.peak.growth_mb, "fwd_mb": second.peak.growth_mb, "method": first.peak.method, "start_mb": first.peak.start_mb}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--method", choices=["hwm", "sampler"], default="hwm")
    ap.add_argument("--d", type=int, default=4096)
    ap.add_argument("--sizes", default="1x2048,2x2048,4x2048,4x256", help="LAYERSxBATCH, comma separated")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        layers, batch = (int(v) for v in args.one.split("x"))
        print(json.dumps(measure_one(layers, batch, args.d, args.method)))
        return
    print(f"d={args.d}, fp32, one fresh process per size; MiB = 2**20 bytes")
    print(f"{'layers x batch':>14} {'act block':>9} | {'build+fwd exp':>13} {'measured':>9} {'ratio':>6} | {'2nd fwd exp':>11} {'measured':>9} {'ratio':>6}")
    method = ""
    for size in args.sizes.split(","):
        layers, batch = (int(v) for v in size.split("x"))
        out = subprocess.run(
            [sys.executable, __file__, "--one", size, "--d", str(args.d), "--method", args.method], check=True, capture_output=True, text=True
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        method = r["method"]
        total, acts = expected_mib(layers, batch, args.d)
        block = batch * args.d * 4 / MIB
        print(
            f"{size:>14} {block:>6.0f} MiB | {total:>13.1f} {r['build_fwd_mb']:>9.1f} {r['build_fwd_mb'] / total:>6.3f} | "
            f"{acts:>11.1f} {r['fwd_mb']:>9.1f} {r['fwd_mb'] / acts:>6.3f}"
        )
    print(f"method: {method}")


if __name__ == "__main__":
    main()
