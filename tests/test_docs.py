"""The README documents every option, environment variable and command a user can reach."""

import re
from pathlib import Path

import pytest

from pytest_e3p.cli import build_parser
from pytest_e3p.options import SPEC

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


@pytest.mark.parametrize("flag", [s[1] for s in SPEC])
def test_every_option_is_in_the_readme(flag):
    assert re.search(f"`{re.escape(flag)}[` ]", README), f"{flag} is not in the README's options table"


@pytest.mark.parametrize("command", sorted(build_parser()._subparsers._group_actions[0].choices))
def test_every_command_is_in_the_readme(command):
    assert f"python -m pytest_e3p {command}" in README or f"pytest-e3p {command}" in README


def test_environment_variables_and_the_console_script_are_documented():
    assert "`E3P_SYSFS_ROOT`" in README and "pytest-e3p --version" in README
