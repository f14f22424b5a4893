"""Clocks that move only when a test moves them, and the energy a device draws meanwhile, so every
figure the protocols compute from them is exact whatever the machine running the tests is doing."""

import types


class ScriptedClock:
    """A monotonic clock at `t_s` seconds that moves only when told (`advance`, `sleep`)."""

    def __init__(self, t_s=0.0):
        self.t_s = t_s

    def monotonic(self):
        return self.t_s

    __call__ = monotonic

    def advance(self, seconds):
        self.t_s += seconds

    def sleep(self, seconds):
        self.advance(seconds)

    def as_time_module(self):
        """The part of the `time` module that the measuring code uses, on this clock: monkeypatch a
        module's `time` with it."""
        return types.SimpleNamespace(monotonic=self.monotonic, perf_counter=self.monotonic, sleep=self.sleep)

    def install(self, monkeypatch, *modules):
        """Each module's `time` on this clock. A sampler thread started on it would spin: a test on a
        scripted clock leaves a sampling sensor's thread unstarted, and each read() takes its sample."""
        for module in modules:
            monkeypatch.setattr(module, "time", self.as_time_module())
        return self


class Machine(ScriptedClock):
    """A scripted clock and the cumulative energy a device draws while it moves.

    The device draws `power_w` while time passes (an idle window, `sleep`). Each `forward()` runs the
    next step of `script`, a cycle of (extra power W over `power_w`, seconds); `loaded_w`, where set,
    is the power from the first forward() on (a device that stays busy)."""

    def __init__(self, power_w, script=((0.0, 0.125),), loaded_w=None, t_s=0.0):
        super().__init__(t_s)
        self.power_w, self.loaded_w = power_w, loaded_w
        self.script = list(script)
        self.energy_mj = 0.0
        self.forwards = 0

    def sleep(self, seconds, extra_w=0.0):
        self.advance(seconds)
        self.energy_mj += (self.power_w + extra_w) * seconds * 1000.0

    def forward(self):
        if self.loaded_w is not None:
            self.power_w = self.loaded_w
        extra_w, seconds = self.script[self.forwards % len(self.script)]
        self.forwards += 1
        self.sleep(seconds, extra_w)
