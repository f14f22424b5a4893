"""The documentation (the README and docs/) covers every option, environment variable and command a user can reach."""

import re
from pathlib import Path

import pytest

from pytest_e3p.cli import build_parser
from pytest_e3p.config import SPEC
from pytest_e3p.variants.catalog import VARIANTS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
# The README is the front page; the options reference and the per-feature tables live in docs/.
DOCS = "\n".join([README, *(p.read_text() for p in sorted((ROOT / "docs").rglob("*.md")))])


@pytest.mark.parametrize("flag", [s[1] for s in SPEC])
def test_every_option_is_in_the_readme(flag):
    assert re.search(f"`{re.escape(flag)}[` ]", DOCS), f"{flag} is not in the options reference"


@pytest.mark.parametrize("command", sorted(build_parser()._subparsers._group_actions[0].choices))
def test_every_command_is_in_the_readme(command):
    assert f"python -m pytest_e3p {command}" in README or f"pytest-e3p {command}" in README


def test_environment_variables_and_the_console_script_are_documented():
    assert "`E3P_SYSFS_ROOT`" in README and "pytest-e3p --version" in README


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_is_a_row_of_the_readme_variants_table(name):
    """The README's table and --help (VARIANT_HELP) name the same variants, with the same extra."""
    row = next((line for line in DOCS.splitlines() if line.startswith("| ") and f"`{name}`" in line.split("|")[1]), None)
    assert row is not None, f"{name} has no row in the variants table"
    extra = VARIANTS[name].extra
    assert (f"`{extra}`" in row) if extra else row.rstrip().endswith("| |"), f"{name}: the README row should name the extra {extra or '(none)'}"
