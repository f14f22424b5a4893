"""Rendering time of a large report: 3 devices x 2 datasets x 25 models, plots included.

The results files are constructed here (the 25 candidates, stage-1 figures from the bundled table,
made-up energies): this times the rendering, it measures nothing about any device.

    python scripts/bench_report.py
"""

from __future__ import annotations

import random
import tempfile
import time

from pytest_e3p.metrics import netscore, sam
from pytest_e3p.models.zoo import CANDIDATES, parse_model, reference
from pytest_e3p.report.markdown import write_report
from pytest_e3p.storage import results


def constructed_file(device: str, seed: int) -> results.ResultsFile:
    rng = random.Random(seed)
    cases = {}
    for dataset in ("imagenet", "cifar10"):
        for name in CANDIDATES:
            m = parse_model(name)
            ref = reference(m)
            energy = rng.uniform(20, 400)
            top1 = ref.top1 if dataset == "imagenet" else min(99.0, ref.top1 + 15)
            c = results.CaseResult(
                case_id=f"{m.case_id}-{device}-{dataset}",
                model=m.full,
                device=device,
                dataset=dataset,
                batch_size=64,
                image_size=[3, 224, 224],
                precision="fp32",
                params_m=ref.params_m,
                gmacs=1.0,
                top1_ref=ref.top1,
                netscore=netscore(ref.top1, ref.params_m, 1.0),
                energy_kind="measured",
                energy_source="nvml-counter",
                boundary="GPU board",
                energy_mj_per_image=energy,
                energy_mj_per_image_samples=[energy] * 15,
                latency_ms_per_image=energy / 20,
                top1=top1,
                top1_source="measured",
                sam=sam(top1 / 100, energy),
            )
            cases[c.case_id] = c
    return results.ResultsFile({"name": device, "identity": {"name": device}}, {"torch": "x"}, {"energy_kind": "measured"}, cases)


def main() -> None:
    files = [constructed_file(d, i) for i, d in enumerate(("rtx3050", "tx2", "orin-nx"))]
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        path = write_report(files, d)
        took = time.perf_counter() - t0
        pngs = len(list(path.parent.glob("*.png")))
        print(
            f"report of 3 devices x 2 datasets x 25 models: {took:.2f} s ({pngs} plots, {len(path.read_text().splitlines())} lines of Markdown); target < 10 s"
        )


if __name__ == "__main__":
    main()
