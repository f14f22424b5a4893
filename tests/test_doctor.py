"""`python -m pytest_e3p doctor` against fake trees with the kernel's layouts, and `doctor --record-tree`,
whose archive replayed as E3P_SYSFS_ROOT must read exactly as the machine it was recorded on.

Trees: tests/fakes/power_rails.py (INA3221 iio/hwmon layouts, RAPL powercap), thermal_zones.py (thermal
zones, coretemp, cpufreq policies and devfreq as links into /sys/devices, as the kernel lays them out),
boards.py (device trees of real boards: jetson-stats issue 387, Adafruit_Python_PlatformDetect _JETSON_IDS,
the L4T tegra234-p3767 DT sources). NVML: fakes.nvml.FakeNvml at the pynvml boundary (nvml.h's values)."""

import json
import os
import re
import subprocess
import tarfile
import types

import pytest
import torch
from fakes.boards import BOARDS, write_board
from fakes.files import write
from fakes.nvml import NOT_SUPPORTED, FakeNvml
from fakes.power_rails import orin_tree as orin_rails
from fakes.power_rails import rapl_tree, tx2_tree
from fakes.thermal_zones import intel_laptop_tree
from fakes.thermal_zones import orin_tree as orin_thermal

import pytest_e3p.hardware.sensors as sensors
from pytest_e3p import doctor
from pytest_e3p.cli import main
from pytest_e3p.hardware.sensors import nvml as nv

REPLAYED_SECTIONS = ["--section", "board", "--section", "rails", "--section", "rapl", "--section", "thermal"]


@pytest.fixture
def quick_probe(monkeypatch):
    # the fake rails hold still: the real probe would wait its whole timeout for a change
    monkeypatch.setattr(sensors, "measure_update_period_s", lambda sensor, **kw: 0.01)


def orin_nx(root):
    """An Orin NX dev kit: INA3221 on the hwmon layout, its zones and ga10b devfreq, its device tree, and RAPL
    zones (not on an Orin, but the one tree then exercises every reader, absolute sub-zone links included)."""
    orin_rails(root)
    orin_thermal(root)
    rapl_tree(root, dram=True, psys=True)
    write_board(root, BOARDS["orin-nx"])
    # /proc/device-tree is an absolute link to /sys/firmware/devicetree/base (kernel
    # Documentation/ABI/testing/sysfs-firmware-ofw): here absolute into the tree, recorded relative
    base = root / "sys/firmware/devicetree/base"
    base.parent.mkdir(parents=True)
    (root / "proc/device-tree").rename(base)
    (root / "proc/device-tree").symlink_to(base)


def intel_laptop(root):
    intel_laptop_tree(root, cpus=2)
    rapl_tree(root, dram=True, psys=True)


def run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def replay_view(argv, capsys, root):
    """What a command prints, with the root's path and the measured window's length taken out: the
    only things that may differ between a machine and its replay."""
    code, out, _err = run(argv, capsys)
    out = out.replace(str(root), "<root>")
    return code, re.sub(r"over [\d.]+ s", "over <window> s", out)


def record(root, monkeypatch, capsys, tmp_path, name="board.tar.gz"):
    monkeypatch.setenv("E3P_SYSFS_ROOT", str(root))
    out = tmp_path / name
    code, printed, err = run(["doctor", "--record-tree", str(out)], capsys)
    assert code == 0, err
    assert f"into {out}" in printed
    return out


def extract(archive, into):
    """The archive's reader side, as the documentation tells a maintainer: tar -xzf into a folder."""
    into.mkdir()
    subprocess.run(["tar", "-xzf", str(archive), "-C", str(into)], check=True)
    return into


@pytest.mark.parametrize("build", [orin_nx, intel_laptop], ids=["orin-nx", "intel-laptop"])
def test_a_recorded_tree_reads_as_the_machine_it_was_recorded_on(build, tmp_path, monkeypatch, capsys, quick_probe):
    """The acceptance test of --record-tree: sensors and the doctor's sections, on the machine and on its replay."""
    original = tmp_path / "machine"
    build(original)
    monkeypatch.setenv("E3P_SYSFS_ROOT", str(original))
    before = replay_view(["sensors", "--window-s", "0.1"], capsys, original)
    before_doctor = replay_view(["doctor", "--quick", *REPLAYED_SECTIONS], capsys, original)

    replay = extract(record(original, monkeypatch, capsys, tmp_path), tmp_path / "replay")
    monkeypatch.setenv("E3P_SYSFS_ROOT", str(replay))
    after = replay_view(["sensors", "--window-s", "0.1"], capsys, replay)
    after_doctor = replay_view(["doctor", "--quick", *REPLAYED_SECTIONS], capsys, replay)

    assert after == before
    assert after_doctor == before_doctor
    # the replay found what the machine has, not two empty trees agreeing
    assert "CPU (RAPL): rapl, boundary: CPU package + DRAM" in before[1]
    if build is orin_nx:
        assert "Jetson INA3221 rails: jetson-ina3221, boundary: Jetson module input (VDD_IN)" in before[1]
        assert "SoC: tegra234" in before_doctor[1] and "--device profile: orin-nx" in before_doctor[1]
        assert "GPU devfreq 17000000.ga10b" in before[1]
        # cpufreq policies found through cpuN/cpufreq links: two policies, not one per CPU
        assert before[1].count("cpufreq policy") == 2
    else:
        assert "hwmon coretemp Package id 0" in before[1] and "Intel throttle counters" in before[1]


def test_the_archive_keeps_sysfs_links_as_links_inside_the_tree(tmp_path, monkeypatch, capsys):
    root = tmp_path / "machine"
    orin_nx(root)
    with tarfile.open(record(root, monkeypatch, capsys, tmp_path)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    zone = members["sys/class/thermal/thermal_zone0"]
    assert zone.issym() and zone.linkname == "../../devices/virtual/thermal/thermal_zone0"
    assert members["sys/devices/virtual/thermal/thermal_zone0/temp"].isfile()
    # owner-writable, so a fixture test can move a counter in its copy as a running kernel would
    assert members["sys/devices/virtual/thermal/thermal_zone0/temp"].mode == 0o644
    assert members["sys/devices/system/cpu/cpu5/cpufreq"].issym()
    # rapl_tree links its sub-zones with absolute paths into the tree: recorded relative, as a replay needs
    assert members["sys/class/powercap/intel-rapl:0:1"].linkname == "intel-rapl:0/intel-rapl:0:1"
    assert members["proc/device-tree"].linkname == "../sys/firmware/devicetree/base"
    assert members["sys/firmware/devicetree/base/compatible"].isfile()
    for m in members.values():
        assert not os.path.isabs(m.name) and ".." not in m.name.split("/")
        if m.issym():
            resolved = os.path.normpath(os.path.join(os.path.dirname(m.name), m.linkname))
            assert not os.path.isabs(m.linkname) and not resolved.startswith(".."), f"{m.name} -> {m.linkname} leaves the tree"


def test_the_archive_holds_only_the_files_the_suite_reads(tmp_path, monkeypatch, capsys):
    root = tmp_path / "machine"
    orin_nx(root)
    write(root / "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3/update_interval", 1000)
    write(root / "proc/device-tree/serial-number", "1421522051234")  # identifies the unit: never read
    with tarfile.open(record(root, monkeypatch, capsys, tmp_path)) as tar:
        files = {m.name for m in tar.getmembers() if m.isfile()}
    assert "sys/devices/virtual/thermal/thermal_zone1/trip_point_0_temp" in files
    assert "sys/firmware/devicetree/base/compatible" in files and "etc/nv_tegra_release" in files
    assert "sys/class/powercap/intel-rapl:0/max_energy_range_uj" in files
    for unread in (
        "sys/devices/virtual/thermal/thermal_zone0/policy",
        "sys/devices/virtual/thermal/thermal_zone0/trip_point_0_hyst",
        "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3/update_interval",
        "sys/class/powercap/intel-rapl-mmio:0/energy_uj",
        "sys/firmware/devicetree/base/serial-number",
        "sys/devices/platform/15340000.vic/devfreq/15340000.vic/max_freq",  # not the GPU: only its cur_freq is looked at
    ):
        assert unread not in files


def test_an_unreadable_file_is_named_in_the_manifest_with_its_error(tmp_path, monkeypatch, capsys):
    root = tmp_path / "machine"
    base = rapl_tree(root, dram=False, psys=False)
    energy = base / "intel-rapl:0/energy_uj"
    energy.chmod(0)  # RAPL's energy_uj is root-only on current kernels (CVE-2020-8694)
    deny(monkeypatch, energy)  # for root too, whom the mode does not stop
    out = record(root, monkeypatch, capsys, tmp_path)
    monkeypatch.undo()
    with tarfile.open(out) as tar:
        manifest = tar.extractfile("MANIFEST").read().decode()
        files = {m.name for m in tar.getmembers() if m.isfile()}
    assert "unreadable sys/class/powercap/intel-rapl:0/energy_uj: Permission denied" in manifest
    assert "sys/class/powercap/intel-rapl:0/energy_uj" not in files
    assert "sys/class/powercap/intel-rapl:0/name" in files


def test_a_fifo_where_an_attribute_should_be_is_never_opened(tmp_path, monkeypatch, capsys):
    root = tmp_path / "machine"
    rapl_tree(root, dram=False, psys=False)
    fifo = root / "sys/class/powercap/intel-rapl:0/max_energy_range_uj"
    fifo.unlink()
    os.mkfifo(fifo)  # opening it for reading would block until a writer came
    with tarfile.open(record(root, monkeypatch, capsys, tmp_path)) as tar:
        manifest = tar.extractfile("MANIFEST").read().decode()
        names = {m.name for m in tar.getmembers()}
    assert "skipped sys/class/powercap/intel-rapl:0/max_energy_range_uj: not a regular file, never read" in manifest
    assert "sys/class/powercap/intel-rapl:0/max_energy_range_uj" not in names


def test_record_tree_refuses_a_bad_path_in_one_line(tmp_path, capsys, sysfs_root):
    code, _out, err = run(["doctor", "--record-tree", str(tmp_path / "tree.zip")], capsys)
    assert code == 2 and err.strip() == f"error: --record-tree {tmp_path / 'tree.zip'}: name the archive NAME.tar.gz"
    code, _out, err = run(["doctor", "--record-tree", str(tmp_path / "no/such/t.tar.gz")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "does not exist" in err
    assert list(tmp_path.glob("**/*.tar.gz")) == [] and not list(tmp_path.glob(".e3p-tree-*"))


def test_no_problem_exits_0_and_every_check_says_ok(tmp_path, capsys, sysfs_root):
    intel_laptop(sysfs_root)
    code, out, _err = run(["doctor", "--quick", "--results", str(tmp_path / "out/results.json")], capsys)
    checks = out.split("== Checks ==\n", 1)[1]
    assert "problem:" not in checks and out.rstrip().endswith("no problem found"), out
    assert code == 0
    assert "ok: --e3p-device auto resolves to cpu on cpu" in checks
    assert "ok: --e3p-device auto: power sensor rapl opens (boundary: CPU package + DRAM)" in checks
    assert f"ok: --e3p-results={tmp_path / 'out/results.json'} can be written" in checks
    for section in ("Platform", "Board identification", "NVML", "Jetson rails", "RAPL", "Thermal zones"):
        assert f"== {section} ==" in out


def problems_and_fixes(out):
    """{problem: its fix}; every problem line must be followed by its fix."""
    lines = out.splitlines()
    problems = [i for i, line in enumerate(lines) if line.startswith("problem: ")]
    assert problems and all(lines[i + 1].startswith("  fix: ") for i in problems), out
    return {lines[i][len("problem: ") :]: lines[i + 1][len("  fix: ") :] for i in problems}


def test_each_problem_says_what_and_how_to_fix_it_and_exits_1(tmp_path, capsys, sysfs_root):
    # no RAPL, no thermal zone (a VM), a --device that is not this machine, a report path that is a file
    (tmp_path / "report").write_text("a file where a folder is wanted")
    code, out, _err = run(["doctor", "--quick", "--section", "checks", "--device", "tx2", "--report", str(tmp_path / "report")], capsys)
    assert code == 1
    found = problems_and_fixes(out)
    tx2 = next(what for what in found if what.startswith("--device tx2 expects NVIDIA Jetson TX2"))
    assert "this machine is not a Jetson board" in tx2 and found[tx2] == "use --device auto, cuda or cpu"
    assert found[f"--e3p-report={tmp_path / 'report'}: is a file; give a folder"] == "give --e3p-report a path this user can write"
    assert any(what.startswith("--e3p-device auto: energy will be an estimate, not measured: no RAPL") for what in found)
    assert any(what.startswith("--e3p-device auto: thermal: no thermal zone or hwmon sensor readable") for what in found)


def test_a_jetson_whose_torch_has_no_cuda_is_told_which_torch_to_install(capsys, sysfs_root):
    orin_rails(sysfs_root)  # an Orin NX (compatible nvidia,p3767-0000, tegra234); this torch sees no GPU
    code, out, _err = run(["doctor", "--quick", "--section", "checks"], capsys)
    assert code == 1
    found = problems_and_fixes(out)
    what = next(w for w in found if w.startswith("--device orin-nx: torch"))
    assert what.endswith("sees no GPU, but this is a Jetson board (Jetson Orin NX 16GB)") or "CPU-only build" in what
    assert found[what].startswith("install NVIDIA's CUDA torch (on a Jetson: the JetPack wheel from NVIDIA")
    assert "ok: Jetson rails: jetson-ina3221 opens (boundary: Jetson module input (VDD_IN))" in out


def deny(monkeypatch, path):
    """The kernel's EACCES on opening `path` (by any name), as for a user outside the file's group;
    chmod alone would not do when the tests run as root."""
    real_open = os.open

    def denied(p, flags, *args, **kwargs):
        if os.path.realpath(p) == os.path.realpath(path):
            raise PermissionError(13, "Permission denied", str(p))
        return real_open(p, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", denied)


def test_rails_the_user_cannot_read_are_a_problem_with_the_udev_fix(capsys, sysfs_root, monkeypatch):
    hw = orin_rails(sysfs_root)
    deny(monkeypatch, hw / "curr1_input")
    code, out, _err = run(["doctor", "--quick", "--section", "checks"], capsys)
    assert code == 1
    found = problems_and_fixes(out)
    rails = next(w for w in found if w.startswith("Jetson rails: permission denied reading"))
    assert "curr1_input" in rails and found[rails] == doctor.JETSON_PERMISSION_FIX


def test_an_unknown_device_is_a_usage_error_in_one_line(capsys, sysfs_root):
    code, out, err = run(["doctor", "--device", "tx3"], capsys)
    assert code == 2 and out == ""
    assert err.strip().startswith("error: --device tx3: unknown device; accepted: cpu, cuda") and len(err.strip().splitlines()) == 1


def test_the_rails_section_names_each_rail_its_unit_reading_and_the_total(capsys, sysfs_root):
    tx2_tree(sysfs_root, carrier=True)  # iio layout, VDD_IN 5 W; carrier monitors 0-0042/0-0043
    code, out, _err = run(["doctor", "--section", "rails"], capsys)
    assert code == 0
    assert "total: VDD_IN (the module's input rail)" in out
    assert "  VDD_IN: 5000 mW; unit mW (in_powerN_input), the total" in out
    assert "  VDD_SYS_GPU: 2000 mW; unit mW (in_powerN_input)\n" in out
    assert "  VDD_MUX: 9000 mW; unit mW (in_powerN_input), carrier board: outside the module, never counted" in out


def test_the_rapl_section_says_which_domains_are_counted(capsys, sysfs_root):
    rapl_tree(sysfs_root, dram=True, psys=True)
    code, out, _err = run(["doctor", "--section", "rapl"], capsys)
    assert "  intel-rapl:0 package-0: readable (1000000 uJ); counted" in out
    assert "  intel-rapl:0:1 dram: readable (200000 uJ); counted" in out
    assert "  intel-rapl:0:0 core: readable (500000 uJ); not counted" in out
    assert "  intel-rapl:1 psys: readable (9000000 uJ); not counted" in out


@pytest.fixture
def two_gpus(monkeypatch):
    """Two GPUs through NVML with the counter only (the instant field and the average answer
    NOT_SUPPORTED, nvml.h 3), and a CUDA torch that sees the one whose UUID is GPU-1234 as cuda:0."""
    fake = FakeNvml(count=2)
    fake.instant_return, fake.average = NOT_SUPPORTED, False
    monkeypatch.setattr(nv, "load_pynvml", lambda: fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(uuid="1234"))
    return fake


def test_the_nvml_section_probes_each_reading_and_measures_the_counters_period(capsys, sysfs_root, two_gpus):
    code, out, _err = run(["doctor", "--section", "nvml"], capsys)
    assert code == 0
    assert "driver: 550.54" in out
    assert "GPU 0: NVIDIA GeForce RTX 3050 Laptop GPU, GPU-1234, cuda:0" in out
    assert "  energy from: counter (the first that answers of: counter, instant, average)" in out
    assert "  MIG: disabled" in out and "  clocks: SM 1500 MHz, memory 7000 MHz" in out and "  power limit: 80.0 W" in out
    # the fake's counter steps every 50 ms, as the driver's does
    periods = [float(p) for p in re.findall(r"counter: yes \(.*\); update period: ([\d.]+) ms measured", out)]
    assert len(periods) == 2 and all(40 <= p <= 120 for p in periods), out
    assert "  instant: no (" in out and "  average: no (NVML_ERROR_NOT_SUPPORTED)" in out


def test_quick_skips_the_update_period(capsys, sysfs_root, two_gpus):
    code, out, _err = run(["doctor", "--section", "nvml", "--quick"], capsys)
    assert out.count("update period: not measured (--quick)") == 2


def test_json_has_every_section_and_check(capsys, sysfs_root, two_gpus):
    intel_laptop(sysfs_root)
    code, out, _err = run(["doctor", "--quick", "--json", "--section", "nvml", "--section", "rapl", "--section", "checks"], capsys)
    report = json.loads(out)
    assert list(report["sections"]) == ["NVML", "RAPL"]
    assert {"status": "ok", "what": "torch sees 1 of NVML's 2 GPU(s)", "fix": ""} in report["checks"]
    assert report["problems"] == sum(c["status"] == "problem" for c in report["checks"])
    assert code == (1 if report["problems"] else 0)


def test_a_library_whose_import_crashes_is_reported_not_raised(tmp_path, monkeypatch):
    (tmp_path / "e3p_broken_lib.py").write_text("raise RuntimeError('CUDA driver version is insufficient')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert doctor.library_version("e3p_broken_lib", ()) == "installed, but its import fails: RuntimeError: CUDA driver version is insufficient"
    assert doctor.library_version("e3p_no_such_lib", ()) == "not installed"


def test_a_link_out_of_the_recorded_root_is_recorded_as_the_files_it_points_at(tmp_path, monkeypatch, capsys):
    """Under an E3P_SYSFS_ROOT (a container's bind-mounted /sys), a class link can point outside the
    root: the archive then holds the files at the path the suite reads, and the replay still reads them."""
    root, elsewhere = tmp_path / "machine", tmp_path / "host-devices"
    write(elsewhere / "thermal_zone0/type", "x86_pkg_temp")
    write(elsewhere / "thermal_zone0/temp", 61_000)
    write(elsewhere / "thermal_zone0/trip_point_0_temp", 90_000)
    write(elsewhere / "thermal_zone0/trip_point_0_type", "passive")
    (root / "sys/class/thermal").mkdir(parents=True)
    (root / "sys/class/thermal/thermal_zone0").symlink_to(elsewhere / "thermal_zone0")
    monkeypatch.setenv("E3P_SYSFS_ROOT", str(root))
    before = replay_view(["doctor", "--section", "thermal"], capsys, root)
    archive = record(root, monkeypatch, capsys, tmp_path)
    with tarfile.open(archive) as tar:
        assert tar.getmember("sys/class/thermal/thermal_zone0/temp").isfile()
        assert not any(m.issym() for m in tar.getmembers())
    replay = extract(archive, tmp_path / "replay")
    monkeypatch.setenv("E3P_SYSFS_ROOT", str(replay))
    assert replay_view(["doctor", "--section", "thermal"], capsys, replay) == before
    assert "thermal zone x86_pkg_temp (thermal_zone0): 61.0 C; trip points: passive 90.0 C" in before[1]


def test_a_section_whose_backend_fails_says_so_and_the_others_still_print(capsys, sysfs_root, monkeypatch):
    import pytest_e3p.hardware.board as board

    def broken():
        raise RuntimeError("device tree unreadable")

    monkeypatch.setattr(board, "identify_board", broken)
    rapl_tree(sysfs_root, dram=False, psys=False)
    code, out, _err = run(["doctor", "--section", "board", "--section", "rapl"], capsys)
    assert "== Board identification ==\nunavailable: RuntimeError: device tree unreadable\n" in out
    assert "  intel-rapl:0 package-0: readable (1000000 uJ); counted" in out
