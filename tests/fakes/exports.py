"""A results file for the exporters' tests: every kind of case an export has to carry or leave out."""

from fakes.results import case_result, results_file
from pytest_e3p.storage.records import Footprint


def sample_results():
    """Four cases on the CPU: a measured one with its footprint, Jetson-style rails and a regression
    against the baseline; an estimated one with a measured top-1; a skipped one; and one whose model
    name a spreadsheet would take for a formula."""
    measured = case_result(
        "deit_tiny-cpu-synthetic",
        model="deit_tiny_patch16_224.fb_in1k",
        energy_source="RAPL package-0",
        boundary="CPU package",
        threads=4,
        weights="pretrained",
        passes=3,
        energy_mj_per_image=41.5,
        latency_ms_per_image=12.25,
        energy_mj_per_image_passes=[41.0, 41.5, 42.0],
        latency_ms_per_image_passes=[12.0, 12.25, 12.5],
        energy_spread=0.012,
        power_w=3.388,
        top1=72.2,
        top1_source="reference",
        top1_ref=72.2,
        params_m=5.717,
        gmacs=1.258,
        peak_memory_mb=512.0,
        rails_mj_per_image={"VDD_IN": 41.5, "VDD_CPU_GPU_CV": 30.0},
        verdict="regressed",
        change_vs_baseline=0.08,
        noise_vs_baseline=0.02,
        changes_vs_baseline=["torch 2.13.0 -> 2.14.1", "threads 2 -> 4"],
        footprint=Footprint(
            energy_kwh_per_million_images=41.5e6 / 3.6e9,
            energy_kind="measured",
            carbon_g_per_kwh=400.0,
            co2e_g_per_million_images=41.5e6 / 3.6e9 * 400.0,
            price_per_kwh=0.3,
            cost_per_million_images=41.5e6 / 3.6e9 * 0.3,
        ),
    )
    estimated = case_result(
        "levit_128s-cpu-synthetic-bs2",
        model="levit_128s.fb_in1k",
        batch_size=2,
        image_size=[3, 192, 192],
        energy_kind="estimate",
        energy_source="cpu-time-estimate",
        energy_mj_per_image=20.0,
        latency_ms_per_image=6.5,
        energy_mj_per_image_passes=[19.8, 20.0, 20.1],
        latency_ms_per_image_passes=[6.4, 6.5, 6.6],
        passes=3,
        top1=75.0,
        top1_source="measured",
        top1_ref=76.5,
        verdict="unchanged",
        change_vs_baseline=-0.01,
    )
    skipped = case_result(
        "deit_tiny-cpu-synthetic-prune-heads-25",
        model="deit_tiny_patch16_224.fb_in1k",
        variant="prune-heads-25",
        energy_kind="unavailable",
        status="skipped",
        reason="prune-heads-25 removes no head of 3 per block",
    )
    formula = case_result(
        "=cmd-cpu-synthetic",
        model='=HYPERLINK("http://example.invalid")',
        energy_mj_per_image=5.0,
        latency_ms_per_image=1.0,
        energy_mj_per_image_passes=[5.0],
        latency_ms_per_image_passes=[1.0],
    )
    return results_file([measured, estimated, skipped, formula], created="2026-12-01T10:00:00+00:00")
