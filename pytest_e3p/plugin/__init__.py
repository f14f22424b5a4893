"""pytest glue: options, parametrization, fixtures, the regression gate and the end-of-run report.

A benchmark is any test that asks for the `e3p` fixture (or `e3p_case`): it is parametrized over
every model x device x dataset of the run, so each combination is its own test id. The hooks that
need the run live on one E3PPlugin object (run_plugin.py), registered with the run's session once it
exists, as pytest's junitxml registers its LogXML; this module keeps the options, the marker, the
parametrization and the fixtures.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest

from .. import config as opts
from . import hookspecs
from .run_plugin import RUNNER_KEY, E3PPlugin, cases_of, live_writer

if TYPE_CHECKING:
    from ..run.session import E3PSession

PLUGIN_NAME = "e3p-session"  # the E3PPlugin's name in pytest's plugin manager

__all__ = ["PLUGIN_NAME", "RUNNER_KEY", "E3PPlugin", "e3p", "e3p_case", "e3p_model", "e3p_sensor", "e3p_session"]


def pytest_addoption(parser: pytest.Parser) -> None:
    opts.add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "e3p(energy_tolerance=None, latency_tolerance=None, top1_tolerance=None): per-benchmark regression tolerances (fractions such as 0.08, or strings such as '8%'; top1 in points)",
    )
    # Validate at once when the user asked for pytest-e3p, so bad input is a usage error before
    # anything runs; other projects with the plugin installed pay nothing.
    if opts.explicitly_set(config) and not hasattr(config, "workerinput"):
        if _xdist_workers(config):
            # remote boards too, for now: the session measures one device, and the workers would each write the results
            lab = (
                "; to measure several remote boards at once, run one pytest per board (--e3p-device NAME --e3p-results NAME.json) "
                "side by side and merge them with `python -m pytest_e3p report *.json`"
                if str(config.getoption("e3p_device") or "").startswith("ssh://") or config.getoption("e3p_devices_file")
                else ""
            )
            raise pytest.UsageError(
                "pytest-e3p measures one case at a time on one device; under pytest-xdist every worker would measure "
                f"at once and write its own part of the results: run the benchmarks without -n (or with -n 0){lab}"
            )
        _private_compile_cache(config)
        _session(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    undo = config.stash.get(_ENV_UNDO, None)
    if undo is not None:
        undo.undo()  # an in-process run (pytester) leaves the environment as it found it
    previous = config.stash.get(_SIGTERM_BEFORE, None)
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


_SIGTERM_BEFORE = pytest.StashKey[Any]()


def _stop_on_sigterm(config: pytest.Config) -> None:
    """SIGTERM (what a CI runner sends on cancel, what `kill` sends) stops the run as Ctrl-C does:
    its default action killed the process at once, leaving an ONNX export's temporary folder, a
    half-written history file and no results. Raised as KeyboardInterrupt, the finally blocks run and
    pytest ends the session as interrupted (exit 2), writing what was measured. A second SIGTERM
    gets the handler the run found, so a stuck clean-up can still be stopped. Signals reach the main
    thread only, so nothing is installed from another one."""
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is None:  # set outside Python: it cannot be restored from here, so it is left alone
        return

    def interrupt(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, previous)
        raise KeyboardInterrupt(f"stopped by signal {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, interrupt)
    config.stash[_SIGTERM_BEFORE] = previous


_ENV_UNDO = pytest.StashKey[pytest.MonkeyPatch]()
# torch's compile caches; their defaults are shared: inductor's is $TMPDIR/torchinductor_<user>, a
# predictable name another user can create first (torch/_inductor/runtime/cache_dir_utils.py), and the
# .so files compiled into it are loaded. Triton's goes under inductor's unless TRITON_CACHE_DIR is set.
COMPILE_CACHE_VARS = {"TORCHINDUCTOR_CACHE_DIR": "torchinductor", "TRITON_CACHE_DIR": "triton"}


def private_cache_root() -> Path:
    """The user's own cache folder of pytest-e3p: $XDG_CACHE_HOME/pytest-e3p, else ~/.cache/pytest-e3p."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "pytest-e3p"


def _private_compile_cache(config: pytest.Config) -> None:
    """Point the compile caches the user has not chosen at private folders (mode 0700, the user's),
    for this run; a usage error naming the folder when one is another user's or writable by others.
    Where the user's cache folder cannot be made (a read-only home), a fresh private temporary folder
    serves the run and is removed at its end."""
    unset = {var: sub for var, sub in COMPILE_CACHE_VARS.items() if not os.environ.get(var)}
    if not unset:
        return
    root = private_cache_root()
    folders = {var: root / sub for var, sub in unset.items()}
    try:
        for folder in [root, *folders.values()]:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        root = Path(tempfile.mkdtemp(prefix="e3p-compile-"))  # 0700, a name nobody could guess
        config.add_cleanup(lambda: shutil.rmtree(root, ignore_errors=True))
        folders = {var: root / sub for var, sub in unset.items()}
    for folder in [root, *folders.values()]:
        folder.mkdir(mode=0o700, exist_ok=True)
        why = not_private(folder)
        if why:
            raise pytest.UsageError(
                f"compile cache {folder} {why}: another user could plant compiled code there; remove it (it is rebuilt) "
                "or set TORCHINDUCTOR_CACHE_DIR and TRITON_CACHE_DIR to a folder of your own"
            )
    undo = config.stash[_ENV_UNDO] = pytest.MonkeyPatch()
    for var, folder in folders.items():
        undo.setenv(var, str(folder))


def not_private(folder: Path) -> str:
    """Why code compiled into folder could come from someone else ("" where it cannot): not a folder,
    owned by another user, or writable by the group or others."""
    st = folder.stat()  # what is used, through any symlink
    if not stat.S_ISDIR(st.st_mode):
        return "is not a folder"
    if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
        return f"is owned by another user (uid {st.st_uid})"
    if st.st_mode & 0o022:
        return f"is writable by others (mode {stat.S_IMODE(st.st_mode):04o})"
    return ""


def _xdist_workers(config: pytest.Config) -> int:
    """How many pytest-xdist workers this run asks for (0 without xdist)."""
    if not config.pluginmanager.hasplugin("xdist"):
        return 0
    n = config.getoption("numprocesses", None)
    if n in ("auto", "logical"):
        return 2  # as many as the machine has: more than one
    try:
        return int(n or 0)
    except (TypeError, ValueError):
        return 0


class _PytestCache:
    """pytest's cache as the mapping screening.complexity_of wants."""

    def __init__(self, cache: Any):
        self._cache = cache

    def get(self, key: str, default: Any = None) -> Any:
        return self._cache.get(key, default)

    def __setitem__(self, key: str, value: Any) -> None:
        self._cache.set(key, value)


_PLANNED = pytest.StashKey[Any]()  # the run's E3PSession, built for its case list, not started yet
CASE_IDS_KEY = "e3p/case-ids"  # pytest's cache: the case ids of the last run of the same options

# The options a run's case ids depend on (with the versions of timm and torch, whose default weights
# tags and image sizes name the cases).
_CASE_FIELDS = ("protocol", "device", "models", "datasets", "batch_size", "image_size", "variants", "precision", "screen", "screen_keep")


@dataclass(frozen=True)
class PendingCase:
    """A case known by its test id only: what a benchmark is parametrized with when the ids come from
    pytest's cache, so collecting a project whose e3p tests are not selected imports neither torch
    nor timm. Replaced by the real Case (pytest_collection_finish) once an e3p test is selected."""

    id: str


def _planned(config: pytest.Config) -> E3PSession:
    """The run's E3PSession: the started one where it exists, else built (options read, device,
    models and datasets resolved: torch and timm imported) but not started."""
    plugin = config.pluginmanager.get_plugin(PLUGIN_NAME)
    if plugin is not None:
        return plugin.session
    planned = config.stash.get(_PLANNED, None)
    if planned is None:
        from ..run.session import E3PSession, SetupError

        options = opts.read_options(config)
        cache = _PytestCache(config.cache) if getattr(config, "cache", None) is not None else None
        try:
            planned = E3PSession(options, cache, live_writer(config))
        except SetupError as exc:
            raise pytest.UsageError(str(exc)) from None
        config.stash[_PLANNED] = planned
    return planned


def _session(config: pytest.Config) -> E3PSession:
    """The run's E3PSession, started (and its E3PPlugin registered) on first use."""
    plugin = config.pluginmanager.get_plugin(PLUGIN_NAME)
    if plugin is None:
        from ..run.session import SetupError

        session = _planned(config)
        try:
            session.start()
        except SetupError as exc:
            raise pytest.UsageError(str(exc)) from None
        plugin = E3PPlugin(config, session)
        config.pluginmanager.register(plugin, PLUGIN_NAME)
        _stop_on_sigterm(config)
    return plugin.session


def _case_ids_key(config: pytest.Config) -> str | None:
    """What the case ids of this run depend on, as one string; None where earlier ids cannot stand
    in: no pytest cache, a pytest_e3p_modify_cases hook (it may change the list), Pareto screening."""
    if getattr(config, "cache", None) is None or config.hook.pytest_e3p_modify_cases.get_hookimpls():
        return None
    from importlib import metadata

    from .. import __version__

    values = {}
    for name, flag, _default, _parse, _help in opts.SPEC:
        if name in _CASE_FIELDS:
            raw = config.getoption(f"e3p_{name}")
            values[name] = str(raw if raw is not None else config.getini(opts.ini_name(flag))).strip()
    if values["screen"] != "none":
        return None
    versions = {"pytest-e3p": __version__}
    for dist in ("timm", "torch"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = ""
    # where the device is found rather than named, what the process may see can change its name
    env = {var: os.environ.get(var, "") for var in ("CUDA_VISIBLE_DEVICES", "E3P_SYSFS_ROOT")}
    return json.dumps([values, versions, env], sort_keys=True)


def _cached_ids(config: pytest.Config, key: str | None) -> list[str] | None:
    if key is None:
        return None
    entry = config.cache.get(CASE_IDS_KEY, None)
    if not isinstance(entry, dict) or entry.get("key") != key:
        return None
    ids = entry.get("ids")
    return ids if isinstance(ids, list) and ids and all(isinstance(i, str) for i in ids) else None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "e3p_case" not in metafunc.fixturenames:
        return
    config = metafunc.config
    # Not started at configure (no e3p option given): the ids of an earlier run of the same options
    # parametrize the benchmarks, and the run starts only where one of them is selected.
    key = _case_ids_key(config) if config.pluginmanager.get_plugin(PLUGIN_NAME) is None else None
    ids = _cached_ids(config, key)
    if ids is not None:
        metafunc.parametrize("e3p_case", [PendingCase(i) for i in ids], ids=ids)
        return
    cases = _planned(config).cases()
    config.hook.pytest_e3p_modify_cases(config=config, cases=cases)
    if key is not None:
        config.cache.set(CASE_IDS_KEY, {"key": key, "ids": [c.id for c in cases]})
    metafunc.parametrize("e3p_case", cases, ids=[c.id for c in cases])


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the run once the selection is known, and only where an e3p case is selected; cases
    parametrized by their id alone get their real Case."""
    config = session.config
    if config.pluginmanager.get_plugin(PLUGIN_NAME) is not None:
        return  # started at configure or by a fixture: its hooks have seen the collection
    selected = [item for item in session.items if "e3p_case" in getattr(getattr(item, "callspec", None), "params", {})]
    if not selected:
        return
    e3p = _session(config)
    real = {case.id: case for case in e3p.cases()}
    for item in selected:
        params = item.callspec.params  # type: ignore[attr-defined]
        pending = params["e3p_case"]
        if isinstance(pending, PendingCase):
            if pending.id not in real:
                config.cache.set(CASE_IDS_KEY, None)
                raise pytest.UsageError(
                    f"case {pending.id}, from the case list pytest-e3p cached in .pytest_cache, is not a case of this run "
                    "(the machine or its models changed since): run again; the cached list is dropped"
                )
            params["e3p_case"] = real[pending.id]
    plugin = cast(E3PPlugin, config.pluginmanager.get_plugin(PLUGIN_NAME))
    plugin.pytest_collection_modifyitems(session, config, session.items)  # registered after that hook ran


@pytest.fixture(scope="session")
def e3p_session(request: pytest.FixtureRequest) -> E3PSession:
    """The run: device, sensor, options, results so far."""
    return _session(request.config)


@pytest.fixture
def e3p_model(e3p_case, e3p_session) -> Iterator[Any]:
    """The case's model, built with its weights, on the device, in eval mode (a LoadedModel); built
    once per case (its passes use the same one) and released after its test."""
    from ..models.build import WeightsError
    from ..run.case import CaseSkipped

    skip = fail = ""
    try:
        loaded = e3p_session.load_model(e3p_case)
    except CaseSkipped as exc:  # a variant or image size this machine or model cannot take
        skip = str(exc)
    except WeightsError as exc:  # a bad checkpoint: its message names the file and the fix
        fail = str(exc)
    if skip:  # outside `except`: no chained traceback
        pytest.skip(skip)
    if fail:
        pytest.fail(fail, pytrace=False)
    yield loaded
    e3p_session.release(e3p_case.id)  # its passes are done: its model is not needed again


@pytest.fixture
def e3p_sensor(e3p_session):
    """The device's power sensor (a NullSensor, whose energy is unavailable, where there is none)."""
    return e3p_session.sensor


@pytest.fixture
def e3p(request: pytest.FixtureRequest, e3p_case, e3p_model, e3p_session):
    """The case runner: e3p.measure(benchmark), e3p.evaluate(), e3p.result."""
    from ..run.runner import CaseRunner
    from .benchmark_bridge import record_rounds

    # Results and baselines hold one measurement per case: a second benchmark of the same case would
    # silently replace the first, so it is stopped before it measures anything.
    owner = e3p_session.owners.setdefault(e3p_case.id, request.node.nodeid)
    if owner != request.node.nodeid:
        pytest.fail(
            f"case {e3p_case.id} is already measured in this run by {owner}; results and baselines keep one "
            "measurement per case: select one of the two with -k, or run each in its own run with its own --e3p-results",
            pytrace=False,
        )
    if not e3p_session.early_done and e3p_session.protocol.passes > 1:
        e3p_session.run_early_passes(cases_of(request.session))
    runner = CaseRunner(e3p_session.runner_context(e3p_case, e3p_model), benchmark_fixture=lambda: _benchmark_fixture(request), publish_rounds=record_rounds)
    request.node.stash[RUNNER_KEY] = runner
    return runner


def _benchmark_fixture(request: pytest.FixtureRequest):
    """pytest-benchmark's fixture where that plugin is active and enabled, else None: the suite runs
    without it (-p no:benchmark), and --benchmark-disable does not leave an unused fixture behind."""
    config = request.config
    if not config.pluginmanager.hasplugin("benchmark") or config.getoption("benchmark_disable", False):
        return None
    try:
        return request.getfixturevalue("benchmark")
    except pytest.FixtureLookupError:
        return None
