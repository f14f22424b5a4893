"""Board identification from the device tree's compatible list (fixtures: tests/fakes/boards.py,
with the sources of each string there)."""

import pytest
from fakes.boards import BOARDS, RASPBERRY_PI_4, BoardTree, write_board

from pytest_e3p.hardware.board import identify_board


@pytest.mark.parametrize("key", sorted(BOARDS))
def test_each_jetson_is_identified_by_its_compatible_list(sysfs_root, key):
    expected = write_board(sysfs_root, BOARDS[key])
    board = identify_board()
    assert board.is_jetson
    assert board.model == expected.model  # the kernel's trailing NUL stripped
    assert board.compatible == expected.compatible
    assert (board.soc, board.part, board.module, board.profile, board.l4t) == (
        expected.soc,
        expected.part,
        expected.module,
        expected.profile,
        expected.l4t,
    )


def test_a_tx2_whose_model_says_quill_is_a_tx2(sysfs_root):
    # jetson-stats issue 387: L4T 32.4.4 on a TX2 reports the model "quill", with no "Jetson" in it
    write_board(sysfs_root, BOARDS["tx2"])
    board = identify_board()
    assert board.model == "quill" and board.profile == "tx2" and board.module == "Jetson TX2"


def test_x86_without_a_device_tree_is_not_a_jetson(sysfs_root):
    board = identify_board()
    assert not board.is_jetson
    assert (board.model, board.compatible, board.soc, board.module, board.part, board.profile, board.l4t) == ("", (), None, None, None, None, None)


def test_a_raspberry_pi_is_not_a_jetson(sysfs_root):
    write_board(sysfs_root, RASPBERRY_PI_4)
    board = identify_board()
    assert board.compatible == ("raspberrypi,4-model-b", "brcm,bcm2711")
    assert not board.is_jetson and board.profile is None and board.module is None


def test_a_part_number_matches_whole_never_as_a_prefix(sysfs_root):
    # "p3767-00031" is not an Orin Nano p3767-0003: entries are split on NUL and matched whole
    write_board(sysfs_root, BoardTree("x", "X", ("nvidia,p3768-0000+p3767-00031", "nvidia,tegra234"), None, None, None, None, None, None))
    board = identify_board()
    assert board.is_jetson and board.soc == "tegra234"
    assert board.part is None and board.profile is None
    assert board.module == "unknown Jetson Orin module (tegra234)"


def test_a_jetson_word_in_the_model_alone_does_not_make_a_jetson(sysfs_root):
    write_board(sysfs_root, BoardTree("x", "My Jetson lookalike", ("vendor,board", "rockchip,rk3588"), None, None, None, None, None, None))
    assert not identify_board().is_jetson


def test_an_unknown_tegra_module_is_a_jetson_without_a_profile(sysfs_root):
    # Jetson Thor's module (p3834) is not in the table: still a Jetson, named by its SoC
    write_board(sysfs_root, BoardTree("thor", "NVIDIA Jetson AGX Thor Developer Kit", ("nvidia,p3971-0080+p3834-0008", "nvidia,tegra264"), None, *(None,) * 5))
    board = identify_board()
    assert board.is_jetson and board.soc == "tegra264" and board.profile is None and board.part is None
    assert board.module == "unknown Jetson Thor module (tegra264)"


@pytest.mark.parametrize(
    "line, expected",
    [
        ("# R35 (release), REVISION: 3.1, GCID: 32827747, BOARD: t186ref, EABI: aarch64, DATE: Sun Mar 19 15:19:21 UTC 2023", "R35.3.1"),
        ("# R38 (release), REVISION: 2.0, GCID: 41844464, BOARD: generic, EABI: aarch64, DATE: Mon Aug 25 21:25:00 UTC 2025", "R38.2.0"),
        ("R35.3.1 is what I think it is", None),
        ("", None),
    ],
)
def test_l4t_release_from_nv_tegra_release(sysfs_root, line, expected):
    write_board(sysfs_root, BoardTree("x", "m", ("nvidia,p3767-0003", "nvidia,tegra234"), line, *(None,) * 5))
    assert identify_board().l4t == expected
