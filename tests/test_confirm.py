"""--e3p-confirm's rule: the false-alarm level held over the repeated looks (simulated), and a
pytester run where a case is inconclusive, is measured again, and is decided."""

import json

import numpy as np
import pytest
from fakes.runs import SCRIPTED, SHORT

from pytest_e3p.gate import stats
from pytest_e3p.gate.verdict import REGRESSED


def test_the_looks_share_the_false_alarm_level():
    for confirm in (0, 1, 3, 6):
        assert sum(stats.look_alpha(k, confirm) for k in range(1, confirm + 2)) == pytest.approx(stats.ALPHA)


def false_alarms(look_alpha, cases=3000, confirm=3, base_runs=1, seed=7):
    """Unchanged cases (every pass from one distribution, a run-level offset per process), each
    looked at after its 3 passes and after each of up to `confirm` more; the share of cases that
    any look calls regressed. Tolerance 0: only the statistics stand between noise and a failure."""
    rng = np.random.default_rng(seed)
    flagged = 0
    for _ in range(cases):
        run_sd, pass_sd = 0.01, 0.03
        base = [list(40.0 * np.exp(rng.normal(0, run_sd) + rng.normal(0, pass_sd, 3))) for _ in range(base_runs)]
        offset = rng.normal(0, run_sd)
        current = list(40.0 * np.exp(offset + rng.normal(0, pass_sd, 3)))
        for look in range(1, confirm + 2):
            d = stats.decide(base, current, 0.0, alpha=look_alpha(look, confirm))
            if d.verdict == REGRESSED:
                flagged += 1
                break
            if d.verdict != stats.INCONCLUSIVE:
                break
            current.append(40.0 * float(np.exp(offset + rng.normal(0, pass_sd))))
    return flagged / cases


def test_the_confirmation_rule_holds_false_alarms_at_1_percent_over_the_looks():
    assert false_alarms(stats.look_alpha) <= 0.01
    assert false_alarms(stats.look_alpha, base_runs=3, seed=8) <= 0.01


def test_looking_again_at_the_full_level_each_time_would_not():
    # the same cases, each look at alpha: the repeated looks add up (what the split prevents)
    naive = false_alarms(lambda look, confirm: stats.ALPHA)
    assert naive > false_alarms(stats.look_alpha)


BENCH = "def test_energy(e3p):\n    e3p.measure()\n"
RUN = [*SHORT, *SCRIPTED, "--e3p-batch-size=2", "--e3p-models=test_vit"]


def test_an_inconclusive_case_is_measured_again_until_it_regresses(pytester):
    pytester.makepyfile(test_bench=BENCH)
    base = pytester.path / "base.json"
    first = pytester.runpytest(*RUN, f"--e3p-save-baseline={base}")
    first.assert_outcomes(passed=1)
    data = json.loads(base.read_text())
    case = next(iter(data["cases"].values()))
    e = case["energy_mj_per_image_passes"][0]
    case["energy_mj_per_image_passes"] = [e * 0.95, e * 1.05]  # a baseline of 1 run whose 2 passes spread 5 %
    base.write_text(json.dumps(data))
    # 30 % more power: beyond the tolerance, within the noise of 2 passes (+/-42 %) and of 3; beyond it at 4
    args = [*RUN, f"--e3p-baseline={base}", "--scripted-power-w=13", "--e3p-results=out.json"]
    off = pytester.runpytest(*args, "--e3p-confirm=0")
    off.assert_outcomes(passed=1)
    assert "inconclusive: noise +/-" in off.stdout.str()
    confirmed = pytester.runpytest(*args, "--e3p-confirm=3")
    confirmed.assert_outcomes(failed=1)
    out = confirmed.stdout.str()
    assert "confirming test_vit-cpu-synthetic: pass 1/3: inconclusive: noise" in out and "pass 2/3: regressed" in out
    assert "confirmed (--e3p-confirm 3" in out and "test_vit-cpu-synthetic 2 passes -> regressed" in out
    recorded = next(iter(json.loads((pytester.path / "out.json").read_text())["cases"].values()))
    assert recorded["confirm_passes"] == 2 and recorded["verdict"] == "regressed" and len(recorded["energy_mj_per_image_passes"]) == 4
