"""Which board this is: a Jetson module (and which), or not a Jetson at all.

A Jetson is known by its device tree's `compatible` list, never by its model string: the model is
free text the carrier board's device tree sets ("quill" on a TX2 under L4T 32.4.4, jetson-stats issue
387; "lanai-3636" on a TX2 NX; "Jetson-AGX" on an AGX Xavier), while `compatible` always ends with
the SoC ("nvidia,tegra186") and names the module by its part number, alone ("nvidia,p3767-0003") or
after the carrier's ("nvidia,p3768-0000+p3767-0003", carrier first). The kernel writes both files
NUL-terminated; `compatible` is a list of NUL-separated strings.

Module part numbers and names follow jetson-stats (jtop/core/jetson_variables.py, MODULE_NAME_TABLE)
and Adafruit_Python_PlatformDetect (adafruit_platformdetect/constants/boards.py, _JETSON_IDS); the
L4T release is the first line of /etc/nv_tegra_release, "# R35 (release), REVISION: 3.1, ...".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .sensors import sysfs

# part -> (module name, --device profile). A module without a named profile measures under the
# generic "jetson" profile: a TX2 NX or a TX2 4GB is not the paper's TX2, and baselines are per device.
MODULES: dict[str, tuple[str, str | None]] = {
    "p2180-1000": ("Jetson TX1", None),
    "p3310-1000": ("Jetson TX2", "tx2"),
    "p3489-0000": ("Jetson TX2i", None),
    "p3489-0888": ("Jetson TX2 4GB", None),
    "p3636-0001": ("Jetson TX2 NX", None),
    "p3448-0000": ("Jetson Nano", None),
    "p3448-0002": ("Jetson Nano (eMMC)", None),
    "p3448-0003": ("Jetson Nano 2GB", None),
    "p3668-0000": ("Jetson Xavier NX (developer kit)", "xavier-nx"),
    "p3668-0001": ("Jetson Xavier NX", "xavier-nx"),
    "p3668-0003": ("Jetson Xavier NX 16GB", "xavier-nx"),
    "p2888-0001": ("Jetson AGX Xavier 16GB", None),
    "p2888-0003": ("Jetson AGX Xavier 32GB", None),
    "p2888-0004": ("Jetson AGX Xavier 32GB", None),
    "p2888-0005": ("Jetson AGX Xavier 64GB", None),
    "p2888-0006": ("Jetson AGX Xavier 8GB", None),
    "p2888-0008": ("Jetson AGX Xavier Industrial", None),
    "p3767-0000": ("Jetson Orin NX 16GB", "orin-nx"),
    "p3767-0001": ("Jetson Orin NX 8GB", "orin-nx"),
    "p3767-0003": ("Jetson Orin Nano 8GB", "orin-nano"),
    "p3767-0004": ("Jetson Orin Nano 4GB", "orin-nano"),
    "p3767-0005": ("Jetson Orin Nano 8GB (developer kit)", "orin-nano"),
    "p3701-0000": ("Jetson AGX Orin", "agx-orin"),
    "p3701-0002": ("Jetson IGX Orin", None),
    "p3701-0004": ("Jetson AGX Orin 32GB", "agx-orin"),
    "p3701-0005": ("Jetson AGX Orin 64GB", "agx-orin"),
    "p3701-0008": ("Jetson AGX Orin Industrial", "agx-orin"),
}
# Module-naming compatible strings of older device trees that carry no module part number.
NAMED: dict[str, tuple[str, str | None]] = {
    "nvidia,jetson-nano": ("Jetson Nano", None),
    "nvidia,jetson-xavier": ("Jetson AGX Xavier", None),
    "nvidia,galen": ("Jetson AGX Xavier", None),
}
SOC_FAMILY = {
    "tegra124": "Jetson TK1",
    "tegra210": "Jetson TX1 / Nano",
    "tegra186": "Jetson TX2",
    "tegra194": "Jetson Xavier",
    "tegra234": "Jetson Orin",
    "tegra264": "Jetson Thor",
}

_SOC_RE = re.compile(r"nvidia,(tegra\d{3})")  # "tegra23x" is a family alias, not the SoC
# one piece of "nvidia,<carrier>+<module>": a part number, then a board revision ("-b00") or "-super"
_PART_RE = re.compile(r"(p\d{4}-\d{4})(?:-[a-z]\d{2})?(?:-super)?", re.IGNORECASE)
_L4T_RE = re.compile(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*(\d+(?:\.\d+)*)\s*,")


@dataclass(frozen=True)
class Board:
    model: str  # /proc/device-tree/model, trailing NULs stripped; "" where absent
    compatible: tuple[str, ...]  # /proc/device-tree/compatible split on NUL, empty entries dropped
    soc: str | None  # "tegra186" / "tegra194" / "tegra210" / "tegra234" / ... or None
    module: str | None  # human module name, e.g. "Jetson TX2", "Jetson Orin Nano 8GB"
    part: str | None  # module part number as in compatible, e.g. "p3767-0003"
    profile: str | None  # the --device profile name it matches ("tx2", "orin-nano", ...) or None
    l4t: str | None  # "R35.3.1" from /etc/nv_tegra_release, None where absent/garbled

    @property
    def is_jetson(self) -> bool:
        """A Tegra SoC in compatible."""
        return self.soc is not None

    def describe(self) -> str:
        """One phrase for messages: "Jetson TX2 (p3310-1000, tegra186, model 'quill')"."""
        if not self.is_jetson:
            return f"not a Jetson (model {self.model!r})" if self.model else "not a Jetson (no device tree)"
        detail = ", ".join(x for x in (self.part, self.soc, f"model {self.model!r}" if self.model else None) if x)
        return f"{self.module} ({detail})"


def _read_bytes(absolute: str) -> bytes:
    try:
        with open(sysfs.path(absolute), "rb") as fh:
            return fh.read()
    except OSError:  # no device tree (x86), or not readable: not a board we can name
        return b""


def parse_compatible(raw: bytes) -> tuple[str, ...]:
    return tuple(entry for entry in raw.decode(errors="replace").split("\x00") if entry.strip())


def parse_l4t(text: str) -> str | None:
    """ "# R35 (release), REVISION: 3.1, GCID: ..." -> "R35.3.1"; None where the line is not that."""
    first = text.splitlines()[0] if text else ""
    m = _L4T_RE.match(first.strip())
    return f"R{m.group(1)}.{m.group(2)}" if m else None


def _module(compatible: tuple[str, ...]) -> tuple[str | None, str | None, str | None]:
    """(part, module name, profile) from the first compatible entry naming a known module."""
    for entry in compatible:
        vendor, _, rest = entry.partition(",")
        if vendor != "nvidia":
            continue
        for piece in rest.split("+"):
            m = _PART_RE.fullmatch(piece)  # exact: "p3767-0003" never matches "p3767-00031"
            if m and m.group(1).lower() in MODULES:
                part = m.group(1).lower()
                return (part, *MODULES[part])
    for entry in compatible:
        if entry in NAMED:
            return (None, *NAMED[entry])
    return None, None, None


def identify_board() -> Board:
    """This machine's board, read through sysfs.path() so E3P_SYSFS_ROOT redirects it."""
    model = _read_bytes("/proc/device-tree/model").decode(errors="replace").rstrip("\x00").strip()
    compatible = parse_compatible(_read_bytes("/proc/device-tree/compatible"))
    soc = next((m.group(1) for m in (_SOC_RE.fullmatch(e) for e in compatible) if m), None)
    part = module = profile = None
    if soc is not None:
        part, module, profile = _module(compatible)
        if module is None:  # a Tegra module we cannot name: say which SoC it is
            module = f"unknown {SOC_FAMILY.get(soc, 'Jetson')} module ({soc})"
    l4t = parse_l4t(_read_bytes("/etc/nv_tegra_release").decode(errors="replace"))
    return Board(model, compatible, soc, module, part, profile, l4t)
