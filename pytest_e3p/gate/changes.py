"""What changed between a baseline and this run, as their results files record it: the explanation
shown beside a verdict other than "unchanged".

A results file records the device's identity (CPU or GPU model, driver, ...), the environment
(torch, timm, python and whatever runtime, driver, JetPack, kernel or governor versions the run
recorded), the protocol (threads, allocator, passes, rounds, --e3p-slowdown, ...) and, per case, its
versions, threads and thermal state. Each difference is one line, "torch 2.1.0 -> 2.2.0"; where none
differs, the line says so: the code is then the suspect. A baseline keeps only its newest run's
records (its earlier runs keep their pass values), so "the baseline" here is that run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..storage.results import CaseResult

NOTHING_CHANGED = "nothing recorded changed (the code is the suspect)"

# Protocol keys that say how the file was made, not how the case was measured.
_NOT_CONDITIONS = frozenset({"tolerances", "model_set", "sensor_note", "energy_sources", "limit", "variants"})
# A clock ratio or a temperature moves a little between any two runs: beyond these it is a change.
CLOCK_RATIO_STEP = 0.05
TEMPERATURE_STEP_C = 5.0


@dataclass(frozen=True)
class Recorded:
    """What one side recorded about a case: its file's device, environment and protocol, and the case."""

    case: CaseResult
    device: Mapping[str, Any] = field(default_factory=dict)
    environment: Mapping[str, Any] = field(default_factory=dict)
    protocol: Mapping[str, Any] = field(default_factory=dict)


def _flat(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value


def _show(value: Any) -> str:
    return "(not recorded)" if value is None or value == "" else str(value)


def _diff(what: str, base: Mapping[str, Any], cur: Mapping[str, Any], skip: frozenset[str] = frozenset()) -> list[str]:
    b, c = {}, {}  # type: dict[str, Any], dict[str, Any]
    _flat("", base, b)
    _flat("", cur, c)
    lines = []
    for key in sorted(set(b) | set(c)):
        if key.split(".")[0] in skip:
            continue
        if b.get(key) != c.get(key):
            name = f"{what} {key}" if what else key
            lines.append(f"{name}: {_show(b.get(key))} -> {_show(c.get(key))}")
    return lines


def changes(base: Recorded, cur: Recorded) -> list[str]:
    """The recorded differences between the baseline's run of a case and this run's, one line each;
    [NOTHING_CHANGED] where none differs."""
    lines = _diff("device", base.device.get("identity", {}), cur.device.get("identity", {}))
    # the file's environment, then the case's own versions where they add to it (a runtime's)
    lines += _diff("", {**base.environment, **base.case.versions}, {**cur.environment, **cur.case.versions})
    lines += _diff("", base.protocol, cur.protocol, _NOT_CONDITIONS)
    bc, cc = base.case, cur.case
    if bc.threads != cc.threads and f"threads: {_show(bc.threads)} -> {_show(cc.threads)}" not in lines:
        lines.append(f"threads: {_show(bc.threads)} -> {_show(cc.threads)}")
    if bc.throttled_rounds != cc.throttled_rounds:
        lines.append(
            f"throttled rounds: {bc.throttled_rounds} of {len(bc.round_throttled)} -> {cc.throttled_rounds} of {len(cc.round_throttled)}"
            + (f" ({', '.join(cc.throttle_reasons)})" if cc.throttle_reasons else "")
        )
    if bc.clock_ratio_min is not None and cc.clock_ratio_min is not None and abs(bc.clock_ratio_min - cc.clock_ratio_min) > CLOCK_RATIO_STEP:
        lines.append(f"lowest clock (of its maximum): {bc.clock_ratio_min:.0%} -> {cc.clock_ratio_min:.0%}")
    if bc.temperature_c_max is not None and cc.temperature_c_max is not None and abs(bc.temperature_c_max - cc.temperature_c_max) > TEMPERATURE_STEP_C:
        lines.append(f"hottest temperature: {bc.temperature_c_max:.0f} -> {cc.temperature_c_max:.0f} C")
    return lines or [NOTHING_CHANGED]
