"""The board agent on its own: it finds the same rails, total, boundary and RAPL zones as the local
sensors on every board layout (one set of tables, sent by the host), and it stays Python 3.6 code."""

import shutil
import subprocess
import sys
import time

import pytest
from fakes.power_rails import agx_xavier_tree, nano_tree, orin_tree, rapl_tree, tx2_tree, xavier_nx_tree

from pytest_e3p.hardware.sensors.jetson import JetsonRailSensor
from pytest_e3p.hardware.sensors.rapl import find_zones
from pytest_e3p.remote import agent
from pytest_e3p.remote.client import layout

TREES = {
    "tx2+carrier": lambda root: tx2_tree(root, carrier=True),
    "nano": nano_tree,
    "orin-nx": orin_tree,
    "agx-orin": lambda root: orin_tree(root, agx=True),
    "xavier-nx": xavier_nx_tree,
    "agx-xavier": agx_xavier_tree,
}


@pytest.mark.parametrize("board", sorted(TREES))
def test_the_agent_reads_each_boards_rails_as_the_local_sensor_does(board, sysfs_root):
    TREES[board](sysfs_root)
    local = JetsonRailSensor(rate_hz=100)
    remote = agent.RailSampler(layout()["jetson"], 100)
    info = local.info
    assert remote.info["rails"] == list(info.rails) and remote.info["outside_rails"] == list(info.outside_rails)
    assert remote.info["boundary"] == info.boundary and remote.info["total_rail"] == info.total_rail
    # the same energy over the same kind of window, to the rounding: constant rails, so power x time
    local.start()
    remote.start()
    s_local, s_remote = local.read(), remote.read()
    time.sleep(0.2)
    e_local, e_remote = local.read(), remote.read()
    local.close()
    remote.close()
    local_mw = 1000 * (e_local.total_mj - s_local.total_mj) / (e_local.t_s - s_local.t_s)
    remote_mw = 1000 * (e_remote[1] - s_remote[1]) / (e_remote[0] - s_remote[0])
    assert round(local_mw, 3) == round(remote_mw, 3)
    for rail in info.rails:
        local_rail = (e_local.rails_mj[rail] - s_local.rails_mj[rail]) / (e_local.t_s - s_local.t_s)
        remote_rail = (e_remote[2][rail] - s_remote[2][rail]) / (e_remote[0] - s_remote[0])
        assert round(local_rail, 3) == round(remote_rail, 3)


def test_the_agent_counts_the_same_rapl_zones(sysfs_root):
    rapl_tree(sysfs_root, sockets=2)
    counter = agent.RaplCounter(layout()["rapl"])
    assert [z[0] for z in counter.zones] == [z.rail for z in find_zones()]  # packages and DRAM, never psys/core/mmio
    assert counter.info["boundary"] == "CPU package + DRAM"


def test_the_agent_refuses_an_interpreter_older_than_it_needs_in_one_json_line(monkeypatch, capsys):
    monkeypatch.setenv("E3P_AGENT_MIN_PYTHON", "3.99")
    assert agent.main(["agent.py", "probe"]) == 3
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and '"cause": "python"' in line and "needs Python 3.99 or newer" in line


def test_the_agent_is_python_36_code():
    """The oldest Python a board has (JetPack 4.6: 3.6); vermin reads the syntax and the library it uses."""
    vermin = shutil.which("vermin", path=str(__import__("pathlib").Path(sys.executable).parent))
    if vermin is None:
        pytest.skip("vermin is not installed: pip install vermin")
    done = subprocess.run([vermin, "-t=3.6-", "--no-tips", "--violations", agent.__file__], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_agent_imports_nothing_but_the_standard_library():
    source = open(agent.__file__).read()
    imports = [line.strip() for line in source.splitlines() if line.strip().startswith(("import ", "from "))]
    assert not [line for line in imports if "pytest_e3p" in line or line.startswith("from .")]
    imported = {line.split()[1].split(".")[0] for line in imports}
    third_party = imported - set(sys.stdlib_module_names) - {"torch", "onnxruntime", "numpy"}  # the board's runtimes, imported where it runs them
    assert third_party == set()
