"""The verdict: what a comparison with the baseline concluded, made in one place.

Each check (one metric of one case) gets its verdict from the rule in stats.py (energy, latency)
or from the top-1 rule (baseline.decide_top1). The case's verdict is the worst of its checks, and
two circumstances the checks cannot see decide it too:

- the baseline holds no entry for the case: it is new, nothing is compared;
- the device throttled in this run and in none of the baseline's rounds: a slower run is the
  device's doing, not the code's, so a regression (or an inconclusive change) of energy or latency
  is inconclusive, and says so. Top-1 does not depend on clocks and keeps its verdict.

`final_verdict` is that function; the session records its value, and the tables read it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..strenum import StrEnum

if TYPE_CHECKING:  # baseline.py imports this module: the names are for annotations only
    from ..storage.results import CaseResult
    from .baseline import Check


class Verdict(StrEnum):
    """A check's or a case's verdict; the value is the word in tables and in the results file."""

    REGRESSED = "regressed"
    INCONCLUSIVE = "inconclusive"
    IMPROVED = "improved"  # better by more than the tolerance, and significantly
    WITHIN_NOISE = "within noise"  # better by more than the tolerance, but not beyond the noise
    UNCHANGED = "unchanged"  # the change is within the tolerance
    NEW = "new"  # the baseline holds no entry for the case
    NOT_COMPARED = ""  # no baseline in this run, or the case did not finish


# The names the gate's tests and scripts use (many call sites).
REGRESSED, INCONCLUSIVE, IMPROVED, UNCHANGED = Verdict.REGRESSED, Verdict.INCONCLUSIVE, Verdict.IMPROVED, Verdict.UNCHANGED
WITHIN_NOISE = Verdict.WITHIN_NOISE

# Worst first: a case's verdict is the first of these that one of its checks has.
SEVERITY = (Verdict.REGRESSED, Verdict.INCONCLUSIVE, Verdict.IMPROVED, Verdict.WITHIN_NOISE, Verdict.UNCHANGED)

# Verdicts whose reason is the noise: a table shows the noise and the change beside the word.
_NOISE_BOUND = (Verdict.INCONCLUSIVE, Verdict.WITHIN_NOISE)


def verdict_label(verdict: str, change: float | None = None, noise: float | None = None, throttled: bool = False) -> str:
    """The verdict as tables, reports and the dashboard show it, its reason included:
    "inconclusive: noise +/-12.0% > change +8.0%", "inconclusive (throttled)", "regressed"."""
    if throttled:
        return f"{verdict} (throttled)"
    if verdict in _NOISE_BOUND and change is not None and noise is not None and noise >= abs(change):
        return f"{verdict}: noise +/-{noise:.1%} > change {change:+.1%}"
    return str(verdict or "")


@dataclass(frozen=True)
class Throttling:
    """This run throttled in `rounds` of its `of` thermal rounds, the baseline in none."""

    rounds: int
    of: int
    reasons: tuple[str, ...] = ()

    def note(self) -> str:
        return (
            f"inconclusive (throttled): the device throttled in {self.rounds} of {self.of} rounds of this run "
            f"({', '.join(self.reasons) or 'throttled'}) and in none of the baseline's; let it cool and run again"
        )


@dataclass(frozen=True)
class Circumstances:
    """What decides a case's verdict beside its checks."""

    in_baseline: bool = True
    throttling: Throttling | None = None  # set only when this run throttled and the baseline did not

    @classmethod
    def of(cls, result: CaseResult, base: CaseResult | None) -> Circumstances:
        """The circumstances of `result` against its baseline entry `base` (None: there is none)."""
        if base is None:
            return cls(in_baseline=False)
        if result.throttled_rounds and not base.throttled_rounds:
            return cls(throttling=Throttling(result.throttled_rounds, len(result.round_throttled), tuple(result.throttle_reasons)))
        return cls()


@dataclass(frozen=True)
class CaseVerdict:
    """A case's final verdict, and its checks as that verdict rests on them."""

    verdict: Verdict
    checks: list[Check]

    @property
    def throttled(self) -> bool:
        return any(c.throttled for c in self.checks)


# Checks whose verdict a throttled run cannot support: a slower run may be the clocks' doing.
_CLOCK_BOUND = (Verdict.REGRESSED, Verdict.INCONCLUSIVE)


def final_verdict(checks: Sequence[Check], circumstances: Circumstances) -> CaseVerdict:
    """The case's verdict from its checks and its circumstances (the one place it is made)."""
    if not circumstances.in_baseline:
        return CaseVerdict(Verdict.NEW, [])
    out = list(checks)
    if circumstances.throttling is not None:
        why = circumstances.throttling.note()
        out = [
            dataclasses.replace(c, verdict=Verdict.INCONCLUSIVE, throttled=True, note="; ".join(n for n in (why, c.note) if n))
            if c.verdict in _CLOCK_BOUND and c.metric != "top1"
            else c
            for c in out
        ]
    seen = {c.verdict for c in out}
    verdict = next((v for v in SEVERITY if v in seen), Verdict.NOT_COMPARED)
    return CaseVerdict(verdict, out)
