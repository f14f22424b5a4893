"""Remote boards: `--device ssh://USER@HOST[:PORT]/PROFILE`, or a board named in the devices file.

The devices file (TOML, `--e3p-devices-file` / ini `e3p_devices_file`) lists boards:

    [[board]]
    name = "tx2-03"                      # the device name in case ids, results and baselines
    url = "ssh://nvidia@tx2-03/tx2"      # or host = ..., user = ..., port = ..., profile = ...
    ssh_options = ["IdentityFile=~/.ssh/lab_ed25519", "ProxyJump=gw"]   # ssh -o, after ~/.ssh/config
    python = "python3"                   # the board's interpreter (a command line)
    runtime = "auto"                     # auto (torch > onnxruntime), torch or onnxruntime
    sensor = "auto"                      # auto (the profile's), jetson, rapl or none
    env = { E3P_SYSFS_ROOT = "/" }       # environment of the agent on the board

Parsing reads no network: the board is reached when the run starts (run/remote_bench.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..hardware.devices import PROFILES, Device, DeviceError, Profile, accepted_names
from ..hardware.kinds import DeviceKind

RUNTIMES = ("auto", "torch", "onnxruntime")
SENSORS = ("auto", "jetson", "rapl", "none")
_URL = re.compile(r"ssh://(?:(?P<user>[^@/]+)@)?(?P<host>\[[^\]]+\]|[^:/]+)(?::(?P<port>\d+))?/(?P<profile>[A-Za-z0-9:_-]+)/?")
_KEYS = {"name", "url", "host", "user", "port", "profile", "ssh_options", "ssh_config", "python", "runtime", "sensor", "env"}


@dataclass(frozen=True)
class RemoteBoard:
    name: str
    host: str
    profile: str  # a PROFILES name, or "auto": the board says
    user: str | None = None
    port: int | None = None
    ssh_options: tuple[str, ...] = ()  # "Key=Value", passed as ssh -o
    ssh_config: Path | None = None  # ssh -F: a config file instead of ~/.ssh/config
    python: str = "python3"
    runtime: str = "auto"
    sensor: str = "auto"
    env: dict[str, str] = field(default_factory=dict)

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def describe(self) -> str:
        """How a line names the board: its name and where it is."""
        where = self.destination + (f":{self.port}" if self.port else "")
        return f"board {self.name} ({where})"

    @property
    def sensor_kind(self) -> str:
        """What the agent reads: the devices file's choice, else the profile's sensor."""
        if self.sensor != "auto" or self.profile == "auto":
            return self.sensor
        kind = PROFILES[self.profile].kind
        return {DeviceKind.JETSON: "jetson", DeviceKind.CPU: "rapl"}.get(kind, "none")


class RemoteDevice(Device):
    """A Device whose model is measured on a board over SSH. The host builds each case's model on its
    CPU (torch_device "cpu") and exports it; the board runs and times it."""

    board: RemoteBoard

    def temperature_c(self) -> float | None:
        return None  # the host's thermal zones say nothing about the board


def parse_url(url: str) -> RemoteBoard:
    m = _URL.fullmatch(url.strip())
    if m is None:
        raise DeviceError(f"--device {url}: not ssh://USER@HOST[:PORT]/PROFILE (e.g. ssh://nvidia@tx2-03/tx2)")
    host = m.group("host").strip("[]")
    return RemoteBoard(host, host, _profile(m.group("profile"), url), m.group("user"), int(m.group("port")) if m.group("port") else None)


def _profile(name: str, where: str) -> str:
    name = name.lower()
    if name != "auto" and name not in PROFILES:
        raise DeviceError(f"{where}: unknown profile {name!r}; accepted: {accepted_names()}")
    return name


def read_devices_file(path: Path) -> dict[str, RemoteBoard]:
    """The boards of a devices file by name; DeviceError (one line naming the file) on bad input."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the same parser, as its own package
        try:
            import tomli as tomllib  # type: ignore[no-redef,unused-ignore]
        except ModuleNotFoundError:
            raise DeviceError("--e3p-devices-file needs a TOML parser on Python 3.10: pip install tomli") from None
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise DeviceError(f"--e3p-devices-file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise DeviceError(f"--e3p-devices-file {path}: not valid TOML ({exc})") from None
    entries = data.get("board", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise DeviceError(f"--e3p-devices-file {path}: boards are [[board]] tables")
    boards: dict[str, RemoteBoard] = {}
    for i, entry in enumerate(entries, 1):
        board = _board(entry, f"--e3p-devices-file {path}, board {i}")
        if board.name in boards:
            raise DeviceError(f"--e3p-devices-file {path}: two boards are named {board.name!r}")
        boards[board.name] = board
    return boards


def _board(entry: dict[str, Any], where: str) -> RemoteBoard:
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise DeviceError(f"{where}: unknown key(s) {', '.join(unknown)}; accepted: {', '.join(sorted(_KEYS))}")
    if "url" in entry:
        base = parse_url(str(entry["url"]))
    elif "host" in entry and "profile" in entry:
        base = RemoteBoard(str(entry["host"]), str(entry["host"]), _profile(str(entry["profile"]), where), entry.get("user"), entry.get("port"))
    else:
        raise DeviceError(f'{where}: give url = "ssh://USER@HOST[:PORT]/PROFILE", or host and profile')
    runtime, sensor = str(entry.get("runtime", "auto")), str(entry.get("sensor", "auto"))
    if runtime not in RUNTIMES:
        raise DeviceError(f"{where}: runtime {runtime!r}; accepted: {', '.join(RUNTIMES)}")
    if sensor not in SENSORS:
        raise DeviceError(f"{where}: sensor {sensor!r}; accepted: {', '.join(SENSORS)}")
    options = entry.get("ssh_options", [])
    if not isinstance(options, list) or not all(isinstance(o, str) and "=" in o for o in options):
        raise DeviceError(f'{where}: ssh_options is a list of "Key=Value" strings (ssh -o)')
    env = entry.get("env", {})
    if not isinstance(env, dict):
        raise DeviceError(f'{where}: env is a table of NAME = "value"')
    config = entry.get("ssh_config")
    return RemoteBoard(
        name=str(entry.get("name", base.name)),
        host=base.host,
        profile=base.profile,
        user=str(entry["user"]) if entry.get("user") else base.user,
        port=int(entry["port"]) if entry.get("port") else base.port,
        ssh_options=tuple(options),
        ssh_config=Path(config).expanduser() if config else None,
        python=str(entry.get("python", "python3")),
        runtime=runtime,
        sensor=sensor,
        env={str(k): str(v) for k, v in env.items()},
    )


def is_remote(name: str, devices_file: Path | None) -> bool:
    """Whether --device names a board: an ssh:// URL, or a name in the devices file."""
    if name.strip().lower().startswith("ssh://"):
        return True
    return devices_file is not None and name.strip() in read_devices_file(devices_file)


def resolve_board(name: str, devices_file: Path | None) -> RemoteDevice:
    """--device NAME -> the board's RemoteDevice (not connected yet). A URL whose host is a board of
    the devices file takes that board's options and name."""
    boards = read_devices_file(devices_file) if devices_file is not None else {}
    if name.strip() in boards:
        board = boards[name.strip()]
    else:
        board = parse_url(name)
        same = [b for b in boards.values() if (b.host, b.user or board.user, b.port or board.port) == (board.host, board.user, board.port)]
        if same:
            board = RemoteBoard(**{**same[0].__dict__, "profile": board.profile})
    profile = PROFILES.get(board.profile) or Profile("auto", DeviceKind.CPU, "asks the board")
    device = RemoteDevice(board.name, profile, "cpu", {"board": board.name})
    device.board = board
    return device
