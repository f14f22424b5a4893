"""The suite's own pytest glue (the plugin itself is pytest_e3p.plugin, registered on install).

- `--device` is the suite's alias of the plugin's `--e3p-device`: `pytest benchmarks/ --device rtx3050`.
  The plugin registers only prefixed options, so projects with their own `--device` keep theirs.
- An example of the `pytest_e3p_update_json` hook: every results file of this repository records
  which CI job and runner produced it (absent outside CI).
"""

import os


def pytest_addoption(parser):
    parser.addoption(
        "--device",
        dest="e3p_device",
        default=None,
        metavar="DEVICE",
        help="the suite's alias of --e3p-device: cpu, cuda, cuda:N, auto, rtx3050, tx2, xavier-nx, orin-nano, orin-nx, agx-orin, jetson",
    )


def pytest_e3p_update_json(config, results):
    ci = {key: os.environ[name] for key, name in (("job", "GITHUB_JOB"), ("runner", "RUNNER_NAME"), ("run_id", "GITHUB_RUN_ID")) if name in os.environ}
    if ci:
        results["ci"] = ci
