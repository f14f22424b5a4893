"""A baseline must be fit to gate: a run too noisy for its tolerance is not saved as a baseline
(unless --e3p-save-noisy-baseline), and a gated run says at the start what its baseline supports."""

import json

from fakes.runs import SCRIPTED, SHORT

BENCH = "def test_energy(e3p):\n    e3p.measure()\n"
# SHORT without the switch a short run of real timing needs to save a baseline: here the gate judges it
RUN = [*(a for a in SHORT if a != "--e3p-save-noisy-baseline"), *SCRIPTED, "--e3p-batch-size=2", "--e3p-models=test_vit"]

# The scripted machine, made noisy: each pass's rounds take (and use) a scripted factor more.
NOISY = """
import dataclasses, itertools
import pytest

FACTORS = itertools.cycle([1.0, 1.4])
_UNDO = pytest.StashKey[pytest.MonkeyPatch]()


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    from pytest_e3p.run.bench import Bench

    steady_state = Bench.steady_state

    def noisy(self, case, loaded):
        s = steady_state(self, case, loaded)
        f = next(FACTORS)
        s.rounds = [dataclasses.replace(r, duration_s=r.duration_s * f, energy_mj=None if r.energy_mj is None else r.energy_mj * f) for r in s.rounds]
        return s

    patch = config.stash[_UNDO] = pytest.MonkeyPatch()
    patch.setattr(Bench, "steady_state", noisy)


def pytest_unconfigure(config):
    config.stash[_UNDO].undo()
"""


def test_a_run_too_noisy_for_its_tolerance_is_not_saved_as_a_baseline(pytester):
    pytester.makepyfile(test_bench=BENCH)
    pytester.makeconftest(NOISY)
    base = pytester.path / "base.json"
    refused = pytester.runpytest(*RUN, f"--e3p-save-baseline={base}", "--e3p-results=out.json")
    assert refused.ret == 3  # a requested output not written: CI must not go green on it
    out = refused.stdout.str()
    assert "baseline NOT written: this run is too noisy to gate its tolerance" in out
    assert "test_vit-cpu-synthetic energy +/-" in out and "(tolerance 5%)" in out and "--e3p-passes" in out
    assert "--e3p-save-noisy-baseline" in out
    assert not base.exists() and (pytester.path / "out.json").exists()  # nothing else lost
    forced = pytester.runpytest(*RUN, f"--e3p-save-baseline={base}", "--e3p-save-noisy-baseline")
    assert forced.ret == 0
    assert "baseline written although too noisy to gate its tolerance (--e3p-save-noisy-baseline)" in forced.stdout.str()
    assert json.loads(base.read_text())["cases"]


def test_a_quiet_run_is_saved_and_a_gated_run_says_what_a_noisy_baseline_supports(pytester):
    pytester.makepyfile(test_bench=BENCH)
    base = pytester.path / "base.json"
    quiet = pytester.runpytest(*RUN, f"--e3p-save-baseline={base}")
    assert quiet.ret == 0 and "baseline written to" in quiet.stdout.str()
    data = json.loads(base.read_text())
    case = next(iter(data["cases"].values()))
    e = case["energy_mj_per_image_passes"][0]
    case["energy_mj_per_image_passes"] = [e * 0.8, e * 1.2]  # a 1-run baseline whose passes spread 20 %
    base.write_text(json.dumps(data))
    gated = pytester.runpytest(*RUN, f"--e3p-baseline={base}", "--e3p-confirm=0")
    out = gated.stdout.str()
    start = out.index("[e3p] test_vit-cpu-synthetic: its baseline's noise")  # said at the start, before the test runs
    assert start < out.index("test_bench.py")
    assert "wider than the energy tolerance 5%" in out and "is what the data support" in out
    assert "what the data support: test_vit-cpu-synthetic: energy catches +" in out
