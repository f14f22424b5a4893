"""Options that keep a pytester run of the plugin short: random weights, no idle window, no warm-up,
rounds of 50 ms. A test adds its own models and the options it is about."""

SHORT = [
    "--e3p-device=cpu",
    "--e3p-passes=2",
    "--e3p-rounds=2",
    "--e3p-min-round-s=0.05",
    "--e3p-warmup-s=0",
    "--e3p-idle-s=0",
    "--e3p-weights=random",
    "-p",
    "no:cacheprovider",
    "--e3p-save-noisy-baseline",  # short, real-timed runs cannot gate 5 %: the fit-to-gate check would refuse their baselines
]

# the rounds timed and read on a scripted machine (fakes.scripted_run): exact figures, whatever the
# machine running the tests is doing
SCRIPTED = ["-p", "fakes.scripted_run"]
