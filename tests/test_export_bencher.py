"""--e3p-export bencher: Bencher Metric Format JSON that `bencher run --adapter json` ingests."""

import json
import math

import pytest
from fakes.exports import sample_results

from pytest_e3p.export import ExportContext, export_results

# The BMF JSON schema as bencher.dev documents it (https://bencher.dev/bmf.json), with the lengths the
# format reference gives: a benchmark name of at most 1024 characters, a measure slug of at most 64.
BMF_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema",
    "type": "object",
    "patternProperties": {
        ".+": {
            "type": "object",
            "patternProperties": {
                ".+": {
                    "type": "object",
                    "properties": {"value": {"type": "number"}, "lower_value": {"type": "number"}, "upper_value": {"type": "number"}},
                    "required": ["value"],
                }
            },
        }
    },
}


def check_bmf(doc):
    """The documented shape, checked by hand (jsonschema is an extra of the lint job only)."""
    assert isinstance(doc, dict) and doc
    for benchmark, measures in doc.items():
        assert isinstance(benchmark, str) and 0 < len(benchmark) <= 1024
        assert isinstance(measures, dict) and measures
        for slug, metric in measures.items():
            assert isinstance(slug, str) and 0 < len(slug) <= 64 and slug == slug.lower()
            assert set(metric) <= {"value", "lower_value", "upper_value"} and "value" in metric
            for v in metric.values():
                assert isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            if "lower_value" in metric:
                assert metric["lower_value"] <= metric["value"] <= metric["upper_value"]


def test_the_measured_cases_are_benchmarks_with_the_pass_range_as_bounds(tmp_path):
    [done] = export_results(sample_results(), [("bencher", "")], ExportContext(results_path=tmp_path / "run.json"))
    path = tmp_path / "run.bencher.json"
    assert done.line == f"export bencher: 3 case(s) written to {path} (1 not measured left out)"
    doc = json.loads(path.read_text())
    check_bmf(doc)
    assert set(doc) == {"deit_tiny-cpu-synthetic", "levit_128s-cpu-synthetic-bs2", "=cmd-cpu-synthetic"}  # not the skipped case
    assert doc["deit_tiny-cpu-synthetic"] == {
        "energy-mj": {"value": 41.5, "lower_value": 41.0, "upper_value": 42.0},
        "latency-ms": {"value": 12.25, "lower_value": 12.0, "upper_value": 12.5},
    }


def test_an_estimated_energy_is_its_own_measure_never_compared_with_a_measured_one(tmp_path):
    export_results(sample_results(), [("bencher", str(tmp_path / "b.json"))])
    doc = json.loads((tmp_path / "b.json").read_text())
    assert set(doc["levit_128s-cpu-synthetic-bs2"]) == {"energy-mj-estimate", "latency-ms"}
    assert doc["levit_128s-cpu-synthetic-bs2"]["energy-mj-estimate"]["value"] == 20.0


def test_the_schema_check_accepts_the_documented_example_and_refuses_a_metric_without_value():
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is not installed; the hand check runs in every test above")
    example = {"benchmark_name": {"latency": {"value": 88.0, "lower_value": 87.42, "upper_value": 88.88}}, "my_binary": {"file-size": {"value": 42.0}}}
    jsonschema.validate(example, BMF_SCHEMA)
    check_bmf(example)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"b": {"latency": {"lower_value": 1.0}}}, BMF_SCHEMA)
    with pytest.raises(AssertionError):
        check_bmf({"b": {"latency": {"lower_value": 1.0}}})


def test_the_exported_file_validates_against_the_published_schema(tmp_path):
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is not installed; the hand check runs in every test above")
    export_results(sample_results(), [("bencher", str(tmp_path / "b.json"))])
    jsonschema.validate(json.loads((tmp_path / "b.json").read_text()), BMF_SCHEMA)
