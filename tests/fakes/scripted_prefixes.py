"""A pytest plugin beside fakes.scripted_run (`-p fakes.scripted_run -p fakes.scripted_prefixes`): each
truncated model of --e3p-attribution takes its share of the case's scripted time on the scripted
machine, prefix k of n taking (k + 1) / n of it, so Method 2's figures are exact (each of the n groups
gets 1 / n of the case's energy; the whole model the case's own energy)."""

import pytest

_UNDO = pytest.StashKey[pytest.MonkeyPatch]()


@pytest.hookimpl(tryfirst=True)  # before pytest-e3p opens its sensor (the scripted one)
def pytest_configure(config):
    from fakes.sensors import ScriptedSensor
    from pytest_e3p.models.parts import ModelParts, TruncatedModel

    s_per_image = config.getoption("scripted_ms_per_image") / 1000.0
    machines = []
    patch = config.stash[_UNDO] = pytest.MonkeyPatch()
    init = ScriptedSensor.__init__

    def remember(self, machine, *args, **kwargs):
        machines.append(machine)
        init(self, machine, *args, **kwargs)

    patch.setattr(ScriptedSensor, "__init__", remember)
    forward = TruncatedModel.forward

    def scripted(self, x):
        out = forward(self, x)
        order = getattr(self, "scripted_order", None)
        if order is not None and machines:
            k, n = order
            machines[-1].sleep(s_per_image * x.shape[0] * (k + 1) / n)
        return out

    patch.setattr(TruncatedModel, "forward", scripted)
    prefixes = ModelParts.prefixes

    def numbered(self, call=None):
        out = prefixes(self, call)
        for k, p in enumerate(out):
            p.scripted_order = (k, len(out))  # read by `scripted` above
        return out

    patch.setattr(ModelParts, "prefixes", numbered)


def pytest_unconfigure(config):
    patch = config.stash.get(_UNDO, None)
    if patch is not None:
        patch.undo()
