"""Command-line and ini options, read into one validated Options record.

Every `--e3p-x-y` flag has an ini twin `e3p_x_y` for `[tool.pytest.ini_options]`; the command line
wins over the ini file. All flags carry the prefix, so a project that defines its own `--device`
keeps it; this repository's top-level conftest.py adds `--device` as the suite's alias of
`--e3p-device`.
"""

from __future__ import annotations

import math
import os
import stat
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pytest

from .gate.baseline import DEFAULT_TOLERANCES
from .variants.catalog import VARIANT_HELP


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def positive_float(text: str) -> float:
    """A finite number above 0 (a rate, a duration); ValueError saying why not. The CLI uses it too."""
    value = _finite(text)
    if value <= 0:
        raise ValueError("must be positive")
    return value


def _non_negative_float(text: str) -> float:
    value = _finite(text)
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def _threads(text: str) -> int | None:
    """None means auto: torch's own default (recorded either way)."""
    return None if text == "auto" else _positive_int(text)


def _fraction(text: str) -> float:
    value = _non_negative_float(text)
    if value > 1:
        raise ValueError("must be a fraction from 0 to 1 (0.1 = 10%)")
    return value


def _items(text: str) -> list[str]:
    """The items of a comma list; an empty one (`1,,2`, a trailing comma) is refused: it is a typo
    more often than not, and dropping it silently would run another matrix than the one meant."""
    values = [v.strip() for v in text.split(",")]
    if text.strip() and not all(values):
        where = next(i for i, v in enumerate(values, 1) if not v)
        raise ValueError(f"item {where} of the comma list is empty: remove the extra comma")
    return [v for v in values if v]


def _listed(parse: Any):
    """A comma-list option read by `parse` (models, datasets, variants, ...), empty items refused first."""

    def check(text: str) -> Any:
        _items(text)
        return parse(text)

    return check


def _sizes(text: str) -> tuple[int | None, ...]:
    """A comma list of sizes, each a case axis value; `auto` (None) is the default of the device
    (batch) or of the model (image size)."""
    values = _items(text)
    if not values:
        raise ValueError("give auto or a comma list of positive integers")
    out = tuple(None if v == "auto" else _positive_int(v) for v in values)
    if len(set(out)) < len(out):
        raise ValueError("lists a value twice")
    return out


def _choice(*allowed: str):
    def parse(text: str) -> str:
        if text not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return text

    return parse


def _path(text: str) -> Path | None:
    return Path(text).expanduser() if text else None


EXPORT_KINDS = ("csv", "openmetrics", "mlflow", "bencher")


def export_spec(item: str) -> tuple[str, str]:
    """One KIND[=DEST] of --e3p-export (and of the export command): (kind, destination), "" for the
    kind's default; ValueError naming the kinds when KIND is not one of them."""
    kind, _, dest = item.partition("=")
    if kind.strip() not in EXPORT_KINDS:
        raise ValueError(f"use one of {', '.join(EXPORT_KINDS)} (KIND or KIND=DESTINATION)")
    return kind.strip(), dest.strip()


def _exports(text: str) -> tuple[tuple[str, str], ...]:
    """--e3p-export KIND[=DEST], repeatable (the flags arrive joined by newlines; the ini twin takes
    one per line or a comma list): (kind, destination) pairs, "" for the kind's default destination."""
    out = []
    for item in _items(text.replace("\n", ",")):
        try:
            out.append(export_spec(item))
        except ValueError as exc:
            raise ValueError(f"{item.partition('=')[0].strip()!r} is not an export: {exc}") from None
    return tuple(out)


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def _flag(text: str) -> bool:
    return str(text).strip().lower() in {"1", "true", "yes", "on"}


# (field, flag, default, parser, help). Defaults follow the E3P paper's protocol.
SPEC: list[tuple[str, str, str, Any, str]] = [
    (
        "protocol",
        "--e3p-protocol",
        "e3p",
        _choice("e3p", "edgevit"),
        "e3p: batches in timed rounds, median per pass (the E3P paper's); edgevit: batch 1, N single inferences with the idle background "
        "subtracted, mean +/- sd and efficiency in %/mJ (the EdgeViT paper's Table 3)",
    ),
    ("inferences", "--e3p-inferences", "50", _positive_int, "edgevit protocol: timed inferences per pass of a case (the paper's 50)"),
    (
        "device",
        "--e3p-device",
        "cpu",
        str,
        "device profile: cpu, cuda, cuda:N, auto, rtx3050, tx2, xavier-nx, orin-nano, orin-nx, agx-orin, jetson (any Jetson board); "
        "or a board over SSH: ssh://USER@HOST[:PORT]/PROFILE, or a board's name in --e3p-devices-file",
    ),
    (
        "devices_file",
        "--e3p-devices-file",
        "",
        _path,
        "TOML file of remote boards ([[board]] name, url = ssh://USER@HOST[:PORT]/PROFILE, ssh_options, python, runtime, sensor, env); --e3p-device NAME measures one",
    ),
    ("models", "--e3p-models", "paper13", _listed(str), "paper13, candidates, edgevit, edgevit-table3, or a comma list of timm names (arch or arch.tag)"),
    ("datasets", "--e3p-dataset", "synthetic", _listed(str), "comma list of: synthetic, imagenet=PATH, cifar10=PATH, folder=PATH"),
    (
        "batch_size",
        "--e3p-batch-size",
        "auto",
        _sizes,
        "images per batch, or a comma list (1,64: each a case); auto: 64 (the paper's) on GPUs and Jetson, 16 on a CPU",
    ),
    (
        "image_size",
        "--e3p-image-size",
        "auto",
        _sizes,
        "input resolution in pixels, or a comma list (224,384: each a case, built with timm's img_size); auto: the model's own",
    ),
    (
        "variants",
        "--e3p-variants",
        "fp32",
        _listed(str),
        "comma list of optimised forms of each model, each a case checked and measured against fp32 eager:\n"
        + "\n".join(f"- {line}" for line in VARIANT_HELP.splitlines()),
    ),
    (
        "passes",
        "--e3p-passes",
        "3",
        _positive_int,
        "passes over all cases (pass 1 over every case, then pass 2, ...); the gate weighs a change against the spread between passes and runs",
    ),
    ("rounds", "--e3p-rounds", "5", _positive_int, "measured rounds per pass; a pass's value is the median of its rounds"),
    ("min_round_s", "--e3p-min-round-s", "1.0", positive_float, "shortest round, seconds (raised to 10 sensor update periods)"),
    ("warmup_s", "--e3p-warmup-s", "2.0", _non_negative_float, "warm-up before the rounds, seconds"),
    ("idle_s", "--e3p-idle-s", "1.0", _non_negative_float, "idle-power window before each case, seconds (0: skip)"),
    ("threads", "--e3p-threads", "auto", _threads, "torch intra-op threads (auto: torch's default); recorded, and a baseline of another count is refused"),
    (
        "malloc",
        "--e3p-malloc",
        "fixed",
        _choice("fixed", "default"),
        "fixed: pin glibc malloc's mmap and trim thresholds for the run (its adaptive threshold moved CPU latency by up to 30% between identical runs); 'default': leave malloc alone",
    ),
    ("precision", "--e3p-precision", "fp32", _choice("fp32", "fp16", "bf16"), "deprecated: use --e3p-variants fp16 (or bf16); still accepted, as that variant"),
    ("weights", "--e3p-weights", "pretrained", _choice("pretrained", "random"), "pretrained (timm/Hugging Face cache) or random"),
    ("checkpoints", "--e3p-checkpoints", "", _path, "folder of fine-tuned checkpoints: DIR/<arch>_<dataset>.pth"),
    ("limit", "--e3p-limit", "0", int, "evaluate N evenly spaced images of the dataset (0: all)"),
    (
        "workers",
        "--e3p-workers",
        "-1",
        int,
        "data-loading processes for the accuracy pass (-1: 0 on a CPU device, where batches are decoded by threads between forward passes; half the CPUs on an accelerator)",
    ),
    ("progress_s", "--e3p-progress-s", "10", _non_negative_float, "seconds between progress lines of a long accuracy pass (images done, rate, time left)"),
    ("results", "--e3p-results", ".e3p/results.json", _path, "where the results JSON is written"),
    ("require_sensor", "--e3p-require-sensor", "false", _flag, "fail when no real power sensor can be read (no estimate)"),
    ("w_per_core", "--e3p-estimate-w-per-core", "10", positive_float, "assumed watts per busy core of the CPU energy estimate"),
    ("static_w", "--e3p-estimate-static-w", "10", _non_negative_float, "assumed static watts of the CPU package in the energy estimate"),
    ("sample_hz", "--e3p-sample-hz", "100", positive_float, "sampling rate of the power-sampling sensors (Jetson rails, old GPUs)"),
    ("sam_alpha", "--e3p-sam-alpha", "5", positive_float, "alpha of SAM (5: SAM5)"),
    ("screen", "--e3p-screen", "none", _choice("none", "pareto"), "stage-1 screening of the models before measuring: none or pareto"),
    ("screen_keep", "--e3p-screen-keep", "", _listed(str), "comma list of models the screening always keeps"),
    ("baseline", "--e3p-baseline", "", _path, "compare each case with this baseline file; regressions fail"),
    ("save_baseline", "--e3p-save-baseline", "", _path, "write this run as a baseline (only when the run passes)"),
    (
        "save_noisy_baseline",
        "--e3p-save-noisy-baseline",
        "false",
        _flag,
        "write --e3p-save-baseline even when the run's spread is wider than the tolerance it is meant to gate",
    ),
    (
        "baseline_runs",
        "--e3p-baseline-runs",
        "5",
        _positive_int,
        "runs a baseline keeps per case: --e3p-save-baseline adds this run to a compatible existing baseline and drops the oldest beyond this count (1: replace it)",
    ),
    (
        "confirm",
        "--e3p-confirm",
        "3",
        _count,
        "cases inconclusive against the baseline are measured again in their test, up to this many more passes each, until the verdict is decided; the false-alarm level (1%) is split over the looks: half to the first, the rest shared by the confirmation passes (0: never, one look at 1%)",
    ),
    (
        "slowdown",
        "--e3p-slowdown",
        "0",
        _fraction,
        "for testing the gate only: extra matrix work in every measured forward pass, this fraction of its time (0.1 = about 10% slower)",
    ),
    (
        "tolerance",
        "--e3p-tolerance",
        DEFAULT_TOLERANCES,
        _listed(str),
        "regression tolerances: energy=5%,latency=10%,top1=0.5 (latency and top1 off unless set)",
    ),
    (
        "max_memory_mb",
        "--e3p-max-memory-mb",
        "0",
        _non_negative_float,
        "fail a case whose peak memory exceeds this many MB (MiB, 2^20 bytes: a board's budget; 0: no limit)",
    ),
    (
        "energy_budget_mj",
        "--e3p-energy-budget-mj",
        "0",
        _non_negative_float,
        "energy per image the deployment can afford (mJ): the answer after the tables names the most accurate case within it (0: no budget)",
    ),
    (
        "carbon_g_per_kwh",
        "--e3p-carbon-g-per-kwh",
        "0",
        _non_negative_float,
        "grid carbon intensity, g CO2e per kWh: each case also in grams CO2e per million images (0: off; no lookup)",
    ),
    (
        "price_per_kwh",
        "--e3p-price-per-kwh",
        "0",
        _non_negative_float,
        "electricity price per kWh, in your currency: each case also as the cost of a million images (0: off)",
    ),
    (
        "sustained_s",
        "--e3p-sustained-s",
        "0",
        _non_negative_float,
        "after its passes, run each case continuously this many seconds and report energy, latency, power and temperature per window (0: off)",
    ),
    ("sustained_window_s", "--e3p-sustained-window-s", "10", positive_float, "window of the sustained run, seconds"),
    (
        "attribution",
        "--e3p-attribution",
        "off",
        _choice("off", "both", "time"),
        "after its passes, attribute each case's energy to the model's parts: both (time share x power, and truncated models measured), time (the time share only), off",
    ),
    ("history", "--e3p-history", "", _path, "append this run to this folder, one new file per run (read by the history and dashboard commands)"),
    ("report", "--e3p-report", "", _path, "write report.md and plots to this folder at the end of the run"),
    (
        "export",
        "--e3p-export",
        "",
        _exports,
        "also write the results as KIND[=DEST], repeatable: csv[=PATH], openmetrics[=PATH.prom or http://HOST:PORT, a Pushgateway], "
        "mlflow[=TRACKING_URI], bencher[=PATH]; by default next to the results file (results.csv, results.prom, results.bencher.json) "
        "and sqlite:///mlflow.db",
    ),
    ("reference_model", "--e3p-reference-model", "vit_small_patch16_224", str, "model the report's savings are computed against"),
]


DEFAULTS = {name: default for name, _flag, default, _parse, _help in SPEC}  # the one place defaults live


@dataclass(frozen=True)
class Options:
    protocol: str
    inferences: int
    device: str
    devices_file: Path | None
    models: str
    datasets: str
    batch_size: tuple[int | None, ...]  # None: the device's default
    image_size: tuple[int | None, ...]  # None: the model's default
    variants: str
    passes: int
    rounds: int
    min_round_s: float
    warmup_s: float
    idle_s: float
    threads: int | None
    malloc: str
    precision: str
    weights: str
    checkpoints: Path | None
    limit: int
    workers: int
    progress_s: float
    results: Path | None
    require_sensor: bool
    w_per_core: float
    static_w: float
    sample_hz: float
    sam_alpha: float
    screen: str
    screen_keep: str
    baseline: Path | None
    save_baseline: Path | None
    save_noisy_baseline: bool
    baseline_runs: int
    confirm: int
    slowdown: float
    tolerance: str
    max_memory_mb: float
    energy_budget_mj: float
    carbon_g_per_kwh: float
    price_per_kwh: float
    sustained_s: float
    sustained_window_s: float
    attribution: str
    history: Path | None
    report: Path | None
    export: tuple[tuple[str, str], ...]
    reference_model: str


assert [f.name for f in fields(Options)] == [s[0] for s in SPEC]


REPEATABLE = {"export"}  # given once per value on the command line; joined by newlines for the parser
BARE_VALUE = {"attribution": "both"}  # the value of the flag given without one


def ini_name(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("e3p", "pytest-e3p: energy-efficiency benchmarks of Vision Transformers")
    for name, flag, default, parse, help_text in SPEC:
        # the default said once, here, for the flag and its ini twin alike
        said = f"{help_text} (default: {('on' if _flag(default) else 'off') if parse is _flag else (default or 'none')})"
        # argparse %-formats help texts: a bare % (energy=5%) would crash `pytest --help`
        text = said.replace("%", "%%")
        if parse is _flag:
            group.addoption(flag, action="store_const", const="true", default=None, dest=f"e3p_{name}", help=text)
        elif name in REPEATABLE:
            group.addoption(flag, action="append", default=None, dest=f"e3p_{name}", metavar=name.upper(), help=text)
        elif name in BARE_VALUE:  # `--e3p-attribution` alone means its BARE_VALUE; write `=` before a value
            group.addoption(flag, action="store", nargs="?", const=BARE_VALUE[name], default=None, dest=f"e3p_{name}", metavar=name.upper(), help=text)
        else:
            group.addoption(flag, action="store", default=None, dest=f"e3p_{name}", metavar=name.upper(), help=text)
        parser.addini(ini_name(flag), help=said, default=default)


def explicitly_set(config: pytest.Config) -> bool:
    """Whether the user asked for pytest-e3p in this run (any e3p flag or ini value)."""
    for name, flag, default, _parse, _help in SPEC:
        if config.getoption(f"e3p_{name}") is not None:
            return True
        if str(config.getini(ini_name(flag))) != default:
            return True
    return False


def read_options(config: pytest.Config) -> Options:
    """All options, validated; pytest.UsageError with one line saying what is wrong."""
    values = {}
    for name, flag, _default, parse, _help in SPEC:
        raw = config.getoption(f"e3p_{name}")
        where = flag
        if raw is None:
            raw = config.getini(ini_name(flag))
            where = f"ini option {ini_name(flag)}"
        if isinstance(raw, list):  # a repeatable flag
            raw = "\n".join(raw)
        try:
            values[name] = parse(str(raw).strip())
        except ValueError as exc:
            raise pytest.UsageError(f"{where}={raw!r}: {exc}") from None
    opts = Options(**values)
    for path_name in ("results", "save_baseline"):
        target = getattr(opts, path_name)
        if target is not None:
            check_writable(target, "--e3p-" + path_name.replace("_", "-"))
    for folder_name in ("report", "history"):
        folder = getattr(opts, folder_name)
        if folder is not None:
            check_writable_folder(folder, f"--e3p-{folder_name}")
    if opts.protocol == "edgevit":
        if set(opts.batch_size) - {None, 1}:
            given = ",".join("auto" if b is None else str(b) for b in opts.batch_size)
            raise pytest.UsageError(f"--e3p-protocol edgevit runs batch 1 (the paper's), not --e3p-batch-size {given}: leave the batch size at auto or 1")
        if opts.precision != "fp32" or opts.variants.replace(" ", "") != "fp32":
            what = f"--e3p-precision {opts.precision}" if opts.precision != "fp32" else f"--e3p-variants {opts.variants}"
            raise pytest.UsageError(f"--e3p-protocol edgevit runs fp32 eager models (the paper's), not {what}: use the e3p protocol for variants")
        if opts.image_size != (None,):
            raise pytest.UsageError("--e3p-protocol edgevit runs each model at its own resolution (the paper's): leave --e3p-image-size at auto")
        if opts.idle_s <= 0:
            raise pytest.UsageError("--e3p-protocol edgevit subtracts the idle background measured before each pass: --e3p-idle-s must be above 0")
    if opts.limit < 0:
        raise pytest.UsageError(f"--e3p-limit={opts.limit}: must be 0 (all images) or a positive count")
    return opts


def _stat(path: Path, flag: str, given: Path) -> os.stat_result | None:
    """The path's status, None where it does not exist (yet); a usage error for any other failure.
    Path.exists() says False on a symlink loop (ELOOP) or a denied lookup too, which let such a path
    through the start check and failed its write after the whole run."""
    try:
        return path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise pytest.UsageError(f"{flag}={given}: cannot be written ({path}: {exc.strerror or exc})") from None


def check_writable_folder(path: Path, flag: str) -> None:
    """A folder the run writes into (report, history): a folder, or one that can be made; not a file."""
    st = _stat(path, flag, path)
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise pytest.UsageError(f"{flag}={path}: is a file; give a folder")
    check_writable(path / "probe.json", flag, given=path)


def check_writable(path: Path, flag: str, given: Path | None = None) -> None:
    """Fail at the start, not after an hour of measuring, when a result could not be written."""
    given = given or path
    st = _stat(path, flag, given)
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise pytest.UsageError(f"{flag}={path}: is a folder; give a file path such as {path / 'results.json'}")
    folder = path.parent
    while _stat(folder, flag, given) is None:
        folder = folder.parent
    try:
        if not folder.is_dir():
            raise NotADirectoryError(f"{folder} is a file")
        with tempfile.TemporaryFile(dir=folder):
            pass
        if st is not None and not os.access(path, os.W_OK):
            raise PermissionError(f"{path} is read-only")
    except OSError as exc:
        raise pytest.UsageError(f"{flag}={given}: cannot be written ({exc.strerror or exc})") from None
