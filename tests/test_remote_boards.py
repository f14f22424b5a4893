"""Naming a board: the ssh:// URL, the devices file, and the ssh options a run adds to the user's."""

import shutil

import pytest

from pytest_e3p.hardware.devices import DeviceError
from pytest_e3p.hardware.kinds import DeviceKind
from pytest_e3p.remote.boards import RemoteDevice, is_remote, parse_url, read_devices_file, resolve_board
from pytest_e3p.remote.ssh import Connection


def test_a_url_names_user_host_port_and_profile():
    board = parse_url("ssh://nvidia@tx2-03:2222/tx2")
    assert (board.user, board.host, board.port, board.profile, board.name) == ("nvidia", "tx2-03", 2222, "tx2", "tx2-03")
    assert board.sensor_kind == "jetson" and parse_url("ssh://lab/cpu").sensor_kind == "rapl" and parse_url("ssh://lab/cpu").user is None
    assert parse_url("ssh://pi@lab/auto").profile == "auto"


@pytest.mark.parametrize(
    ("url", "message"),
    [("ssh://nvidia@tx2-03", "not ssh://USER@HOST[:PORT]/PROFILE"), ("ssh://nvidia@tx2-03/tx3", "unknown profile 'tx3'; accepted: cpu, cuda")],
)
def test_a_bad_url_is_one_line_naming_the_form(url, message):
    with pytest.raises(DeviceError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_url(url)


def test_the_devices_file_names_boards_with_their_options(tmp_path):
    path = tmp_path / "devices.toml"
    path.write_text(
        """
[[board]]
name = "tx2-03"
url = "ssh://nvidia@10.0.0.3/tx2"
ssh_options = ["IdentityFile=~/.ssh/lab", "ProxyJump=gw"]
python = "/usr/bin/python3.6"
runtime = "onnxruntime"
env = { OMP_NUM_THREADS = "4" }

[[board]]
name = "orin"
host = "10.0.0.9"
user = "ci"
port = 2200
profile = "orin-nx"
"""
    )
    boards = read_devices_file(path)
    tx2, orin = boards["tx2-03"], boards["orin"]
    assert tx2.ssh_options == ("IdentityFile=~/.ssh/lab", "ProxyJump=gw") and tx2.python == "/usr/bin/python3.6" and tx2.runtime == "onnxruntime"
    assert tx2.env == {"OMP_NUM_THREADS": "4"} and tx2.describe() == "board tx2-03 (nvidia@10.0.0.3)"
    assert (orin.user, orin.port, orin.profile) == ("ci", 2200, "orin-nx")
    assert is_remote("orin", path) and not is_remote("cpu", path) and is_remote("ssh://x/cpu", None)
    device = resolve_board("orin", path)
    assert isinstance(device, RemoteDevice) and device.name == "orin" and device.kind == DeviceKind.JETSON and device.torch_device == "cpu"
    # a URL of a board in the file takes that board's name and options
    by_url = resolve_board("ssh://nvidia@10.0.0.3/tx2", path)
    assert by_url.name == "tx2-03" and by_url.board.runtime == "onnxruntime"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[board]]\nname = 'a'\n", "give url"),
        ("[[board]]\nurl = 'ssh://a/cpu'\nruntime = 'tflite'\n", "runtime 'tflite'; accepted: auto, torch, onnxruntime"),
        ("[[board]]\nurl = 'ssh://a/cpu'\nspeed = 3\n", "unknown key(s) speed"),
        ("[[board]]\nurl = 'ssh://a/cpu'\nssh_options = ['-p 22']\n", "Key=Value"),
        ("[[board]]\nurl = 'ssh://a/cpu'\n[[board]]\nurl = 'ssh://a/cpu'\n", "two boards are named 'a'"),
        ("[[board]\n", "not valid TOML"),
    ],
)
def test_a_bad_devices_file_is_one_line_naming_the_file(tmp_path, text, message):
    path = tmp_path / "devices.toml"
    path.write_text(text)
    with pytest.raises(DeviceError) as err:
        read_devices_file(path)
    assert str(path) in str(err.value) and message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.skipif(shutil.which("ssh") is None, reason="the OpenSSH client is not installed")
def test_the_run_adds_batch_mode_and_strict_host_keys_only_where_the_user_set_none(tmp_path):
    config = tmp_path / "ssh_config"
    config.write_text("Host lab-open\n  StrictHostKeyChecking accept-new\n  ServerAliveInterval 30\n")
    strict = parse_url("ssh://ci@lab/cpu")
    strict = type(strict)(**{**strict.__dict__, "ssh_config": config})
    options = Connection(strict)._options
    assert "BatchMode=yes" in options and "StrictHostKeyChecking=yes" in options and "ServerAliveInterval=5" in options
    assert any(o.startswith("ControlPath=") for o in options)
    open_board = type(strict)(**{**strict.__dict__, "host": "lab-open"})
    options = Connection(open_board)._options
    assert "StrictHostKeyChecking=yes" not in options and "ServerAliveInterval=5" not in options  # the user's own choices stand
    assert "BatchMode=yes" in options


def test_xdist_is_refused_for_a_board_too_naming_the_lab_workflow(pytester):
    pytest.importorskip("xdist")
    pytester.makepyfile(test_bench="def test_energy(e3p):\n    e3p.measure()\n")
    result = pytester.runpytest("-n", "2", "--e3p-device=ssh://ci@lab-board/cpu", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*run the benchmarks without -n*run one pytest per board (--e3p-device NAME --e3p-results NAME.json)*"])
