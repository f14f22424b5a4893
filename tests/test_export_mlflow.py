"""--e3p-export mlflow: a run per case under a parent run, read back through MlflowClient, from a local
store and from a real `mlflow server` on a loopback port."""

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from fakes.exports import sample_results

from pytest_e3p.export import ExportContext, export_results
from pytest_e3p.storage.history import CommitInfo

mlflow = pytest.importorskip("mlflow", reason="mlflow is not installed: pip install 'pytest-e3p[mlflow]'")
SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def report_dir(tmp_path):
    folder = tmp_path / "rep"
    folder.mkdir()
    (folder / "report.md").write_text("# E3P report\n")
    (folder / "energy.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (folder / "notes.txt").write_text("not the report's")  # a file of the folder the report did not write
    return folder


def _export(uri, tmp_path, report_dir):
    ctx = ExportContext(results_path=tmp_path / "results.json", report_dir=report_dir, commit=CommitInfo(sha=SHA, branch="main", dirty=False))
    [done] = export_results(sample_results(), [("mlflow", uri)], ctx)
    return done


def check_runs(uri):
    """What a user sees through MlflowClient: the experiment, a parent run with the artifacts, a run per case."""
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("pytest-e3p")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    parent = runs.pop("cpu 2026-12-01T10:00:00+00:00")
    assert set(runs) == {"deit_tiny-cpu-synthetic", "levit_128s-cpu-synthetic-bs2", "deit_tiny-cpu-synthetic-prune-heads-25", "=cmd-cpu-synthetic"}
    assert {r.data.tags["mlflow.parentRunId"] for r in runs.values()} == {parent.info.run_id}
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} == {"results.json", "report"}
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "report")} == {"report/report.md", "report/energy.png"}
    run = runs["deit_tiny-cpu-synthetic"]
    # conditions and sources as params; figures as metrics, units in their names
    assert run.data.params["model"] == "deit_tiny_patch16_224.fb_in1k" and run.data.params["batch_size"] == "16"
    assert run.data.params["energy_kind"] == "measured" and run.data.params["top1_source"] == "reference" and run.data.params["carbon_g_per_kwh"] == "400.0"
    assert run.data.metrics["energy_mj_per_image"] == 41.5 and run.data.metrics["latency_ms_per_image"] == 12.25
    assert run.data.metrics["co2e_g_per_million_images"] == pytest.approx(41.5e6 / 3.6e9 * 400)
    assert run.data.tags["mlflow.source.git.commit"] == SHA and run.data.tags["e3p.device"] == "cpu" and run.data.tags["e3p.verdict"] == "regressed"
    assert run.info.status == "FINISHED" and run.info.start_time == 1796119200000  # the run's own time, not the export's
    # the per-pass values as a metric history, step = pass index
    history = client.get_metric_history(run.info.run_id, "energy_mj_per_image_pass")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [(0, 41.0), (1, 41.5), (2, 42.0)]
    assert [m.value for m in sorted(client.get_metric_history(run.info.run_id, "latency_ms_per_image_pass"), key=lambda m: m.step)] == [12.0, 12.25, 12.5]
    skipped = runs["deit_tiny-cpu-synthetic-prune-heads-25"]
    assert (
        skipped.data.tags["e3p.status"] == "skipped"
        and skipped.data.tags["e3p.reason"].startswith("prune-heads-25")
        and "energy_mj_per_image" not in skipped.data.metrics
    )
    return parent


def test_a_local_database_store_holds_a_run_per_case(tmp_path, report_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the store's default artifact folder (./mlruns) is relative to it
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = _export(uri, tmp_path, report_dir)
    assert not done.failed, done.line
    assert done.line.startswith(f"export mlflow: 4 case run(s) written to {uri}, experiment pytest-e3p, parent run ")
    check_runs(uri)


def test_the_file_store_is_written_where_mlflow_allows_it_and_refused_with_the_fix_where_not(tmp_path, report_dir, monkeypatch):
    store = tmp_path / "mlruns"
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    done = _export(str(store), tmp_path, report_dir)
    if done.failed:  # MLflow 3 keeps the file store behind a switch
        assert "MLFLOW_ALLOW_FILE_STORE=true: set it, or export to a database (--e3p-export mlflow=sqlite:///mlflow.db)" in done.line
        monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        done = _export(str(store), tmp_path, report_dir)
    assert not done.failed, done.line
    check_runs(store.as_uri())


def test_a_tracking_server_that_does_not_answer_is_one_line_at_once(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    done = _export(f"http://127.0.0.1:{port}", tmp_path, None)
    assert done.failed and "no MLflow tracking server answered" in done.line and "fix --e3p-export mlflow=TRACKING_URI" in done.line
    assert time.monotonic() - t0 < 10  # not MLflow's minutes of retries


def test_a_missing_mlflow_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    done = _export("sqlite:///x.db", tmp_path, None)
    assert done.failed and done.line == "export mlflow: needs mlflow: pip install 'pytest-e3p[mlflow]'"


@pytest.fixture
def mlflow_server(tmp_path):
    """A real `mlflow server` (the full mlflow package) on a free loopback port, with its own store."""
    try:
        import flask  # noqa: F401  (the server's; mlflow-skinny has no server)
    except ImportError:
        pytest.skip("mlflow's server is not installed (mlflow-skinny has none): pip install mlflow")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    folder = tmp_path / "server"
    folder.mkdir()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job workers: a faster start
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    command += ["--backend-store-uri", f"sqlite:///{folder / 'server.db'}", "--artifacts-destination", str(folder / "artifacts")]
    log = open(folder / "server.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(command, cwd=folder, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    # its start imports much, creates its database and starts uvicorn in a second process: 41 s to
    # 107 s measured on a 2-core VM shared with other jobs
    deadline = time.monotonic() + 240
    try:
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"mlflow server did not start: {(folder / 'server.log').read_text()[-2000:]}")
                time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_a_real_tracking_server_holds_the_runs_params_histories_and_artifacts(tmp_path, report_dir, mlflow_server, monkeypatch):
    monkeypatch.chdir(tmp_path)
    done = _export(mlflow_server, tmp_path, report_dir)
    assert not done.failed, done.line
    assert done.line.startswith(f"export mlflow: 4 case run(s) written to {mlflow_server}, experiment pytest-e3p")
    parent = check_runs(mlflow_server)
    # the artifacts went to the server's artifact store, not into this folder
    assert not (tmp_path / "mlruns").exists() and any((tmp_path / "server" / "artifacts").rglob("report.md"))
    assert parent.info.status == "FINISHED"
