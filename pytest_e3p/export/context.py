"""What an export needs besides the results themselves."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..storage.history import CommitInfo


@dataclass(frozen=True)
class ExportContext:
    """What an export needs besides the results: where they came from and what the run wrote beside them.

    results_path: the results file (None: the run wrote none); default destinations go next to it,
    or into .e3p/. report_dir: the folder --e3p-report wrote report.md and its plots to (MLflow
    attaches them). commit: the code the run measured (MLflow tags it), None when unknown."""

    results_path: Path | None = None
    report_dir: Path | None = None
    commit: CommitInfo | None = None
    timeout_s: float = 10.0  # a server that does not answer must not hang the end of a CI run

    @property
    def folder(self) -> Path:
        return self.results_path.parent if self.results_path is not None else Path(".e3p")

    @property
    def stem(self) -> str:
        return self.results_path.stem if self.results_path is not None else "results"
