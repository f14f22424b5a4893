"""One run of pytest-e3p: the session (E3PSession) over the case matrix (Case), each case's model
(LoadedModel, built once per case by ModelLoader), the bench it is measured on (Bench), and the
runner a benchmark drives (CaseRunner, which sees only its RunnerContext). A case's record is made
in one place, record.build_result; a variant's change against its fp32 reference, pass by pass, in
within_pass (which also orders each pass: fp32, then its variants).

Importing this package imports torch: the plugin imports it only when a run needs it."""

from .bench import Bench, NoSensor
from .case import Case, CaseSkipped, case_matrix
from .loading import LoadedModel, ModelLoader, agreement_text, fixed_batch, input_batch
from .record import Accuracy, CaseSetup, Collected, build_result
from .runner import CaseRunner, RunnerContext
from .session import E3PSession, SetupError

__all__ = [
    "Accuracy",
    "Bench",
    "Case",
    "CaseRunner",
    "CaseSetup",
    "CaseSkipped",
    "Collected",
    "E3PSession",
    "LoadedModel",
    "ModelLoader",
    "NoSensor",
    "RunnerContext",
    "SetupError",
    "agreement_text",
    "build_result",
    "case_matrix",
    "fixed_batch",
    "input_batch",
]
