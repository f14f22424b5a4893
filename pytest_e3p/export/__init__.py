"""The results in the tools a team already watches: a CSV table, a Prometheus/OpenMetrics text file
(or a Pushgateway), MLflow runs and Bencher Metric Format JSON.

`export_results` runs each requested export on a results file that is already final and returns one
`Exported` per export: a line naming what was written where, or, for a failed one, the cause and the
fix. An export never raises and never touches the results file: a missing extra, an unwritable path
or an unreachable server is its one line, and the caller decides what a failure means for the run's
exit status (the plugin: exit 3, as for an unwritten report).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..storage.results import ResultsFile
from ..text import error_line, terminal_safe
from .context import ExportContext
from .errors import ExportError, MissingExtra

__all__ = ["ExportContext", "Exported", "ExportError", "MissingExtra", "export_results", "default_destination"]


@dataclass(frozen=True)
class Exported:
    kind: str
    line: str
    failed: bool = False


@dataclass
class _Kind:
    write: Callable[[ResultsFile, str, ExportContext], str]  # returns "N cases written to DEST"
    dest_hint: str  # what DEST is, for the fix of a failed export


def _kinds() -> dict[str, _Kind]:
    # imported here: each module imports its optional library only when it runs
    from . import bencher, csv_table, mlflow_runs, openmetrics

    return {
        "csv": _Kind(csv_table.export, "PATH"),
        "openmetrics": _Kind(openmetrics.export, "PATH or http://HOST:PORT"),
        "mlflow": _Kind(mlflow_runs.export, "TRACKING_URI"),
        "bencher": _Kind(bencher.export, "PATH"),
    }


def default_destination(kind: str, ctx: ExportContext) -> str:
    """Where an export goes when no DEST is given: next to the results file, named after it
    (results.json -> results.csv, results.prom, results.bencher.json); MLflow's own local default
    (sqlite:///mlflow.db in the working folder, what `mlflow ui` opens there)."""
    if kind == "mlflow":
        from .mlflow_runs import DEFAULT_URI

        return DEFAULT_URI
    names = {"csv": f"{ctx.stem}.csv", "openmetrics": f"{ctx.stem}.prom", "bencher": f"{ctx.stem}.bencher.json"}
    return str(ctx.folder / names[kind])


def export_results(rf: ResultsFile, exports: Sequence[tuple[str, str]], ctx: ExportContext | None = None) -> list[Exported]:
    """Run each (kind, dest) export in order; one Exported each, a failed one included."""
    ctx = ctx or ExportContext()
    kinds = _kinds()
    done = []
    for kind, dest in exports:
        spec = kinds.get(kind)
        if spec is None:  # the option's parser refuses these; a caller passing its own list is told
            done.append(Exported(kind, f"export {terminal_safe(kind)}: not an export: use one of {', '.join(kinds)}", failed=True))
            continue
        target = dest or default_destination(kind, ctx)
        try:
            line = spec.write(rf, target, ctx)
        except MissingExtra as exc:
            done.append(Exported(kind, f"export {kind}: needs {exc.library}: pip install 'pytest-e3p[{exc.extra}]'", failed=True))
        except ExportError as exc:
            done.append(Exported(kind, f"export {kind} NOT written to {terminal_safe(target)}: {exc}", failed=True))
        except OSError as exc:
            why = exc.strerror or str(exc)
            if isinstance(exc, (FileExistsError, NotADirectoryError)) and exc.filename:  # mkdir met a file
                why = f"{terminal_safe(exc.filename)} is a file, not a folder"
            done.append(
                Exported(
                    kind,
                    f"export {kind} NOT written to {terminal_safe(target)}: {why} (give a writable one: --e3p-export {kind}={spec.dest_hint})",
                    failed=True,
                )
            )
        except Exception as exc:  # a library's own failure: one line, never a traceback at the end of a run
            done.append(Exported(kind, f"export {kind} NOT written to {terminal_safe(target)}: {terminal_safe(error_line(exc, 300))}", failed=True))
        else:
            done.append(Exported(kind, f"export {kind}: {line}"))
    return done
