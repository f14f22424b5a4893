"""The one factory of result records for the tests that gate, store and report results."""

import random

from pytest_e3p.metrics import sam as sam_fn
from pytest_e3p.storage import results


def noisy(level, cv, n=10, seed=0):
    """`n` values around `level` with a coefficient of variation `cv`, the same on every run (seeded)."""
    rng = random.Random(seed)
    return [level * (1 + rng.gauss(0, cv)) for _ in range(n)]


def case_result(case_id="m-cpu-synthetic", energy_mj=None, **fields):
    """A CaseResult of a case on the CPU (synthetic data, batch 16, 224 px, fp32, energy measured):
    `fields` set what a test is about. `energy_mj`: measured around that energy per image and 5 ms
    per image, 1 % noise, with 10 round samples and 3 pass values."""
    values = dict(
        case_id=case_id,
        model="m.tag",
        device="cpu",
        dataset="synthetic",
        batch_size=16,
        image_size=[3, 224, 224],
        precision="fp32",
        energy_kind="measured",
    )
    if energy_mj is not None:
        values.update(
            energy_mj_per_image_samples=noisy(energy_mj, 0.01),
            latency_ms_per_image_samples=noisy(5.0, 0.01),
            energy_mj_per_image_passes=noisy(energy_mj, 0.01, 3),
            latency_ms_per_image_passes=noisy(5.0, 0.01, 3),
            passes=3,
        )
    values.update(fields)
    return results.CaseResult(**values)


def results_file(cases, device="cpu", identity=None, environment=None, protocol=None, **fields):
    """A ResultsFile holding `cases` by id. `device`: a device name, on the machine `identity` names
    (by default one "test machine"), or the whole device record."""
    return results.ResultsFile(
        device=device if isinstance(device, dict) else {"name": device, "identity": identity if identity is not None else {"name": "test machine"}},
        environment=environment if environment is not None else {},
        protocol=protocol if protocol is not None else {},
        cases={c.case_id: c for c in cases},
        **fields,
    )


def ranked_case(model, device, dataset, energy, top1, netscore, kind="measured"):
    """A case of a ranking: its model's NetScore and top-1, measured energy and SAM."""
    return case_result(
        f"{model}-{device}-{dataset}",
        model=f"{model}.tag",
        device=device,
        dataset=dataset,
        batch_size=64,
        params_m=5.0,
        gmacs=1.0,
        top1_ref=top1,
        netscore=netscore,
        energy_kind=kind,
        energy_source="nvml-counter",
        boundary="GPU board",
        energy_mj_per_image=energy,
        energy_mj_per_image_samples=[energy] * 5,
        latency_ms_per_image=1.0,
        top1=top1,
        top1_source="measured",
        sam=sam_fn(top1 / 100, energy),
    )


# A hand-checked example: NetScore order a > b > c > d; on tx2 energy order is c < a < d < b.
TX2 = [
    ranked_case("a", "tx2", "cifar10", 200.0, 90.0, 70.0),
    ranked_case("b", "tx2", "cifar10", 400.0, 92.0, 65.0),
    ranked_case("c", "tx2", "cifar10", 94.0, 80.0, 60.0),
    ranked_case("vit_small_patch16_224", "tx2", "cifar10", 200.0 / 0.47, 85.0, 50.0),
]
RTX = [
    ranked_case("a", "rtx3050", "cifar10", 300.0, 90.0, 70.0),
    ranked_case("b", "rtx3050", "cifar10", 250.0, 92.0, 65.0),
    ranked_case("c", "rtx3050", "cifar10", 500.0, 80.0, 60.0),
]


def file_of(cases, device):
    """The results file of one device's ranked cases."""
    return results_file(
        cases,
        device,
        identity={"name": device.upper()},
        environment={"torch": "2.x"},
        protocol={"energy_kind": "measured", "energy_source": "nvml-counter", "boundary": "GPU board", "precision": "fp32", "batch_size": 64},
    )
