"""`--e3p-export mlflow[=TRACKING_URI]`: one MLflow run per case, under a parent run for the results file.

The tracking URI is a team's server (http://HOST:PORT, databricks, ...) or a local store. The default
is MLflow's own local default, `sqlite:///mlflow.db` in the working folder, which `mlflow ui` run
there opens: MLflow 3 keeps the `./mlruns` file store only behind MLFLOW_ALLOW_FILE_STORE=true, so
a PATH works where that is set and is refused with that fix otherwise.

Experiment "pytest-e3p". The parent run (named after the device and the run's start) holds the
results file and, when --e3p-report wrote them, report.md and its plots as artifacts, once. Each
case is a child run named by its case id: the conditions and the sources as params, the figures as
metrics (the CSV's names, units in them), the per-pass values as the metric history of
`energy_mj_per_image_pass` and `latency_ms_per_image_pass` (step = pass index), and tags for the
commit (`mlflow.source.git.commit`), the device, the status and the verdict. Runs start at the time
the run measured them, so an old results file exported later lands at its own date.

Everything goes through an explicit `MlflowClient`: no active-run state is left in the process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from ..storage.results import FAILED, INVALID, CaseResult, ResultsFile
from ..text import first_line, terminal_safe
from .context import ExportContext
from .errors import ExportError, require
from .fields import COLUMNS, CONDITIONS, SOURCES

EXPERIMENT = "pytest-e3p"
DEFAULT_URI = "sqlite:///mlflow.db"
REPORT_FILES = ("*.md", "*.png", "*.svg")  # what --e3p-report writes; nothing else of its folder
_BATCH_LIMIT = 1000  # metrics MLflow takes in one log_batch call
_TAG_LIMIT = 5000  # MLflow keeps tag values up to 8000 characters; a long skip reason is cut


def _ms(rf: ResultsFile) -> int:
    try:
        return int(datetime.fromisoformat(rf.created).timestamp() * 1000) if rf.created else int(time.time() * 1000)
    except ValueError:
        return int(time.time() * 1000)


def params(c: CaseResult) -> dict[str, str]:
    """The conditions and sources of a case, as MLflow params (strings; an absent one left out)."""
    values = {name: get(c) for name, get in COLUMNS if name in CONDITIONS or name in SOURCES}
    if c.footprint is not None:  # the factors the footprint metrics were computed at
        values.update(carbon_g_per_kwh=c.footprint.carbon_g_per_kwh, price_per_kwh=c.footprint.price_per_kwh)
    return {k: str(v) for k, v in values.items() if v is not None and v != ""}


def metrics(c: CaseResult) -> dict[str, float]:
    """The figures of a case, as MLflow metrics (numbers only; conditions and lists left out)."""
    out = {}
    for name, get in COLUMNS:
        value = get(c)
        if name in CONDITIONS or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        out[name] = float(value)
    out.update({f"rail_{rail}_mj_per_image": float(mj) for rail, mj in c.rails_mj_per_image.items()})
    return out


def histories(c: CaseResult) -> dict[str, list[float]]:
    """The per-pass values, in the order measured: a metric history each."""
    return {"energy_mj_per_image_pass": list(c.energy_mj_per_image_passes), "latency_ms_per_image_pass": list(c.latency_ms_per_image_passes)}


def _commit_tags(ctx: ExportContext) -> dict[str, str]:
    commit = ctx.commit
    if commit is None or not commit.sha:
        return {}
    tags = {"mlflow.source.git.commit": commit.sha}
    if commit.branch:
        tags["mlflow.source.git.branch"] = commit.branch
    if commit.dirty is not None:
        tags["e3p.git.dirty"] = str(commit.dirty).lower()
    return tags


def _probe(uri: str, timeout_s: float) -> None:
    """A server that does not answer is one line now, not MLflow's minutes of retries."""
    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s).close()  # noqa: S310 (http(s) only)
    except urllib.error.HTTPError:
        return  # it answered (a proxy asking for credentials, say): MLflow's own calls say the rest
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise ExportError(f"no MLflow tracking server answered ({terminal_safe(reason)}): start it, or fix --e3p-export mlflow=TRACKING_URI") from None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """MLflow's INFO lines (creating a database's tables) would come after the run's summary: the
    export says what it wrote in its own line."""
    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _experiment_id(client: Any, exceptions: Any) -> str:
    found = client.get_experiment_by_name(EXPERIMENT)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(EXPERIMENT)
    except exceptions.MlflowException:  # created by a concurrent export in between
        found = client.get_experiment_by_name(EXPERIMENT)
        if found is None:
            raise
        return found.experiment_id


def _report_files(report_dir: Path | None) -> list[Path]:
    if report_dir is None or not report_dir.is_dir():
        return []
    return sorted(p for pattern in REPORT_FILES for p in report_dir.glob(pattern) if p.is_file())


def export(rf: ResultsFile, dest: str, ctx: ExportContext) -> str:
    mlflow = require("mlflow", "mlflow", "mlflow")
    entities = require("mlflow.entities", "mlflow", "mlflow")
    exceptions = require("mlflow.exceptions", "mlflow", "mlflow")
    if dest.startswith(("http://", "https://")):
        _probe(dest, ctx.timeout_s)
    with _quiet():
        try:
            return _export(rf, dest, ctx, mlflow.MlflowClient(tracking_uri=dest), entities, exceptions)
        except exceptions.MlflowException as exc:
            text = str(exc)
            if "MLFLOW_ALLOW_FILE_STORE" in text:
                raise ExportError(
                    f"this MLflow keeps the file store {terminal_safe(dest)} only behind MLFLOW_ALLOW_FILE_STORE=true: "
                    f"set it, or export to a database (--e3p-export mlflow={DEFAULT_URI})"
                ) from None
            raise ExportError(f"MLflow refused: {terminal_safe(first_line(text, 300))}") from None


def _export(rf: ResultsFile, dest: str, ctx: ExportContext, client: Any, entities: Any, exceptions: Any) -> str:
    experiment = _experiment_id(client, exceptions)
    start_ms = _ms(rf)
    device = str(rf.device.get("name", "")) if isinstance(rf.device, dict) else ""
    commit_tags = _commit_tags(ctx)
    parent = client.create_run(
        experiment,
        start_time=start_ms,
        run_name=f"{device or 'e3p'} {rf.created}".strip(),
        tags={**commit_tags, "e3p.device": device, "e3p.results_created": rf.created, "e3p.cases": str(len(rf.cases))},
    )
    parent_id = parent.info.run_id
    try:
        with tempfile.TemporaryDirectory(prefix="e3p-mlflow-") as tmp:
            results_json = Path(tmp) / (ctx.results_path.name if ctx.results_path is not None else "results.json")
            results_json.write_text(json.dumps(rf.to_dict(), indent=1, sort_keys=True))
            client.log_artifact(parent_id, str(results_json))
        for path in _report_files(ctx.report_dir):
            client.log_artifact(parent_id, str(path), artifact_path="report")
        for cid in sorted(rf.cases):
            _case_run(client, entities, experiment, parent_id, rf.cases[cid], start_ms, commit_tags)
    except BaseException:
        with contextlib.suppress(Exception):  # the server may be what failed: its error is the one to tell
            client.set_terminated(parent_id, status="FAILED")
        raise
    client.set_terminated(parent_id, status="FINISHED")
    return f"{len(rf.cases)} case run(s) written to {terminal_safe(dest)}, experiment {EXPERIMENT}, parent run {parent_id}"


def _case_run(client: Any, entities: Any, experiment: str, parent_id: str, c: CaseResult, start_ms: int, commit_tags: dict[str, str]) -> None:
    tags = {
        **commit_tags,
        "mlflow.parentRunId": parent_id,
        "e3p.case_id": c.case_id,
        "e3p.device": c.device,
        "e3p.status": str(c.status),
        "e3p.verdict": c.verdict,
        "e3p.energy_kind": c.energy_kind,
    }
    if c.reason:
        tags["e3p.reason"] = c.reason[:_TAG_LIMIT]
    if c.changes_vs_baseline:
        tags["e3p.changes_vs_baseline"] = "\n".join(c.changes_vs_baseline)[:_TAG_LIMIT]
    run = client.create_run(experiment, start_time=start_ms, run_name=c.case_id, tags=tags)
    run_id = run.info.run_id
    batch = [entities.Metric(k, v, start_ms, 0) for k, v in metrics(c).items()]
    batch += [entities.Metric(k, float(v), start_ms, step) for k, values in histories(c).items() for step, v in enumerate(values)]
    client.log_batch(run_id, params=[entities.Param(k, v) for k, v in params(c).items()])
    for i in range(0, len(batch), _BATCH_LIMIT):
        client.log_batch(run_id, metrics=batch[i : i + _BATCH_LIMIT])
    client.set_terminated(run_id, status="FAILED" if c.status in (FAILED, INVALID) else "FINISHED", end_time=start_ms)
