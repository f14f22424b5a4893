"""The documentation in docs/ stays true to the code: the generated options reference is current, and
every variant, hook, command and repository path the pages name exists."""

from __future__ import annotations

import importlib.util
import inspect
import re
import sys
from pathlib import Path

import pytest

from pytest_e3p.cli import build_parser
from pytest_e3p.config import DEFAULTS, SPEC
from pytest_e3p.plugin import hookspecs
from pytest_e3p.variants.catalog import VARIANTS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = (ROOT / "README.md").read_text()


def _generator():
    spec = importlib.util.spec_from_file_location("options_reference", ROOT / "scripts" / "options_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def _page(relative: str) -> str:
    return (DOCS / relative).read_text()


def test_the_options_reference_is_generated_from_config_and_up_to_date():
    committed = _page("reference/options.md")
    assert committed == _generator().render(), "docs/reference/options.md is out of date: run python scripts/options_reference.py"


@pytest.mark.parametrize("flag,name", [(s[1], s[0]) for s in SPEC])
def test_every_option_is_a_row_of_the_reference_with_its_ini_name_and_default(flag, name):
    row = next((line for line in _page("reference/options.md").splitlines() if line.startswith(f"| `{flag}` |")), None)
    assert row is not None, f"{flag} has no row in docs/reference/options.md"
    cells = [c.strip() for c in row.split(" | ")]
    assert cells[1] == f"`{flag.lstrip('-').replace('-', '_')}`"
    default = DEFAULTS[name]
    assert cells[2] in ({"`" + default + "`"} if default and default != "false" else {"not set", "off"}), (
        f"{flag}: default cell {cells[2]!r}, config says {default!r}"
    )


def test_the_check_fails_on_a_stale_page(tmp_path, monkeypatch, capsys):
    generator = _generator()
    stale = tmp_path / "options.md"
    stale.write_text(generator.render().replace("`--e3p-rounds`", "`--e3p-rnds`"))
    monkeypatch.setattr(generator, "PAGE", stale)
    monkeypatch.setattr(generator, "ROOT", tmp_path)
    assert generator.main(["--check"]) == 1
    assert "out of date" in capsys.readouterr().err
    assert generator.main([]) == 0 and generator.main(["--check"]) == 0


def test_help_texts_are_escaped_for_markdown_and_html():
    cell = _generator()._cell("DIR/<arch>_<dataset>.pth | a*b\nsecond line")
    assert cell == r"DIR/&lt;arch&gt;\_&lt;dataset&gt;.pth \| a\*b<br>second line"


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_is_a_row_of_the_variants_page_with_its_extra(name):
    row = next((line for line in _page("features/variants.md").splitlines() if line.startswith("| ") and f"`{name}`" in line.split("|")[1]), None)
    assert row is not None, f"{name} has no row in docs/features/variants.md"
    extra = VARIANTS[name].extra
    assert (f"`{extra}`" in row) if extra else row.rstrip().endswith("| |"), f"{name}: the row should name the extra {extra or '(none)'}"


@pytest.mark.parametrize("hook", [n for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("pytest_e3p_")])
def test_every_hook_is_documented_with_its_arguments(hook):
    arguments = ", ".join(inspect.signature(getattr(hookspecs, hook)).parameters)
    assert f"### `{hook}({arguments})`" in _page("reference/hooks.md")


@pytest.mark.parametrize("command", sorted(build_parser()._subparsers._group_actions[0].choices))
def test_every_command_is_on_the_command_line_page(command):
    assert f"python -m pytest_e3p {command}" in _page("features/cli.md")


def test_the_readme_keeps_the_two_commands_verbatim():
    assert "    python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/pytest benchmarks/ --device cpu\n" in README
    assert "    python3 -m venv .venv && .venv/bin/pip install -e '.[test,all]' && .venv/bin/python -m pytest tests/ -q\n" in README


def test_every_page_is_in_the_mkdocs_nav_and_every_nav_entry_exists():
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())

    def entries(nav):
        for item in nav:
            value = next(iter(item.values())) if isinstance(item, dict) else item
            yield from entries(value) if isinstance(value, list) else [value]

    in_nav = set(entries(config["nav"]))
    on_disk = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert in_nav == on_disk


_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
_REPO_PATH = re.compile(r"`((?:pytest_e3p|scripts|tests|benchmarks|docs|\.github|\.ci)/[\w./-]*)`")
_MODULE = re.compile(r"`(pytest_e3p(?:\.\w+)+)`")


def _documents() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


@pytest.mark.parametrize("document", _documents(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_links_and_repository_paths_in_the_documentation_exist(document):
    text = document.read_text()
    missing = []
    for target in _LINK.findall(text):
        if "://" not in target and not (document.parent / target).exists():
            missing.append(f"link {target}")
    for path in _REPO_PATH.findall(text):
        if not (ROOT / path).exists():
            missing.append(f"path {path}")
    for module in _MODULE.findall(text):
        base = ROOT / module.replace(".", "/")
        if not (base.with_suffix(".py").exists() or (base / "__init__.py").exists()):
            missing.append(f"module {module}")
    assert not missing, f"{document.relative_to(ROOT)} names what the repository does not have: {missing}"
