"""The host's side of the agent: sends agent.py (once per run, named by its content hash), holds the
board's lock for the run, ships each model once (cached on the board by content hash), and turns the
agent's JSON lines into the protocol's values (measure.protocols.Round / SteadyState)."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..hardware.sensors import SensorInfo
from ..hardware.sensors import jetson as jetson_sensors
from ..hardware.sensors import rapl as rapl_sensors
from ..hardware.sensors.base import EnergyKind
from ..measure.protocols import Protocol, Round, SteadyState
from . import agent
from .boards import RemoteBoard
from .ssh import BoardError, Connection, cause_of, ssh_lines

AGENT_SOURCE = Path(agent.__file__).read_bytes()
RUNTIME_ORDER = ("torch", "onnxruntime")  # the board's torch first; TensorRT's bindings are not driven yet
MODEL_SUFFIX = {"torch": ".pt", "onnxruntime": ".onnx"}


class AgentError(BoardError):
    """The agent ran and reported a failure (a runtime missing, an old Python, a model it cannot run)."""


def layout() -> dict[str, Any]:
    """The local sensors' tables, sent with every request: one source of truth for both sides."""
    return {"jetson": jetson_sensors.layout(), "rapl": rapl_sensors.layout()}


@dataclass
class Probe:
    """What the board said about itself."""

    python: str
    runtimes: dict[str, str]
    sensor: SensorInfo | None
    sensor_error: str
    raw: dict[str, Any] = field(default_factory=dict)


def sensor_info(raw: dict[str, Any] | None) -> SensorInfo | None:
    if not raw:
        return None
    return SensorInfo(
        raw["name"],
        EnergyKind(raw["kind"]),
        raw["boundary"],
        raw["unit"],
        float(raw["update_period_s"]),
        raw.get("total_rail"),
        tuple(raw.get("rails", ())),
        tuple(raw.get("outside_rails", ())),
    )


class BoardClient:
    """One board for the run: connect(), then check() and measure() per case; close() at the end."""

    def __init__(self, board: RemoteBoard, progress: Callable[[str], None] = lambda line: None):
        self.board, self.progress = board, progress
        self.conn: Connection | None = None
        self.cache_dir = ""
        self.agent_path = ""
        self._hold: Any = None
        self.shipped: set[str] = set()  # model hashes known to be on the board

    def connect(self, who: str = "a pytest-e3p run") -> Probe:
        """Open the connection, send the agent, probe the board and take its lock (waiting, and
        saying so, while another run holds it)."""
        self.conn = Connection(self.board)
        self.conn.open()
        script = 'd="${TMPDIR:-/tmp}/e3p-$(id -u)"; mkdir -p "$d/models" && chmod 700 "$d" && echo "$d"'
        self.cache_dir = self.conn.run(["sh", "-c", script]).decode().strip()
        digest = hashlib.sha256(AGENT_SOURCE).hexdigest()[:16]
        self.agent_path = f"{self.cache_dir}/agent-{digest}.py"
        self._put(self.agent_path, AGENT_SOURCE)
        probe = self._probe()
        self._lock(who)
        return probe

    def _put(self, path: str, data: bytes) -> None:
        """Write a file on the board once: asked first, so a file it has (its name is its content's
        hash) is never sent again, across runs too."""
        assert self.conn is not None
        if self.conn.run(["sh", "-c", 'test -f "$1" && echo present || true', "has", path]).strip() == b"present":
            return
        self.conn.run(["sh", "-c", 'cat > "$1.$$" && mv "$1.$$" "$1"', "put", path], data)

    def _agent(self, command: str) -> list[str]:
        env = [f"{k}={v}" for k, v in self.board.env.items()]
        import shlex

        return [*(["env", *env] if env else []), *shlex.split(self.board.python), self.agent_path, command]

    def _request(self, command: str, request: dict[str, Any], payload: bytes = b"") -> list[dict[str, Any]]:
        return list(self._events(command, request, payload))

    def _events(self, command: str, request: dict[str, Any], payload: bytes = b""):
        """The agent's answers, one dict per line; AgentError for its error line, BoardError where the
        link broke or the agent died without a word. The probe runs on its own; every other command
        goes to the run's agent (`serve`, started by _lock)."""
        assert self.conn is not None, "not connected"
        data = json.dumps({**request, "command": command, "layout": layout()}).encode() + b"\n" + payload
        said_error = None
        if command == "probe":
            lines = self.conn.stream(self._agent(command), data)
        else:
            lines = self._served(data)
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a runtime's own print on stdout
            if event.get("event") == "error":
                said_error = event
            elif event.get("event") == "end":
                break
            else:
                yield event
        else:  # the agent's output ended: it or the link is gone
            if command != "probe":
                self._ended()
        if said_error is not None:
            raise AgentError(f"{self.board.describe()}: {said_error.get('message', 'the agent failed')}")
        if command == "probe":
            self._check_status(self.conn.last_status, self.conn.last_stderr)

    def _served(self, data: bytes):
        """Send a request to the run's agent; its answer's lines."""
        if self._hold is None or self._hold.poll() is not None:
            self._ended()
        try:
            self._hold.stdin.write(data)
            self._hold.stdin.flush()
        except BrokenPipeError:
            self._ended()
        return iter(self._hold.stdout.readline, b"")

    def _ended(self) -> None:
        """The run's agent ended: why, as a BoardError."""
        hold, self._hold = self._hold, None
        if hold is None:
            raise BoardError(f"{self.board.describe()}: the agent is not running")
        try:
            status = hold.wait(timeout=30)
        except Exception:
            hold.kill()
            status = hold.wait()
        stderr = hold.stderr.read().decode(errors="replace")
        for pipe in (hold.stdin, hold.stdout, hold.stderr):
            try:
                pipe.close()
            except BrokenPipeError:
                pass
        self._check_status(status, stderr)
        raise BoardError(f"{self.board.describe()}: the agent stopped answering")

    def _check_status(self, status: int, stderr: str) -> None:
        assert self.conn is not None
        if status == 255:
            if not ssh_lines(stderr) and self.conn.alive():  # the link is up: the agent was killed on the board
                raise BoardError(f"{self.board.describe()}: the agent died (killed by a signal on the board: out of memory, or a watchdog)")
            raise BoardError(f"{self.board.describe()}: {cause_of(stderr, self.board)}")
        if status == 127:
            raise BoardError(f"{self.board.describe()}: its Python ({self.board.python}) was not found: set python in the devices file")
        if status != 0:
            last = [ln for ln in stderr.splitlines() if ln.strip()]
            raise BoardError(f"{self.board.describe()}: the agent died (exit status {status}){': ' + last[-1].strip() if last else ''}")

    def _probe(self) -> Probe:
        events = self._request("probe", {"sensor": self.board.sensor_kind if self.board.profile != "auto" else "auto"})
        raw = next((e for e in events if e.get("event") == "probe"), None)
        if raw is None:
            raise BoardError(f"{self.board.describe()}: the agent gave no answer to its probe")
        return Probe(raw["python"], dict(raw.get("runtimes", {})), sensor_info(raw.get("sensor")), raw.get("sensor_error", ""), raw)

    def _lock(self, who: str) -> None:
        """The run's agent (`serve`): it takes the board's lock and keeps it until we close its stdin."""
        assert self.conn is not None
        self._hold = self.conn.popen(self._agent("serve"))
        request = json.dumps({"lock": f"{self.cache_dir}/lock", "who": who}).encode() + b"\n"
        self._hold.stdin.write(request)
        self._hold.stdin.flush()
        for line in self._hold.stdout:
            event = json.loads(line)
            if event.get("event") == "waiting":
                self.progress(f"[e3p] {self.board.describe()} is in use by another run ({event.get('holder') or 'unknown'}): waiting for it to finish")
            elif event.get("event") == "held":
                return
            elif event.get("event") == "error":
                raise AgentError(f"{self.board.describe()}: {event.get('message')}")
        raise BoardError(f"{self.board.describe()}: the board's lock could not be taken: {self._hold.stderr.read().decode(errors='replace').strip()[-200:]}")

    def pick_runtime(self, probe: Probe) -> str:
        """The devices file's runtime, else the first of RUNTIME_ORDER the board has."""
        if self.board.runtime != "auto":
            if self.board.runtime not in probe.runtimes:
                raise AgentError(
                    f"{self.board.describe()}: runtime {self.board.runtime} is not installed there (it has: {', '.join(probe.runtimes) or 'none'})"
                )
            return self.board.runtime
        for name in RUNTIME_ORDER:
            if name in probe.runtimes:
                return name
        raise AgentError(
            f"{self.board.describe()}: no runtime the agent can use ({' or '.join(RUNTIME_ORDER)}) is importable by {self.board.python}: "
            "install the vendor's torch wheel (JetPack) or onnxruntime on the board"
        )

    def ship(self, model: bytes, runtime: str) -> str:
        """The model's path on the board, sent only where that board does not have it yet."""
        digest = hashlib.sha256(model).hexdigest()[:24]
        path = f"{self.cache_dir}/models/{digest}{MODEL_SUFFIX[runtime]}"
        if digest not in self.shipped:
            self._put(path, model)
            self.shipped.add(digest)
        return path

    def logits(self, request: dict[str, Any], images: bytes) -> tuple[list[int], bytes]:
        """The board's logits (float32 bytes) on the host's images."""
        events = self._request("check", request, images)
        answer = next((e for e in events if e.get("event") == "logits"), None)
        if answer is None:
            raise BoardError(f"{self.board.describe()}: the agent returned no logits")
        return answer["shape"], base64.b64decode(answer["data"])

    def measure(self, request: dict[str, Any], protocol: Protocol) -> SteadyState:
        """One pass on the board: its rounds (edgevit: its inferences) as they stream back."""
        from ..hardware.sensors import NullSensor
        from ..measure.protocols import EDGEVIT

        info, idle, rounds, whole = None, None, [], None
        for event in self._events("measure", request):
            kind = event.get("event")
            if kind == "sensor":
                info = sensor_info(event.get("info"))
            elif kind == "idle":
                idle = float(event["power_w"])
            elif kind == "window":
                whole = (float(event["energy_mj"]), float(event["duration_s"]))
            elif kind == "round":
                rounds.append(
                    Round(
                        int(event["images"]),
                        float(event["duration_s"]),
                        event.get("energy_mj"),
                        dict(event.get("rails_mj") or {}),
                        event.get("energy_window_s"),
                    )
                )
        expected = protocol.inferences if protocol.name == EDGEVIT else protocol.rounds
        if len(rounds) != expected:
            raise BoardError(
                f"{self.board.describe()}: the pass ended after {len(rounds)} of {expected} {'inferences' if protocol.name == EDGEVIT else 'rounds'}"
            )
        sensor = info or NullSensor("the board has no power sensor the agent reads").info
        if protocol.name == EDGEVIT:
            return SteadyState(rounds, sensor, idle, statistic="mean", background_w=idle, window=whole)
        return SteadyState(rounds, sensor, idle)

    def close(self) -> None:
        if self._hold is not None:
            try:
                self._hold.stdin.close()  # the agent's hold ends: the lock is released
                self._hold.wait(timeout=10)
            except Exception:  # the board is gone: its lock went with the process
                self._hold.kill()
            for pipe in (self._hold.stdout, self._hold.stderr):
                pipe.close()
            self._hold = None
        if self.conn is not None:
            self.conn.close()
            self.conn = None
