"""A board measured over SSH, as users run it: a real OpenSSH server on this machine is the board, a
fake Jetson rail tree its sensor, and the agent runs in an interpreter that cannot import pytest-e3p."""

import json
import statistics
import threading
import time
from pathlib import Path

import pytest
from fakes.power_rails import tx2_tree
from fakes.runs import SHORT
from fakes.sshd import SSHD, SshServer, board_python, descendants

from pytest_e3p.hardware.sensors.jetson import JetsonRailSensor
from pytest_e3p.remote.boards import RemoteBoard
from pytest_e3p.remote.client import BoardClient
from pytest_e3p.remote.ssh import BoardError

pytestmark = pytest.mark.skipif(SSHD is None, reason="OpenSSH's server (sshd) is not installed: apt-get install openssh-server")

BENCH = """
def test_energy(e3p):
    e3p.measure()
    e3p.evaluate()
"""
# one pass of 3 rounds of 0.2 s (a fifth of the protocol's sampling periods), batch 2
FAST = [*(a for a in SHORT if not a.startswith(("--e3p-device", "--e3p-passes", "--e3p-min-round-s"))), "--e3p-batch-size=2", "--e3p-rounds=3"]


@pytest.fixture
def server(tmp_path):
    srv = SshServer(tmp_path / "sshd").start()
    yield srv
    srv.kill()


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "board-sysfs"
    tx2_tree(root, carrier=True)  # the carrier board's monitors too: never in the module's energy
    return root


def toml_list(values):
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def devices_file(path: Path, boards) -> Path:
    """A devices file of (name, server, tree, python, extra lines) boards."""
    lines = []
    for name, srv, tree, python, extra in boards:
        lines += [
            "[[board]]",
            f'name = "{name}"',
            f'url = "ssh://root@127.0.0.1:{srv.port}/cpu"',
            f"ssh_options = {toml_list(srv.ssh_options())}",
            f'python = "{python}"',
            'sensor = "jetson"',
            f'env = {{ E3P_SYSFS_ROOT = "{tree}" }}',
            *extra,
            "",
        ]
    path.write_text("\n".join(lines))
    return path


def board_of(srv, tree, python, **kw) -> RemoteBoard:
    return RemoteBoard(
        "b1", "127.0.0.1", "cpu", "root", srv.port, tuple(srv.ssh_options()), None, str(python), sensor="jetson", env={"E3P_SYSFS_ROOT": str(tree)}, **kw
    )


def test_a_board_is_measured_as_the_same_tree_is_read_locally(pytester, server, tree, tmp_path):
    py = board_python(tmp_path)
    devices = devices_file(tmp_path / "devices.toml", [("b1", server, tree, py, [])])
    pytester.makepyfile(test_bench=BENCH)
    result = pytester.runpytest("--e3p-device=b1", f"--e3p-devices-file={devices}", *FAST, "--e3p-passes=1", "--e3p-min-round-s=0.2", "--e3p-models=test_vit")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_vit-b1-synthetic: board b1 (root@127.0.0.1:*) runs it with torch; top-1 agreement 100.0 %*"])
    data = json.loads((pytester.path / ".e3p/results.json").read_text())
    case = data["cases"]["test_vit-b1-synthetic"]
    identity = data["device"]["identity"]
    assert identity["board"] == "b1" and identity["runtime"] == "torch" and identity["runtime_version"]
    assert case["status"] == "ok" and case["energy_kind"] == "measured" and case["energy_source"] == "jetson-ina3221"

    # the same tree read here, by the local sensor: the same rails, total, boundary and power
    with pytest.MonkeyPatch.context() as env:
        env.setenv("E3P_SYSFS_ROOT", str(tree))
        local = JetsonRailSensor(rate_hz=100)
        local.start()
        start = local.read()
        time.sleep(0.3)
        end = local.read()
        local.close()
    local_w = (end.total_mj - start.total_mj) / 1000 / (end.t_s - start.t_s)
    assert case["boundary"] == local.info.boundary and case["total_rail"] == local.info.total_rail
    assert sorted(case["rails_mj_per_image"]) == sorted(local.info.rails)  # no carrier rail (VDD_MUX) on either side
    assert round(case["power_w"], 2) == round(local_w, 2) == 5.0
    # per rail, the share of the input rail: 2 W of 5 W on the GPU rail, both ways
    rails = case["rails_mj_per_image"]
    local_rails = {k: end.rails_mj[k] - start.rails_mj[k] for k in end.rails_mj}
    for name in rails:
        assert round(rails[name] / rails["VDD_IN"], 3) == round(local_rails[name] / local_rails["VDD_IN"], 3)
    assert case["energy_mj_per_image"] == pytest.approx(case["power_w"] * case["latency_ms_per_image"], rel=0.02)


def test_the_agent_runs_where_pytest_e3p_cannot_be_imported_and_a_second_run_waits(server, tree, tmp_path):
    py = board_python(tmp_path)
    lines = []
    first = BoardClient(board_of(server, tree, py))
    probe = first.connect("run one")
    assert probe.raw["pytest_e3p_importable"] is False and probe.raw["pytest_e3p_loaded"] is False
    assert probe.sensor is not None and probe.sensor.outside_rails  # the carrier rails, named and left out

    second = BoardClient(board_of(server, tree, py), lines.append)
    got = []
    waiter = threading.Thread(target=lambda: got.append(second.connect("run two")))
    waiter.start()
    deadline = time.monotonic() + 30
    while not lines and time.monotonic() < deadline:
        time.sleep(0.05)
    assert got == []  # still waiting for the first run
    first.close()
    waiter.join(30)
    second.close()
    assert got and len(lines) == 1
    assert "board b1" in lines[0] and "in use by another run (run one since" in lines[0] and "waiting" in lines[0]


def test_an_unknown_or_changed_host_key_is_refused_naming_the_fix(server, tree, tmp_path):
    py = board_python(tmp_path)
    other = tmp_path / "other_key"
    import subprocess

    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    server.known_hosts.write_text(server.known_hosts_line(other))  # a changed key
    with pytest.raises(BoardError) as changed:
        BoardClient(board_of(server, tree, py)).connect()
    assert "board b1 (root@127.0.0.1:" in str(changed.value) and "CHANGED" in str(changed.value) and "ssh-keygen -R" in str(changed.value)
    server.known_hosts.write_text("")  # an unknown key
    with pytest.raises(BoardError) as unknown:
        BoardClient(board_of(server, tree, py)).connect()
    assert "not in known_hosts" in str(unknown.value) and f"ssh-keyscan -p {server.port} 127.0.0.1" in str(unknown.value)
    assert "\n" not in str(unknown.value)


def test_refused_connections_and_bad_keys_say_so_in_one_line(server, tree, tmp_path):
    py = board_python(tmp_path)
    wrong_key = board_of(server, tree, py)
    wrong_key = RemoteBoard(**{**wrong_key.__dict__, "ssh_options": (*server.ssh_options()[:1], f"IdentityFile={tmp_path}/none", "IdentitiesOnly=yes")})
    with pytest.raises(BoardError, match="authentication failed"):
        BoardClient(wrong_key).connect()
    server.kill()
    with pytest.raises(BoardError, match=r"board b1 \(root@127.0.0.1:\d+\): connection refused"):
        BoardClient(board_of(server, tree, py)).connect()


def test_a_board_without_a_runtime_or_with_an_old_python_is_refused_in_one_line(server, tree, tmp_path):
    bare = BoardClient(board_of(server, tree, "/usr/bin/python3"))  # Debian's Python: no torch, no onnxruntime
    try:
        with pytest.raises(BoardError, match="no runtime the agent can use .* install the vendor's torch wheel"):
            bare.pick_runtime(bare.connect())
    finally:
        bare.close()
    old = board_of(server, tree, "/usr/bin/python3")
    old = RemoteBoard(**{**old.__dict__, "env": {**old.env, "E3P_AGENT_MIN_PYTHON": "3.99"}})  # the agent's own version check
    with pytest.raises(BoardError, match=r"board b1 .*: the agent needs Python 3\.99 or newer; this board's /usr/bin/python3 is 3\.\d+"):
        BoardClient(old).connect()


KILL_IN_SECOND_PASS = """
import os
import signal
import threading

from fakes.sshd import descendants
from pytest_e3p.remote.client import BoardClient

measure = BoardClient.measure
calls = []


def kill_sshd():
    pid = int(os.environ["E3P_TEST_SSHD_PID"])
    for p in [*descendants(pid), pid]:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def measured_then_killed(self, request, protocol):
    calls.append(1)
    if len(calls) == 2:  # the second case, inside its rounds: the board goes away
        threading.Timer(0.4, kill_sshd).start()
    return measure(self, request, protocol)


BoardClient.measure = measured_then_killed
"""


def test_sshd_killed_mid_case_invalidates_that_case_and_keeps_the_one_measured(pytester, server, tree, tmp_path, monkeypatch):
    py = board_python(tmp_path)
    devices = devices_file(tmp_path / "devices.toml", [("b1", server, tree, py, [])])
    pytester.makepyfile(test_bench=BENCH)
    pytester.makeconftest(KILL_IN_SECOND_PASS)
    monkeypatch.setenv("E3P_TEST_SSHD_PID", str(server.proc.pid))
    result = pytester.runpytest(
        "--e3p-device=b1", f"--e3p-devices-file={devices}", *FAST, "--e3p-passes=1", "--e3p-min-round-s=0.5", "--e3p-models=test_vit,test_vit2"
    )
    result.assert_outcomes(passed=1, failed=1)
    data = json.loads((pytester.path / ".e3p/results.json").read_text())
    ok, lost = data["cases"]["test_vit-b1-synthetic"], data["cases"]["test_vit2-b1-synthetic"]
    assert ok["status"] == "ok" and ok["energy_mj_per_image"] > 0
    assert lost["status"] == "invalid" and "board b1 (root@127.0.0.1:" in lost["reason"]
    assert "connection lost" in lost["reason"]
    assert "\n" not in lost["reason"]


WRONG_EXPORT = """
import torch
import pytest_e3p.run.remote_bench as remote_bench

real = remote_bench.export


def wrong(module, example, runtime, opset=17):
    # the graph the board gets has lost its last layer's bias: a wrong export, that runs as fast
    import copy

    broken = copy.deepcopy(module)
    with torch.no_grad():
        broken.get_classifier().bias.add_(5.0 * torch.randn_like(broken.get_classifier().bias))
    return real(broken, example, runtime, opset)


remote_bench.export = wrong
"""


def test_onnx_runtime_on_the_board_and_a_wrong_export_is_a_failed_case_never_a_fast_one(pytester, server, tree, tmp_path):
    # imported once here: pytester's in-process runs drop what they import, and onnx's protobuf
    # registry aborts the process when imported a second time
    pytest.importorskip("onnx")
    py = board_python(tmp_path)
    devices = devices_file(tmp_path / "devices.toml", [("b1", server, tree, py, ['runtime = "onnxruntime"'])])
    pytester.makepyfile(test_bench=BENCH)
    args = ("--e3p-device=b1", f"--e3p-devices-file={devices}", *FAST, "--e3p-passes=1", "--e3p-min-round-s=0.2", "--e3p-models=test_vit")
    result = pytester.runpytest(*args)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*board b1 (root@127.0.0.1:*) runs it with onnxruntime; top-1 agreement 100.0 %*"])
    data = json.loads((pytester.path / ".e3p/results.json").read_text())
    assert data["device"]["identity"]["runtime"] == "onnxruntime" and data["cases"]["test_vit-b1-synthetic"]["status"] == "ok"

    pytester.makeconftest(WRONG_EXPORT)
    result = pytester.runpytest(*args)
    result.assert_outcomes(failed=1)
    case = json.loads((pytester.path / ".e3p/results.json").read_text())["cases"]["test_vit-b1-synthetic"]
    assert case["status"] != "ok" and case["energy_mj_per_image"] is None
    assert "board b1" in case["reason"] and "disagrees with the host's" in case["reason"] and "\n" not in case["reason"]


def test_auto_asks_the_board_and_a_jetson_whose_torch_has_no_cuda_is_refused_in_one_line(server, tree, tmp_path):
    import dataclasses

    from pytest_e3p.config import DEFAULTS, SPEC, Options
    from pytest_e3p.run.remote_bench import BoardFault
    from pytest_e3p.run.session import E3PSession

    devices = devices_file(tmp_path / "devices.toml", [("b1", server, tree, board_python(tmp_path), [])])
    options = Options(**{name: parse(DEFAULTS[name]) for name, _flag, _d, parse, _h in SPEC})
    options = dataclasses.replace(
        options, device=f"ssh://root@127.0.0.1:{server.port}/auto", devices_file=devices, models="test_vit", weights="random", passes=1, rounds=1
    )
    session = E3PSession(options).start()
    try:
        # the board's device tree names a TX2: its profile, whose model runs on the board's GPU
        assert session.device.name == "b1" and session.device.profile.name == "tx2" and "auto" in session.device.note
        assert session.device_record()["identity"]["profile"] == "tx2"
        case = session.cases()[0]
        with pytest.raises(
            BoardFault, match=r"^board b1 \(root@127.0.0.1:\d+\): the board's torch \S+ has no CUDA: it would measure the CPU under the GPU's name$"
        ):
            session.bench.steady_state(case, session.load_model(case))
    finally:
        session.finish(False)


def test_an_agent_killed_on_the_board_is_told_from_a_lost_link(server, tree, tmp_path):
    import os
    import signal

    from pytest_e3p.measure.protocols import Protocol

    client = BoardClient(board_of(server, tree, board_python(tmp_path)))
    client.connect()
    request = {"runtime": "torch", "model": "/absent", "shape": [1, 3, 8, 8], "protocol": {}}
    try:
        with pytest.raises(BoardError, match="board b1 .*: FileNotFoundError|board b1 .*No such file|board b1 .*absent"):
            client.measure(request, Protocol())  # an error the agent reports, and it serves on
        # the board's kernel kills the run's agent (out of memory): the link is still up
        for pid in descendants(server.proc.pid):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\x00")[:-1]
            if argv and argv[-1] == b"serve" and b"-c" not in argv:
                os.kill(pid, signal.SIGKILL)
        with pytest.raises(BoardError, match=r"^board b1 \(root@127.0.0.1:\d+\): the agent died \(killed by a signal on the board"):
            client.measure(request, Protocol())
        client.close()
        client.connect()  # the next case gets a fresh agent
        server.kill()
        with pytest.raises(BoardError, match="connection lost"):
            client.measure(request, Protocol())
    finally:
        client.close()


def test_require_sensor_stops_at_the_start_on_a_board_without_one(pytester, server, tree, tmp_path):
    devices = devices_file(tmp_path / "devices.toml", [("b1", server, tmp_path / "no-tree", board_python(tmp_path), [])])
    pytester.makepyfile(test_bench=BENCH)
    result = pytester.runpytest("--e3p-device=b1", f"--e3p-devices-file={devices}", "--e3p-require-sensor", *FAST, "--e3p-models=test_vit")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--e3p-require-sensor: no power sensor on board b1 (root@127.0.0.1:*): no INA3221 rails of a Jetson module under *no-tree*"])


def test_the_edgevit_protocol_runs_on_the_board(pytester, server, tree, tmp_path):
    devices = devices_file(tmp_path / "devices.toml", [("b1", server, tree, board_python(tmp_path), [])])
    pytester.makepyfile(test_bench=BENCH)
    pytester.runpytest(
        "--e3p-device=b1", f"--e3p-devices-file={devices}", *(a for a in FAST if "batch" not in a), "--e3p-passes=1", "--e3p-protocol=edgevit",
        "--e3p-inferences=5", "--e3p-idle-s=0.3", "--e3p-models=test_vit",
    )  # fmt: skip
    # the outcome is not asserted: on a constant tree the net energy is about 0, which the answer
    # section of the terminal summary does not take yet (report/answer.py); the results file is written before it
    case = json.loads((pytester.path / ".e3p/results.json").read_text())["cases"]["test_vit-b1-synthetic"]
    assert case["status"] == "ok" and case["protocol"] == "edgevit" and case["batch_size"] == 1
    assert len(case["latency_ms_per_image_samples"]) == 5
    # a constant 5 W tree: the background is 5 W, and the inferences' raw energy 5 W x their time
    assert round(case["background_power_w"], 2) == 5.0
    assert case["energy_raw_mj_per_image"] == pytest.approx(5.0 * statistics.fmean(case["latency_ms_per_image_samples"]), rel=0.3)
