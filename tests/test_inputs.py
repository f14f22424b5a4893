"""Bad inputs found before anything is measured, and faults mid-run told in one line."""

import json

import fakes.datasets as make
import pytest
import timm
import torch
from fakes.power_rails import rapl_tree

FAST = [
    "--e3p-device=cpu",
    "--e3p-batch-size=2",
    "--e3p-passes=1",
    "--e3p-rounds=2",
    "--e3p-min-round-s=0.05",
    "--e3p-warmup-s=0",
    "--e3p-idle-s=0",
    "-p",
    "no:cacheprovider",
]
BENCH = "def test_energy(e3p):\n    e3p.measure()\n    e3p.evaluate()\n"


@pytest.mark.parametrize(
    "layout, message",
    [
        ("empty", "*folder: *empty has no class sub-folders*"),
        ("flat", "*folder: *flat has no class sub-folders*"),
        ("one_class", "*has one class folder*"),
        ("imagenet_one_class", "*imagenet: *has 1 synset folders, expected 1000*"),
        ("unreadable_first", "*the first image *cannot be decoded*remove or replace it*"),
    ],
)
def test_a_dataset_that_cannot_be_evaluated_is_refused_before_the_first_case(pytester, layout, message):
    root = pytester.path / layout
    root.mkdir()
    kind = "folder"
    if layout == "flat":
        make.image(root / "img.png", make.COLOURS[0])
    elif layout == "one_class":
        make.image(root / "class_0" / "img.png", make.COLOURS[0])
    elif layout == "imagenet_one_class":
        kind = "imagenet"
        make.image(root / "n01440764" / "ILSVRC2012_val_00000001.JPEG", make.COLOURS[0])
    elif layout == "unreadable_first":
        make.image_folder(root, per_class=2)
        (root / "class_0" / "img_0.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    pytester.makepyfile(test_bench=BENCH)
    result = pytester.runpytest(*FAST, "--e3p-models=test_vit", f"--e3p-dataset={kind}={root}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_a_corrupt_image_mid_pass_fails_its_case_in_one_line_and_the_run_goes_on(pytester, tmp_path):
    folder = make.image_folder(tmp_path / "data", per_class=3)
    (folder / "class_1" / "img_2.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    ckpts = tmp_path / "ckpts"
    ckpts.mkdir()
    torch.manual_seed(0)
    torch.save(timm.create_model("test_vit", num_classes=2).state_dict(), ckpts / "test_vit_folder.pth")
    pytester.makepyfile(test_bench=BENCH)
    result = pytester.runpytest(*FAST, "--e3p-models=test_vit", f"--e3p-dataset=synthetic,folder={folder}", f"--e3p-checkpoints={ckpts}", "--e3p-workers=0")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*test_vit-cpu-folder: accuracy pass stopped: *img_2.png cannot be decoded*remove or replace it"])
    assert "PIL" not in result.stdout.str()  # no decoder traceback
    cases = json.loads((pytester.path / ".e3p/results.json").read_text())["cases"]
    assert cases["test_vit-cpu-folder"]["status"] == "failed" and cases["test_vit-cpu-synthetic"]["status"] == "ok"


TICKING_RAPL = """
import os
import threading
import time

import pytest

COUNTER = {counter!r}
state = {{"uj": 1_000_000, "seen": 0}}


def tick():
    # a package drawing 10 W: the counter moves 50 mJ every 5 ms, in place as the kernel does
    while True:
        state["uj"] += 50_000
        try:
            fd = os.open(COUNTER, os.O_WRONLY)
        except FileNotFoundError:
            return
        os.pwrite(fd, f"{{state['uj']:>14d}}\\n".encode(), 0)
        os.close(fd)
        time.sleep(0.005)


threading.Thread(target=tick, daemon=True).start()


def pytest_e3p_case_result(config, result):
    state["seen"] += 1
    if state["seen"] == 1:
        os.unlink(COUNTER)  # the zone's file vanishes after the first case
"""


def test_after_a_sensor_fault_measured_and_estimated_cases_are_never_ranked_together(pytester, sysfs_root):
    rapl_tree(sysfs_root, dram=False, psys=False)
    counter = sysfs_root / "sys/class/powercap/intel-rapl:0/energy_uj"
    pytester.makeconftest(TICKING_RAPL.format(counter=str(counter)))
    pytester.makepyfile(test_bench="def test_energy(e3p):\n    e3p.measure()\n")
    result = pytester.runpytest(*FAST, "--e3p-models=test_vit,test_vit2,test_vit4")  # three tiny models: three cases
    result.assert_outcomes(passed=2, failed=1)
    data = json.loads((pytester.path / ".e3p/results.json").read_text())
    kinds = {cid.split("-")[0]: (c["status"], c["energy_kind"]) for cid, c in data["cases"].items()}
    assert kinds == {"test_vit": ("ok", "measured"), "test_vit2": ("invalid", "measured"), "test_vit4": ("ok", "estimate")}
    assert data["protocol"]["energy_kind"] == "mixed" and len(data["protocol"]["energy_sources"]) == 2
    out = result.stdout.str()
    assert "E3P stage 2 on cpu / synthetic: energy measured by rapl" in out and "E3P stage 2 on cpu / synthetic: energy estimate by cpu-time-estimate" in out
    note = next(line for line in result.outlines if line.startswith("energy: "))
    assert "chmod" not in note  # the file vanished: not a permission problem


@pytest.mark.parametrize(
    "arg, message",
    [
        ("--e3p-batch-size=1,,2", "*--e3p-batch-size='1,,2': item 2 of the comma list is empty: remove the extra comma"),
        ("--e3p-image-size=224,", "*--e3p-image-size='224,': item 2 of the comma list is empty*"),
        ("--e3p-models=test_vit,,test_vit2", "*--e3p-models='test_vit,,test_vit2': item 2 of the comma list is empty*"),
        ("--e3p-dataset=,synthetic", "*--e3p-dataset=',synthetic': item 1 of the comma list is empty*"),
        ("--e3p-variants=fp32,,fp16", "*--e3p-variants='fp32,,fp16': item 2 *empty*"),
        ("--e3p-tolerance=energy=5%,", "*--e3p-tolerance='energy=5%,': item 2 *empty*"),
        ("--e3p-screen-keep=test_vit,", "*--e3p-screen-keep='test_vit,': item 2 *empty*"),
    ],
)
def test_an_empty_item_of_a_comma_list_is_refused_not_dropped(pytester, arg, message):
    # `1,,2` was read as 1,2: a typo ran another matrix than the one meant, without a word
    pytester.makepyfile(test_bench=BENCH)
    result = pytester.runpytest(*FAST, "--e3p-models=test_vit", arg)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert "Traceback" not in result.stderr.str()


def test_more_threads_than_cpus_is_said_once_at_the_start(pytester):
    import os

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    pytester.makepyfile(test_bench="def test_energy(e3p):\n    pass\n")
    result = pytester.runpytest(*FAST, "--e3p-models=test_vit", f"--e3p-threads={cpus + 1}", "--collect-only")
    result.stdout.fnmatch_lines([f"[[]e3p[]] --e3p-threads {cpus + 1} is more than the {cpus} CPUs this process may run on*give --e3p-threads {cpus} or fewer"])
    assert result.stdout.str().count("more than the") == 1
    quiet = pytester.runpytest(*FAST, "--e3p-models=test_vit", f"--e3p-threads={cpus}", "--collect-only")
    assert "more than the" not in quiet.stdout.str()


@pytest.mark.parametrize("flag", ["--e3p-history", "--e3p-report", "--e3p-results", "--e3p-save-baseline"])
@pytest.mark.parametrize("where", ["loop", "loop/inside"])
def test_an_output_path_in_a_symlink_loop_is_a_usage_error_at_the_start(pytester, flag, where):
    # Path.exists() is False on ELOOP: the path passed the start check and its write failed after the run
    (pytester.path / "loop").symlink_to("loop")
    pytester.makepyfile(test_bench=BENCH)
    result = pytester.runpytest(*FAST, "--e3p-models=test_vit", f"{flag}={where}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {flag}={where}: cannot be written (*Too many levels of symbolic links)"])
    assert "Traceback" not in result.stderr.str()
