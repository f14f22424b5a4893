"""--e3p-export openmetrics: a textfile for node_exporter, or a push to a Pushgateway."""

import http.server
import threading

import pytest
from fakes.exports import sample_results

from pytest_e3p.export import ExportContext, export_results

prometheus_client = pytest.importorskip("prometheus_client", reason="prometheus-client is not installed: pip install 'pytest-e3p[prometheus]'")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

LABELS = {"model", "variant", "device", "dataset", "batch", "size", "energy_kind"}


def _samples(text):
    return {(s.name, s.labels.get("model"), s.labels.get("energy_kind")): s for f in text_string_to_metric_families(text) for s in f.samples}


def test_the_textfile_parses_with_base_units_and_the_labels(tmp_path):
    [done] = export_results(sample_results(), [("openmetrics", "")], ExportContext(results_path=tmp_path / "results.json"))
    path = tmp_path / "results.prom"
    assert done.line == f"export openmetrics: 3 case(s) written to {path}"
    text = path.read_text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["e3p_energy_per_image_joules"].type == "gauge"
    samples = _samples(text)
    energy = samples[("e3p_energy_per_image_joules", "deit_tiny_patch16_224.fb_in1k", "measured")]
    assert set(energy.labels) == LABELS and energy.value == pytest.approx(0.0415)
    assert energy.labels["batch"] == "16" and energy.labels["size"] == "224" and energy.labels["variant"] == "fp32"
    assert samples[("e3p_latency_per_image_seconds", "deit_tiny_patch16_224.fb_in1k", "measured")].value == pytest.approx(0.01225)
    assert samples[("e3p_power_watts", "deit_tiny_patch16_224.fb_in1k", "measured")].value == pytest.approx(3.388)
    # an estimate is labelled so; the footprint in grams and joules; the gate's verdict as 0/1
    assert samples[("e3p_energy_per_image_joules", "levit_128s.fb_in1k", "estimate")].value == pytest.approx(0.02)
    assert samples[("e3p_co2e_per_million_images_grams", "deit_tiny_patch16_224.fb_in1k", "measured")].value == pytest.approx(41.5e6 / 3.6e9 * 400, rel=1e-5)
    assert samples[("e3p_energy_per_million_images_joules", "deit_tiny_patch16_224.fb_in1k", "measured")].value == pytest.approx(
        41_500, rel=1e-5
    )  # 41.5 mJ x 1e6
    assert samples[("e3p_regressed", "deit_tiny_patch16_224.fb_in1k", "measured")].value == 1
    assert samples[("e3p_regressed", "levit_128s.fb_in1k", "estimate")].value == 0
    # a reference top-1 is never the measured metric; a measured one is
    assert ("e3p_top1_accuracy_ratio", "deit_tiny_patch16_224.fb_in1k", "measured") not in samples
    assert samples[("e3p_top1_reference_accuracy_ratio", "deit_tiny_patch16_224.fb_in1k", "measured")].value == pytest.approx(0.722)
    assert samples[("e3p_top1_accuracy_ratio", "levit_128s.fb_in1k", "estimate")].value == pytest.approx(0.75)
    # the skipped case is no sample; the textfile collector takes no timestamps, so the run's time is a metric
    assert all(s.labels.get("variant") != "prune-heads-25" for s in samples.values())
    assert all(s.timestamp is None for s in samples.values())
    assert next(s for k, s in samples.items() if k[0] == "e3p_results_created_timestamp_seconds").value == 1796119200.0


def test_a_path_the_textfile_collector_would_not_read_is_refused_with_the_fix(tmp_path):
    [done] = export_results(sample_results(), [("openmetrics", str(tmp_path / "metrics.txt"))])
    assert done.failed and "reads only *.prom files: name the file PATH.prom" in done.line
    assert not (tmp_path / "metrics.txt").exists()


class _Recorder(http.server.BaseHTTPRequestHandler):
    requests: list = []

    def do_PUT(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.requests.append((self.command, self.path, self.headers.get("Content-Type"), body.decode()))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):  # keep the test's output clean
        pass


@pytest.fixture
def gateway():
    _Recorder.requests = []
    server = http.server.HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Recorder.requests
    server.shutdown()
    server.server_close()


def test_an_http_destination_is_a_pushgateway_put_grouped_by_device(gateway):
    url, requests = gateway
    [done] = export_results(sample_results(), [("openmetrics", url)])
    assert not done.failed and done.line == f"export openmetrics: 3 case(s) pushed to the Pushgateway at {url} (job pytest_e3p, device cpu)"
    [(method, path, content_type, body)] = requests
    assert method == "PUT" and path == "/metrics/job/pytest_e3p/device/cpu"  # PUT: the device's group holds this run only
    assert content_type.startswith("text/plain")
    samples = _samples(body)
    assert samples[("e3p_energy_per_image_joules", "deit_tiny_patch16_224.fb_in1k", "measured")].value == pytest.approx(0.0415)


def test_a_pushgateway_that_does_not_answer_is_one_line_naming_the_fix():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    [done] = export_results(sample_results(), [("openmetrics", f"http://127.0.0.1:{port}")])
    assert done.failed and "no Pushgateway answered" in done.line and "start it, or fix the address in --e3p-export openmetrics=http://HOST:PORT" in done.line


def test_a_missing_prometheus_client_names_the_extra(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # an import of it now fails
    [done] = export_results(sample_results(), [("openmetrics", str(tmp_path / "m.prom"))])
    assert done.failed and done.line == "export openmetrics: needs prometheus-client: pip install 'pytest-e3p[prometheus]'"
