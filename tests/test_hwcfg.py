"""The shared pieces of issue #22's hardware/config part: device kinds, text helpers, the positive
float parser, the thermal monitor's settings, and the variants' registry dispatch."""

from __future__ import annotations

import importlib
import inspect
import json

import pytest

from pytest_e3p.config import positive_float
from pytest_e3p.hardware import DEVICE_KINDS, DeviceKind, parse_device_kind
from pytest_e3p.text import error_line, first_line, slug
from pytest_e3p.variants import VARIANTS, split_variant


def test_device_kinds_read_and_write_as_their_plain_names():
    assert [str(k) for k in DEVICE_KINDS] == ["cpu", "cuda", "jetson"]
    assert f"{DeviceKind.JETSON}" == "jetson" and f"{DeviceKind.CPU:>5}" == "  cpu"
    assert DeviceKind.CUDA == "cuda" and {"cuda": 1}[DeviceKind.CUDA] == 1
    assert json.dumps({"kind": DeviceKind.CPU}) == '{"kind": "cpu"}'
    assert parse_device_kind("jetson") is DeviceKind.JETSON


def test_an_unknown_device_kind_names_the_accepted_ones():
    with pytest.raises(ValueError, match=r"^device kind must be one of cpu, cuda, jetson, not 'tpu'$"):
        parse_device_kind("tpu")


def test_first_line_of_an_error():
    exc = RuntimeError("\n  shape mismatch in layer 3  \nTraceback follows\n")
    assert first_line(exc) == "shape mismatch in layer 3"
    assert first_line(exc, 5) == "shape"
    assert first_line(ValueError()) == ""
    assert error_line(exc) == "RuntimeError: shape mismatch in layer 3"
    assert error_line(KeyError(""), 10) == "KeyError: ''"
    assert error_line(OSError()) == "OSError: "


def test_slug_keeps_letters_digits_and_the_characters_asked_for():
    assert slug("vit_small.augreg-cuda:0-imagenet") == "vit_small_augreg-cuda_0-imagenet"
    assert slug("vit_small.augreg-cuda:0", "-_.") == "vit_small.augreg-cuda_0"
    assert slug("Orin (Nano) é") == "Orin__Nano___"


@pytest.mark.parametrize("text, value", [("2.5", 2.5), ("1e-3", 1e-3)])
def test_positive_float_accepts(text, value):
    assert positive_float(text) == value


@pytest.mark.parametrize("text, why", [("0", "must be positive"), ("-1", "must be positive"), ("inf", "must be a finite number"), ("x", "could not convert")])
def test_positive_float_refuses(text, why):
    with pytest.raises(ValueError, match=why):
        positive_float(text)


def test_the_cli_says_why_a_rate_is_refused(capsys):
    from pytest_e3p.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["sensors", "--sample-hz", "-3"])
    assert "argument --sample-hz: '-3': must be positive" in capsys.readouterr().err


def test_thermal_settings_refuse_a_period_of_zero_before_opening_a_source():
    from pytest_e3p.measure.thermal import ThermalSettings, open_thermal

    assert ThermalSettings().period_s == 0.5 and ThermalSettings().clock_settle_s == 0.2
    with pytest.raises(ValueError, match="sampling period must be positive"):
        open_thermal("cpu", period_s=0)


@pytest.mark.parametrize("key", list(VARIANTS))
def test_every_variant_in_the_catalog_has_a_module_that_prepares_it_from_one_request(key):
    module = importlib.import_module(f"pytest_e3p.variants.{VARIANTS[key].module}")
    assert list(inspect.signature(module.prepare).parameters) == ["request"]


def test_split_variant_gives_the_catalog_key_and_the_parameter():
    assert split_variant("prune-heads-50") == ("prune-heads-P", 50)
    assert split_variant("tome-8") == ("tome-R", 8)
    assert split_variant("onnxruntime-int8") == ("onnxruntime-int8", None)
    with pytest.raises(ValueError, match="unknown variant 'prune-heads-0'"):
        split_variant("prune-heads-0")
