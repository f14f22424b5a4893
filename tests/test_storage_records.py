"""The typed records a case holds (earlier runs, peak memory, a sustained run, a variant against fp32): they round-trip through
the results file unchanged, and a file that holds them as plain objects loads into them."""

import json
from pathlib import Path

from fakes.results import case_result

from pytest_e3p.storage import results
from pytest_e3p.storage.records import Drift, EarlierRun, MemoryPeak, SustainedRecord, VsReference, WindowRecord

MEMORY = MemoryPeak(peak_mb=512.5, start_mb=400.0, growth_mb=112.5, method="VmHWM after clear_refs", end_mb=450.0, note="a note")
WINDOWS = [
    WindowRecord(index=i, start_s=10.0 * i, duration_s=10.0, images=40, energy_mj=2000.0 + i, energy_mj_per_image=50.0 + i / 40,
                 latency_ms_per_image=250.0, power_w=(2000 + i) / 10000, temperature_c=50.0 + i, clock_ratio=0.95, throttled=i == 1)
    for i in range(3)
]  # fmt: skip
SUSTAINED = SustainedRecord(
    requested_s=30.0,
    window_s=10.0,
    duration_s=30.0,
    images=120,
    sensor="rapl",
    energy_kind="measured",
    thermal=True,
    throttled_windows=1,
    drift_span_s=60.0,
    drift={"power_w": Drift("power_w", 0.2, 0.2002, 0.001, 0.0002, "first window vs last window")},
    notes=["shorter than two spans"],
    windows=WINDOWS,
)
DATA = Path(__file__).parent / "data"
EARLIER = [EarlierRun("2025-11-01T10:00:00+00:00", [40.5, 41.0, 41.2], [12.1, 12.2, 12.3]), EarlierRun("2025-11-02T10:00:00+00:00", [40.0], [12.0])]


VS_FP32 = VsReference("m-cpu-synthetic", 3, 0.8, 0.79, 0.81, 0.9, 0.85, 0.95, within_noise=False)


def test_a_case_with_every_record_round_trips_through_its_dict_and_the_file(tmp_path):
    case = case_result(energy_mj_per_image_passes=[39.5, 39.9], earlier_runs=EARLIER, memory=MEMORY, sustained=SUSTAINED, vs_reference=VS_FP32)
    data = case.to_dict()
    assert data["memory"]["peak_mb"] == 512.5 and data["sustained"]["drift"]["power_w"] == {
        "first": 0.2,
        "last": 0.2002,
        "relative_change": 0.001,
        "delta": 0.0002,
        "basis": "first window vs last window",
    }
    assert data["earlier_runs"][0] == {
        "created": "2025-11-01T10:00:00+00:00",
        "energy_mj_per_image_passes": [40.5, 41.0, 41.2],
        "latency_ms_per_image_passes": [12.1, 12.2, 12.3],
    }
    back = results.CaseResult.from_dict(json.loads(json.dumps(data)))
    assert back == case and back.to_dict() == data
    assert back.runs("energy") == [[40.5, 41.0, 41.2], [40.0], [39.5, 39.9]]
    assert data["vs_reference"] == {
        "reference_case_id": "m-cpu-synthetic",
        "passes": 3,
        "energy_ratio": 0.8,
        "energy_ratio_low": 0.79,
        "energy_ratio_high": 0.81,
        "latency_ratio": 0.9,
        "latency_ratio_low": 0.85,
        "latency_ratio_high": 0.95,
        "within_noise": False,
    }
    # through a file: written twice, the same bytes
    path, again = tmp_path / "r.json", tmp_path / "again.json"
    results.save(results.ResultsFile(device={"name": "cpu"}, environment={}, protocol={}, cases={case.case_id: case}), path)
    loaded = results.load(path)
    assert loaded.cases[case.case_id] == case
    results.save(loaded, again)
    assert again.read_bytes() == path.read_bytes()


def test_a_case_without_records_writes_empty_objects_and_reads_them_as_none():
    data = case_result().to_dict()
    assert (data["earlier_runs"], data["memory"], data["sustained"], data["vs_reference"]) == ([], {}, {}, None)
    back = results.CaseResult.from_dict(data)
    assert (back.earlier_runs, back.memory, back.sustained, back.vs_reference) == ([], None, None, None)
    del data["vs_reference"]  # a file written before version 3
    assert results.CaseResult.from_dict(data).vs_reference is None


def test_an_old_file_of_plain_objects_loads_into_records(tmp_path):
    case = case_result().to_dict()
    case["earlier_runs"] = [
        {"created": "run1", "energy_mj_per_image_passes": [40.0, 40.5], "latency_ms_per_image_passes": [12.0, 12.5]},
        {"energy_mj_per_image_passes": [41.0]},  # an entry with only some keys: the rest are empty
    ]
    case["memory"] = {"peak_mb": 300.0, "start_mb": 200.0, "growth_mb": 100.0, "method": "VmRSS sampled every 5 ms", "a_later_key": 1}
    case["sustained"] = {
        **SUSTAINED.to_dict(),
        "drift": {"energy_mj_per_image": {"first": 50.0, "last": 52.0, "relative_change": 0.04, "delta": 2.0, "basis": "b"}},
    }
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"schema": "pytest-e3p/results", "schema_version": 2, "device": {"name": "cpu"}, "cases": {case["case_id"]: case}}))
    got = results.load(path).cases[case["case_id"]]
    assert got.earlier_runs == [EarlierRun("run1", [40.0, 40.5], [12.0, 12.5]), EarlierRun("", [41.0], [])]
    assert got.memory == MemoryPeak(peak_mb=300.0, start_mb=200.0, growth_mb=100.0, method="VmRSS sampled every 5 ms")
    assert isinstance(got.sustained, SustainedRecord) and got.sustained.windows == WINDOWS
    assert got.sustained.drift == {"energy_mj_per_image": Drift("energy_mj_per_image", 50.0, 52.0, 0.04, 2.0, "b")}
    assert got.runs("energy")[:2] == [[40.0, 40.5], [41.0]]


def test_the_example_files_load_their_earlier_runs_as_records():
    deit = results.load(DATA / "results-v2-fcfc3c8.json").cases["deit_tiny_patch16_224.fb_in1k-cpu-synthetic"]
    assert deit.earlier_runs == [EarlierRun("2025-11-01T10:00:00+00:00", [40.5, 41.0, 41.2], [12.1, 12.2, 12.3])]
