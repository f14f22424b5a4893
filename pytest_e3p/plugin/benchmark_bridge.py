"""Showing each case in pytest-benchmark's table and JSON.

pytest-benchmark times the calls it makes itself; our rounds are timed by the protocol (device
synchronised at both window edges, energy read at the same edges). Its public `pedantic` API cannot
take timings measured elsewhere, so this is the one place that uses its fixture's `_make_stats`: one
stats entry whose samples are our rounds' seconds per image. tests/test_plugin.py checks the result
in pytest-benchmark's JSON, so a change of that private API fails a test rather than a user's run.
"""

from __future__ import annotations

from typing import Any

from ..measure.protocols import SteadyState
from ..storage.results import CaseResult


def record_rounds(benchmark: Any, steady: SteadyState, result: CaseResult) -> None:
    if benchmark is None or getattr(benchmark, "disabled", False):
        return
    benchmark.group = "e3p: time per image (seconds), one sample per round"  # its table has no unit per row; read when the stats are made
    stats = benchmark._make_stats(1)
    for r in steady.rounds:
        stats.update(r.duration_s / r.images)  # seconds per image
    benchmark._mode = "pytest-e3p"  # a second use of the fixture in the same test then raises
    benchmark.extra_info.update(
        {
            "unit": "seconds per image",
            "batch_size": result.batch_size,
            "energy_kind": result.energy_kind,
            "energy_source": result.energy_source,
            "boundary": result.boundary,
            "energy_mj_per_image": result.energy_mj_per_image,
            "energy_mj_per_image_samples": result.energy_mj_per_image_samples,
            "power_w": result.power_w,
            "idle_power_w": result.idle_power_w,
        }
    )
