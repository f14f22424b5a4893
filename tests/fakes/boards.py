"""Device trees of real boards: /proc/device-tree/{model,compatible} written NUL-terminated as the
kernel writes them (compatible: NUL-separated strings, a NUL after the last), and /etc/nv_tegra_release.

Sources of the strings:
- TX2 (L4T 32.4.4): model "quill", jetson-stats issue 387; compatible carrier+module P2597+P3310,
  Adafruit_Python_PlatformDetect constants/boards.py _JETSON_IDS ("nvidia,quill").
- TX2 NX: model "lanai-3636", module p3636-0001 (jetson-stats issue 357); compatible
  "nvidia,p3509-0000+p3636-0001" (Adafruit _JETSON_IDS).
- Nano, Xavier NX, AGX Xavier, Orin Nano, Orin NX, AGX Orin: the dev kits' device trees
  (compatible lists as in Adafruit _JETSON_IDS and the L4T tegra234-p3767 DT sources, which list
  nvidia,p3768-0000+p3767-000N, then nvidia,p3767-000N, nvidia,tegra234, nvidia,tegra23x).
- Raspberry Pi 4: "raspberrypi,4-model-b", "brcm,bcm2711".
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class BoardTree:
    key: str
    model: str
    compatible: tuple[str, ...]
    l4t_line: str | None  # the first line of /etc/nv_tegra_release, None where there is none
    # what identify_board must say
    soc: str | None
    part: str | None
    module: str | None
    profile: str | None
    l4t: str | None


def _release(major, revision, board="t186ref"):
    return f"# R{major} (release), REVISION: {revision}, GCID: 32827747, BOARD: {board}, EABI: aarch64, DATE: Sun Mar 19 15:19:21 UTC 2023"


BOARDS = {
    b.key: b
    for b in (
        BoardTree(
            "tx2",
            "quill",
            ("nvidia,quill", "nvidia,p2597-0000+p3310-1000", "nvidia,tegra186"),
            _release(32, "4.4"),
            "tegra186",
            "p3310-1000",
            "Jetson TX2",
            "tx2",
            "R32.4.4",
        ),
        BoardTree(
            "tx2-nx",
            "lanai-3636",
            ("nvidia,p3509-0000+p3636-0001", "nvidia,tegra186"),
            _release(32, "6.1"),
            "tegra186",
            "p3636-0001",
            "Jetson TX2 NX",
            None,
            "R32.6.1",
        ),
        BoardTree(
            "nano",
            "NVIDIA Jetson Nano Developer Kit",
            ("nvidia,p3449-0000-b00+p3448-0000-b00", "nvidia,jetson-nano", "nvidia,tegra210"),
            _release(32, "7.1", "t210ref"),
            "tegra210",
            "p3448-0000",
            "Jetson Nano",
            None,
            "R32.7.1",
        ),
        BoardTree(
            "xavier-nx",
            "NVIDIA Jetson Xavier NX Developer Kit",
            ("nvidia,p3449-0000+p3668-0000", "nvidia,p3509-0000+p3668-0000", "nvidia,tegra194"),
            _release(35, "3.1"),
            "tegra194",
            "p3668-0000",
            "Jetson Xavier NX (developer kit)",
            "xavier-nx",
            "R35.3.1",
        ),
        BoardTree(
            "agx-xavier",
            "Jetson-AGX",
            ("nvidia,galen", "nvidia,jetson-xavier", "nvidia,p2822-0000+p2888-0001", "nvidia,tegra194"),
            _release(35, "2.0"),
            "tegra194",
            "p2888-0001",
            "Jetson AGX Xavier 16GB",
            None,
            "R35.2.0",
        ),
        BoardTree(
            "orin-nano",
            "NVIDIA Orin Nano Developer Kit",
            ("nvidia,p3768-0000+p3767-0003", "nvidia,p3767-0003", "nvidia,tegra234", "nvidia,tegra23x"),
            _release(36, "4.0", "generic"),
            "tegra234",
            "p3767-0003",
            "Jetson Orin Nano 8GB",
            "orin-nano",
            "R36.4.0",
        ),
        BoardTree(
            "orin-nano-super",
            "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super",
            ("nvidia,p3768-0000+p3767-0005-super", "nvidia,p3767-0005", "nvidia,tegra234", "nvidia,tegra23x"),
            _release(36, "4.3", "generic"),
            "tegra234",
            "p3767-0005",
            "Jetson Orin Nano 8GB (developer kit)",
            "orin-nano",
            "R36.4.3",
        ),
        BoardTree(
            "orin-nx",
            "NVIDIA Orin NX Developer Kit",
            ("nvidia,p3768-0000+p3767-0000", "nvidia,p3767-0000", "nvidia,tegra234", "nvidia,tegra23x"),
            _release(36, "3.0", "generic"),
            "tegra234",
            "p3767-0000",
            "Jetson Orin NX 16GB",
            "orin-nx",
            "R36.3.0",
        ),
        BoardTree(
            "agx-orin",
            "Jetson AGX Orin Developer Kit",
            ("nvidia,p3737-0000+p3701-0005", "nvidia,p3701-0005", "nvidia,tegra234", "nvidia,tegra23x"),
            _release(35, "3.1"),
            "tegra234",
            "p3701-0005",
            "Jetson AGX Orin 64GB",
            "agx-orin",
            "R35.3.1",
        ),
    )
}

RASPBERRY_PI_4 = BoardTree("rpi4", "Raspberry Pi 4 Model B Rev 1.4", ("raspberrypi,4-model-b", "brcm,bcm2711"), None, None, None, None, None, None)


def write_board(root, board):
    """Write a board's device tree and L4T release under root, NUL-terminated as the kernel does."""
    dt = root / "proc/device-tree"
    dt.mkdir(parents=True, exist_ok=True)
    (dt / "model").write_bytes(board.model.encode() + b"\x00")
    (dt / "compatible").write_bytes(b"".join(c.encode() + b"\x00" for c in board.compatible))
    if board.l4t_line is not None:
        (root / "etc").mkdir(parents=True, exist_ok=True)
        (root / "etc/nv_tegra_release").write_text(board.l4t_line + "\n# KERNEL_VARIANT: oot\nTARGET_USERSPACE_LIB_DIR=nvidia\n")
    return board
