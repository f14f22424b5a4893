"""pytest-e3p's board agent: the one module the host sends to a board at every run.

It runs there with what the board's vendor image has: Python 3.6 or newer and its standard library,
plus the board's own runtime (torch, or ONNX Runtime) for the model. It never imports pytest_e3p:
the host's tables (rail labels, sysfs globs, RAPL rules) arrive in each request as plain JSON, so the
board reads the same rails with the same rules as the local sensors do.

    python3 agent.py probe      one JSON line: Python, runtimes, board, the sensor it finds
    python3 agent.py serve      takes the board's lock, then answers request lines until stdin closes:
                                  check: request line, then float32 images: their logits (base64)
                                  measure: one pass of the protocol, one JSON line per round

Requests are one JSON line on stdin; answers are JSON lines on stdout ("event" names each).
The syntax stays that of Python 3.5 (no f-strings, no annotations) so that an older interpreter
still parses it and says which Python it needs, instead of a SyntaxError.
"""
# ruff: noqa: UP004, UP031, B904 - Python 3.5 must parse this file (no f-strings; `raise from` is fine but not needed)

import array
import base64
import glob
import json
import math
import os
import platform
import sys
import threading
import time

AGENT_PROTOCOL = 1
MIN_PYTHON = (3, 6)


def emit(event, **fields):
    fields["event"] = event
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


class Fault(Exception):
    """A sensor or runtime failure: reported as one line, never a traceback."""


def min_python():
    # E3P_AGENT_MIN_PYTHON lets the test suite exercise the refusal on a current interpreter
    raw = os.environ.get("E3P_AGENT_MIN_PYTHON")
    return tuple(int(x) for x in raw.split(".")) if raw else MIN_PYTHON


# -- sysfs ------------------------------------------------------------------------------------
def sysfs_path(absolute):
    """`/sys/...` under E3P_SYSFS_ROOT, as hardware/sensors/sysfs.py does on the host."""
    return os.path.join(os.environ.get("E3P_SYSFS_ROOT", "/"), absolute.lstrip("/"))


def read_text(path):
    with open(path) as fh:
        return fh.read().strip()


class Attribute(object):
    """A sysfs file kept open and re-read at offset 0 (cheap enough for 100 reads a second)."""

    def __init__(self, path):
        self.path = path
        self.fd = None

    def read_number(self):
        try:
            if self.fd is None:
                self.fd = os.open(self.path, os.O_RDONLY)
            raw = os.pread(self.fd, 64, 0)
        except OSError as exc:
            raise Fault("%s cannot be read (%s)" % (self.path, exc.strerror))
        text = raw.decode(errors="replace").strip()
        try:
            return float(text)
        except ValueError:
            raise Fault("%s returned %r, not a number" % (self.path, text[:40]))

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


# -- Jetson INA3221 rails ---------------------------------------------------------------------
def _on_carrier(device_dir, carrier):
    try:
        return int(os.path.basename(device_dir).rsplit("-", 1)[1], 16) in carrier
    except (IndexError, ValueError):
        return False


def find_rails(layout):
    """[(label, read_mw, on_carrier)] of the iio layout, else the hwmon one (jetson.find_rails)."""
    carrier, unconnected = set(layout["carrier_addresses"]), set(layout["unconnected"])
    rails = []
    for dev in sorted(glob.glob(sysfs_path(layout["iio_monitors"]))):
        on_carrier = _on_carrier(os.path.dirname(dev), carrier)
        for name_file in sorted(glob.glob(os.path.join(dev, "rail_name_*"))):
            n = name_file.rsplit("_", 1)[1]
            label = read_text(name_file)
            if label not in unconnected:
                power = Attribute(os.path.join(dev, "in_power%s_input" % n))
                rails.append((label, power.read_number, on_carrier))
    if rails:
        return rails
    for dev in sorted(glob.glob(sysfs_path(layout["hwmon_monitors"]))):
        on_carrier = _on_carrier(os.path.dirname(os.path.dirname(dev)), carrier)
        for label_file in sorted(glob.glob(os.path.join(dev, "in*_label"))):
            n = os.path.basename(label_file)[2:].split("_", 1)[0]
            label = read_text(label_file)
            if label in unconnected or label.startswith(layout["sum_channel_prefix"]):
                continue
            volt, curr = Attribute(os.path.join(dev, "in%s_input" % n)), Attribute(os.path.join(dev, "curr%s_input" % n))
            rails.append((label, _product(volt, curr), on_carrier))
    return rails


def _product(volt, curr):
    return lambda: volt.read_number() * curr.read_number() / 1000.0


class RailSampler(object):
    """Samples every module rail at rate_hz and integrates by trapezoid; read() samples on the spot
    (hardware/sensors/base.SamplingSensor)."""

    def __init__(self, layout, rate_hz):
        found = find_rails(layout)
        self.rails = [(label, read) for label, read, carrier in found if not carrier]
        if not self.rails:
            raise Fault("no INA3221 rails of a Jetson module under %s" % sysfs_path("/sys/bus/i2c/drivers"))
        labels = [label for label, _ in self.rails]
        self.total = next((name for name in layout["input_rails"] if name in labels), None)
        self.period_s = 1.0 / rate_hz
        boundary = layout["input_boundary"].format(total=self.total) if self.total else layout["sum_boundary"]
        self.info = {
            "name": "jetson-ina3221",
            "kind": "measured",
            "boundary": boundary,
            "unit": "mW",
            "update_period_s": self.period_s,
            "total_rail": self.total or "sum",
            "rails": labels,
            "outside_rails": [label for label, _, carrier in found if carrier],
        }
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.fault = None
        self.last_t = None
        self.last_mw = {}
        self.energy_mj = {}
        self.thread = None

    def _sample(self):
        if self.fault is not None:
            return
        before = time.monotonic()
        try:
            power = {}
            for label, read in self.rails:
                value = read()
                if value < 0:
                    raise Fault("rail %s read a negative power (%s mW)" % (label, value))
                power[label] = value
        except Fault as exc:
            self.fault = exc
            return
        now = 0.5 * (before + time.monotonic())
        if self.last_t is None:
            self.energy_mj = dict((label, 0.0) for label in power)
        else:
            dt = now - self.last_t
            for label, p in power.items():
                self.energy_mj[label] += 0.5 * (self.last_mw.get(label, p) + p) * dt
        self.last_t, self.last_mw = now, power

    def _run(self):
        next_t = time.monotonic()
        while not self.stop.is_set():
            next_t += self.period_s
            time.sleep(max(0.0, next_t - time.monotonic()))
            with self.lock:
                self._sample()
                if self.fault is not None:
                    return

    def start(self):
        with self.lock:
            self._sample()
        if self.fault is not None:
            raise self.fault
        self.thread = threading.Thread(target=self._run, name="e3p-agent-rails")
        self.thread.daemon = True
        self.thread.start()

    def read(self):
        """(t_s, total_mj, rails_mj) since start."""
        with self.lock:
            self._sample()
            if self.fault is not None:
                raise self.fault
            rails = dict(self.energy_mj)
            total = rails[self.total] if self.total else sum(rails.values())
            return self.last_t, total, rails

    def close(self):
        self.stop.set()
        if self.thread is not None:
            self.thread.join(2.0)


# -- RAPL -------------------------------------------------------------------------------------
class RaplCounter(object):
    """Package (and DRAM) counters, unwrapped by a poller (hardware/sensors/rapl.py's rules)."""

    def __init__(self, layout):
        base = sysfs_path(layout["powercap"])
        if not os.path.isdir(base):
            raise Fault("no RAPL: %s does not exist" % base)
        self.layout = layout
        self.zones = []  # (rail, Attribute, max range uJ)
        for zone in sorted(glob.glob(os.path.join(base, "intel-rapl:*"))):
            try:
                name = read_text(os.path.join(zone, "name"))
            except OSError:
                continue
            leaf = os.path.basename(zone)
            if leaf.count(":") == 1 and name.startswith("package"):
                rail = name
            elif name == "dram":
                rail = "dram-" + leaf.split(":")[1]
            else:
                continue
            try:
                max_range = Attribute(os.path.join(zone, "max_energy_range_uj")).read_number()
            except Fault:
                max_range = layout["unknown_range_uj"]
            self.zones.append((rail, Attribute(os.path.join(zone, "energy_uj")), max_range))
        if not self.zones:
            raise Fault("no RAPL package zone under %s" % base)
        rails = [z[0] for z in self.zones]
        shortest_s = min(z[2] for z in self.zones) / 1e6 / layout["max_zone_w"]
        self.period_s = max(layout["min_poll_period_s"], shortest_s / layout["polls_per_wrap"])
        boundary = "CPU package" + (" + DRAM" if any(r.startswith("dram") for r in rails) else "")
        self.info = {
            "name": "rapl",
            "kind": "measured",
            "boundary": boundary,
            "unit": "uJ",
            "update_period_s": 0.001,
            "total_rail": None,
            "rails": rails,
            "outside_rails": [],
        }
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.fault = None
        self.thread = None
        self.last, self.last_t, self.acc = {}, 0.0, {}

    def _raw(self):
        return dict((rail, attr.read_number()) for rail, attr, _ in self.zones)

    def _poll(self):
        if self.fault is not None:
            raise self.fault
        now_raw, now = self._raw(), time.monotonic()
        elapsed = max(now - self.last_t, 1e-3)
        for rail, attr, max_range in self.zones:
            delta = now_raw[rail] - self.last[rail]
            if delta < 0:
                delta += max_range
                if delta < 0 or delta / 1e6 / elapsed > self.layout["max_plausible_w"]:
                    self.fault = Fault("RAPL counter %s went backwards, not a plausible wrap" % attr.path)
                    raise self.fault
            self.acc[rail] += delta
        self.last, self.last_t = now_raw, now

    def _run(self):
        while not self.stop.wait(self.period_s):
            with self.lock:
                try:
                    self._poll()
                except Fault:
                    return

    def start(self):
        self.last, self.last_t = self._raw(), time.monotonic()
        self.acc = dict((rail, 0.0) for rail in self.last)
        self.thread = threading.Thread(target=self._run, name="e3p-agent-rapl")
        self.thread.daemon = True
        self.thread.start()

    def read(self):
        with self.lock:
            self._poll()
            rails = dict((rail, uj / 1000.0) for rail, uj in self.acc.items())
            return self.last_t, sum(rails.values()), rails

    def close(self):
        self.stop.set()
        if self.thread is not None:
            self.thread.join(2.0)


def open_sensor(request):
    """The sensor the profile names ("jetson" or "rapl"; "auto": rails, else RAPL); None for "none"."""
    kind, layout = request.get("sensor", "auto"), request["layout"]
    if kind == "none":
        return None
    if kind in ("jetson", "auto"):
        try:
            return RailSampler(layout["jetson"], request.get("rate_hz") or layout["jetson"]["default_rate_hz"])
        except Fault:
            if kind == "jetson":
                raise
    return RaplCounter(layout["rapl"])


# -- the board --------------------------------------------------------------------------------
def _read_bytes(absolute):
    try:
        with open(sysfs_path(absolute), "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def runtimes():
    """Each runtime the board has, with its version (absent ones are left out). Found without
    importing them: importing torch takes seconds on a small board."""
    found = {}
    for name in ("torch", "tensorrt", "onnxruntime"):
        if _importable(name):
            found[name] = _version(name)
    return found


def _version(name):
    try:
        from importlib import metadata  # novermin (Python 3.8+; the except below serves 3.6 and 3.7)

        return metadata.version(name)
    except Exception:  # Python 3.6/3.7, or a runtime installed without its metadata (JetPack's tensorrt)
        try:
            return str(getattr(__import__(name), "__version__", "unknown"))
        except Exception:
            return "unknown"


def probe(request):
    compatible = [e for e in _read_bytes("/proc/device-tree/compatible").decode(errors="replace").split("\x00") if e.strip()]
    answer = {
        "agent_protocol": AGENT_PROTOCOL,
        "python": platform.python_version(),
        "executable": sys.executable,
        "machine": platform.machine(),
        "hostname": platform.node(),
        # the proof that nothing of pytest-e3p is on the board: neither loaded nor importable
        "pytest_e3p_loaded": any(m == "pytest_e3p" or m.startswith("pytest_e3p.") for m in sys.modules),
        "pytest_e3p_importable": _importable("pytest_e3p"),
        "runtimes": runtimes(),
        "model": _read_bytes("/proc/device-tree/model").decode(errors="replace").rstrip("\x00").strip(),
        "compatible": compatible,
        "l4t": _read_bytes("/etc/nv_tegra_release").decode(errors="replace").splitlines()[:1],
        "cpu_count": os.cpu_count(),
    }
    try:
        sensor = open_sensor(request)
        answer["sensor"] = sensor.info if sensor is not None else None
    except Fault as exc:
        answer["sensor"], answer["sensor_error"] = None, str(exc)
    emit("probe", **answer)


def _importable(name):
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def take_lock(request):
    """The board's lock for one run, held by this process until it ends (the host closes stdin, or
    the connection drops, which ends it too). A second run waits, and says so."""
    import fcntl

    fh = open(request["lock"], "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.seek(0)
        emit("waiting", holder=fh.read().strip())
        fcntl.flock(fh, fcntl.LOCK_EX)
    fh.seek(0)
    fh.truncate()
    fh.write("%s since %s" % (request.get("who", "a run"), time.strftime("%Y-%m-%d %H:%M:%S")))
    fh.flush()
    return fh


def serve(request):
    """The run's agent: takes the board's lock, then answers one request line at a time (its
    "command": check or measure) until stdin closes; each answer ends with an "end" line. One process
    for the run: the runtime is imported once and the case's model stays loaded between its passes."""
    import warnings

    warnings.simplefilter("ignore")  # a runtime's deprecation notes: nobody reads the board's stderr
    lock = take_lock(request)
    emit("held")
    while True:
        line = sys.stdin.buffer.readline()
        if not line:
            break
        handle(SERVED.get, json.loads(line.decode("utf-8")))
        emit("end")
    lock.close()


# -- the model --------------------------------------------------------------------------------
class Model(object):
    """The case's exported model in the board's runtime: TorchScript in torch, ONNX in ONNX Runtime."""

    def __init__(self, request):
        self.runtime, path = request["runtime"], request["model"]
        self.cuda = False
        if self.runtime == "torch":
            import torch

            self.torch = torch
            self.cuda = request.get("accelerator") == "cuda"
            if self.cuda and not torch.cuda.is_available():
                raise Fault("the board's torch %s has no CUDA: it would measure the CPU under the GPU's name" % torch.__version__)
            self.net = torch.jit.load(path, map_location="cuda" if self.cuda else "cpu").eval()
            if request.get("threads"):
                torch.set_num_threads(int(request["threads"]))
        elif self.runtime == "onnxruntime":
            import onnxruntime

            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if request.get("accelerator") == "cuda" else ["CPUExecutionProvider"]
            available = onnxruntime.get_available_providers()
            self.session = onnxruntime.InferenceSession(path, providers=[p for p in providers if p in available])
            self.input_name = self.session.get_inputs()[0].name
        else:
            raise Fault("runtime %r is not one the agent runs (torch, onnxruntime)" % self.runtime)

    def batch(self, values, shape):
        """A batch from flat float32 values, on the runtime's device."""
        if self.runtime == "torch":
            x = self.torch.tensor(values, dtype=self.torch.float32).reshape(shape)
            return x.cuda() if self.cuda else x
        import numpy

        return numpy.asarray(values, dtype=numpy.float32).reshape(shape)

    def random_batch(self, shape):
        """The measured input: seeded random values (energy and latency do not depend on them)."""
        if self.runtime == "torch":
            gen = self.torch.Generator().manual_seed(0)
            x = self.torch.randn(shape, generator=gen)
            return x.cuda() if self.cuda else x
        import numpy

        return numpy.random.RandomState(0).standard_normal(shape).astype(numpy.float32)

    def forward(self, x):
        if self.runtime == "torch":
            with self.torch.no_grad():
                return self.net(x)
        return self.session.run(None, {self.input_name: x})[0]

    def synchronize(self):
        if self.cuda:
            self.torch.cuda.synchronize()

    def flat(self, out):
        if self.runtime == "torch":
            return out.float().cpu().contiguous().view(-1).tolist()
        return [float(v) for v in out.reshape(-1)]


_LOADED = {}  # type: dict


def loaded(request):
    """The request's model, kept while the next requests are for it (a case's check and passes);
    only one: a small board's memory holds one case's model."""
    key = (request["runtime"], request["model"], request.get("accelerator"), request.get("threads"))
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = Model(request)
    return _LOADED[key]


def check(request):
    """The board's logits on the host's images, for the host's agreement check."""
    shape = request["shape"]
    count = 1
    for n in shape:
        count *= n
    raw = _read_exactly(sys.stdin.buffer, 4 * count)
    values = array.array("f")
    values.frombytes(raw)
    model = loaded(request)
    out = model.forward(model.batch(values.tolist(), shape))
    model.synchronize()
    logits = array.array("f", model.flat(out))
    emit("logits", shape=[shape[0], len(logits) // shape[0]], data=base64.b64encode(logits.tobytes()).decode("ascii"))


def _read_exactly(stream, n):
    chunks, got = [], 0
    while got < n:
        chunk = stream.read(n - got)
        if not chunk:
            raise Fault("the host sent %d of %d bytes of images" % (got, n))
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def measure(request):
    """One pass of the e3p protocol (measure/protocols.run_protocol): idle window, warm-up, then
    rounds of at least max(min_round_s, 10 sensor updates), synchronised at both edges, each
    streamed back as it ends."""
    p = request["protocol"]
    model = loaded(request)
    x = model.random_batch(request["shape"])
    sensor = open_sensor(request)
    if sensor is not None:
        sensor.start()
    try:
        emit("sensor", info=sensor.info if sensor is not None else None)
        if sensor is not None and p["idle_s"] > 0:
            model.synchronize()
            t0, e0, _ = sensor.read()
            time.sleep(p["idle_s"])
            t1, e1, _ = sensor.read()
            emit("idle", power_w=(e1 - e0) / 1000.0 / max(t1 - t0, 1e-9))  # between the readings, as measure_idle_power_w
        fastest_s, calls, started = float("inf"), 0, time.monotonic()
        while calls < 2 or time.monotonic() - started < p["warmup_s"]:
            t0 = time.monotonic()
            model.forward(x)
            model.synchronize()
            fastest_s = min(fastest_s, time.monotonic() - t0)
            calls += 1
        if p.get("name") == "edgevit":
            edgevit(model, x, sensor, p, fastest_s)
        else:
            rounds(model, x, sensor, p, fastest_s, request["shape"][0])
    finally:
        if sensor is not None:
            sensor.close()
    emit("done")


def edgevit(model, x, sensor, p, inference_s):
    """The EdgeViT paper's inferences (measure/protocols.run_edgevit): each one a window of its own
    where it spans 2 sensor updates, else one window over all of them ("window" line)."""
    update_s = sensor.info["update_period_s"] if sensor is not None else 0.0
    per_inference = inference_s >= 2 * update_s
    model.synchronize()
    edge = sensor.read() if sensor is not None and not per_inference else None
    for _ in range(p["inferences"]):
        e0 = sensor.read() if sensor is not None and per_inference else None
        t0 = time.monotonic()
        model.forward(x)
        model.synchronize()
        t1 = time.monotonic()
        if e0 is None:
            emit("round", images=1, duration_s=t1 - t0, energy_mj=None, rails_mj={})
            continue
        e1 = sensor.read()
        if e1[1] - e0[1] <= 0:
            raise Fault("%s read no energy over a %.1f ms inference: the sensor is stuck" % (sensor.info["name"], 1000 * (t1 - t0)))
        rails = dict((name, e1[2][name] - e0[2].get(name, 0.0)) for name in e1[2])
        emit("round", images=1, duration_s=t1 - t0, energy_mj=e1[1] - e0[1], rails_mj=rails, energy_window_s=e1[0] - e0[0])
    if edge is not None:
        end = sensor.read()
        if end[1] - edge[1] <= 0:
            raise Fault("%s read no energy over %d inferences: the sensor is stuck" % (sensor.info["name"], p["inferences"]))
        emit("window", energy_mj=end[1] - edge[1], duration_s=end[0] - edge[0])


def rounds(model, x, sensor, p, fastest_s, batch):
    """The e3p protocol's rounds, each streamed back as it ends."""
    update_s = sensor.info["update_period_s"] if sensor is not None else 0.0
    round_s = max(p["min_round_s"], 10 * update_s)
    per_round = max(1, int(math.ceil(round_s / max(fastest_s, 1e-9))))
    for _ in range(p["rounds"]):
        model.synchronize()
        start = sensor.read() if sensor is not None else None
        t0 = time.monotonic()
        for _ in range(per_round):
            model.forward(x)
        model.synchronize()
        calls = per_round
        while time.monotonic() - t0 < round_s:  # a short round is extended, never cut
            model.forward(x)
            model.synchronize()
            calls += 1
        t1 = time.monotonic()
        energy_mj, rails_mj = None, {}
        if start is not None:
            _, total, rails = sensor.read()
            energy_mj = total - start[1]
            rails_mj = dict((name, rails[name] - start[2].get(name, 0.0)) for name in rails)
            if energy_mj <= 0:
                raise Fault("%s read no energy over a %.2f s window: the sensor is stuck" % (sensor.info["name"], t1 - t0))
        emit("round", images=calls * batch, duration_s=t1 - t0, energy_mj=energy_mj, rails_mj=rails_mj)
        per_round = max(per_round, calls)


SERVED = {"check": check, "measure": measure}
COMMANDS = {"probe": probe, "serve": serve, "check": check, "measure": measure}


def handle(commands, request):
    """Run one request; a failure is one "error" line (never a traceback). Returns the exit status."""
    command = commands(request.get("command", ""))
    if command is None:
        emit("error", cause="usage", message="unknown command %r" % request.get("command"))
        return 2
    try:
        command(request)
    except Fault as exc:
        emit("error", cause="fault", message=str(exc))
        return 1
    except ImportError as exc:
        emit("error", cause="runtime", message="the board cannot import its runtime: %s" % exc)
        return 1
    except Exception as exc:  # the host turns it into the case's one line
        emit("error", cause="agent", message="%s: %s" % (type(exc).__name__, str(exc).splitlines()[0] if str(exc) else ""))
        return 1
    return 0


def main(argv):
    if sys.version_info[:3] < min_python():
        emit(
            "error",
            cause="python",
            message="the agent needs Python %s or newer; this board's %s is %s" % (".".join(map(str, min_python())), sys.executable, platform.python_version()),
        )
        return 3
    if len(argv) < 2 or argv[1] not in COMMANDS:
        emit("error", cause="usage", message="usage: agent.py {%s}" % ",".join(sorted(COMMANDS)))
        return 2
    line = sys.stdin.buffer.readline()
    request = json.loads(line.decode("utf-8")) if line.strip() else {}
    request["command"] = argv[1]
    return handle(COMMANDS.get, request)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
