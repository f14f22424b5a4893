"""Storage: the results, baseline and history files.

A results file and a baseline are one format (JSON with a schema version); a history file is a
results file with the run's commit and machine. Every one is read through `load` (old schema versions
upgraded on reading, `ResultsFile.upgrade_note` then says so; newer ones refused) and written
atomically (`save`, `write_atomic`; `history.append_run` never replaces a file).

    results   the records (CaseResult, ResultsFile), load and save
    records   the typed parts of a case (EarlierRun, MemoryPeak, SustainedRecord, VsReference), filled by
              measure and run
    schema    the versions, the upgrade from each to the next, the checks a file must pass
    files     reading (parse, upgrade, check) and atomic writing
    history   the run history folder and the `history` command
"""

from .files import write_atomic
from .history import CommitInfo, Run, append_run, load_history, read_run
from .results import CaseResult, MeasurementError, ResultsFile, load, save
from .schema import SCHEMA, SCHEMA_VERSION, UPGRADES, ResultsFileError

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "UPGRADES",
    "CaseResult",
    "CommitInfo",
    "MeasurementError",
    "ResultsFile",
    "ResultsFileError",
    "Run",
    "append_run",
    "load",
    "load_history",
    "read_run",
    "save",
    "write_atomic",
]
