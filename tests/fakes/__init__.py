"""The test suite's fakes, in one place: test modules import from here, never from each other.

- clock: ScriptedClock, a monotonic clock that moves only when told; Machine, one that also counts
  the energy a device draws (idle power, scripted forward calls).
- sensors: ScriptedSensor (reads a Machine exactly), StepPowerSensor (a power step on a clock).
- scripted_run: a pytest plugin (`-p fakes.scripted_run`, fakes.runs.SCRIPTED) that puts the
  plugin's own runs on a scripted machine, so gate and verdict tests get exact figures under load.
- runs: the short options of a pytester run of the plugin.
- results: the one CaseResult factory, results files, a hand-checked ranked example.
- files, power_rails, thermal_zones: sysfs trees (RAPL, Jetson INA3221, thermal zones, cpufreq).
- nvml, jtop, cuda: pynvml, jetson-stats' jtop and torch.cuda's allocator counters.
- datasets: tiny datasets in the real on-disk formats.

The folder `tests/` is on sys.path while pytest runs (rootdir conftest), so these import as `fakes.*`.
"""
