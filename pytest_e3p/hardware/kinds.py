"""The kinds of device a case runs on. Free of torch and of the sensors, so the thermal sources, the
peak-memory reader and the variants can name a kind without importing what measures it."""

from __future__ import annotations

from enum import Enum


class DeviceKind(str, Enum):
    """What a `--e3p-device` profile is: the host CPU, an NVIDIA GPU through CUDA, or a Jetson board.

    A str, so results files and comparisons with plain "cpu" / "cuda" / "jetson" stay as they were."""

    CPU = "cpu"
    CUDA = "cuda"
    JETSON = "jetson"

    # str() and f-strings give the bare value on every Python (3.11 changed Enum.__format__)
    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


DEVICE_KINDS = tuple(DeviceKind)


def parse_device_kind(text: str, what: str = "device kind") -> DeviceKind:
    """`text` as a DeviceKind; ValueError naming the accepted kinds otherwise."""
    try:
        return DeviceKind(text)
    except ValueError:
        raise ValueError(f"{what} must be one of {', '.join(k.value for k in DeviceKind)}, not {text!r}") from None
