"""The hardware layer: the board (a Jetson and which, from the device tree), device profiles and
their resolution (devices), the power sensors (sensors/, one module per backend), the thermal sources (thermal), glibc malloc pinning (allocator), and the
device kinds every layer names (kinds).

The device kinds are imported here; the rest on first use, since devices imports torch."""

from __future__ import annotations

from typing import Any

from ..lazy import lazy_attribute
from .kinds import DEVICE_KINDS, DeviceKind, parse_device_kind

__all__ = [
    "DEVICE_KINDS",
    "Board",
    "PROFILES",
    "Device",
    "DeviceError",
    "DeviceKind",
    "Profile",
    "ThermalSource",
    "ThermalSources",
    "TripPoint",
    "accepted_names",
    "cpu_name",
    "default_malloc",
    "find_sources",
    "identify_board",
    "parse_device_kind",
    "pin_glibc_malloc",
    "resolve",
]

_LAZY = {
    "Board": "board",
    "identify_board": "board",
    "PROFILES": "devices",
    "Device": "devices",
    "DeviceError": "devices",
    "Profile": "devices",
    "accepted_names": "devices",
    "cpu_name": "devices",
    "resolve": "devices",
    "ThermalSource": "thermal",
    "ThermalSources": "thermal",
    "TripPoint": "thermal",
    "find_sources": "thermal",
    "default_malloc": "allocator",
    "pin_glibc_malloc": "allocator",
}


def __getattr__(name: str) -> Any:
    return lazy_attribute(__name__, _LAZY, name)
