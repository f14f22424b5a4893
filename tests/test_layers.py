"""The package's layers: a module imports only from its own layer and the layers below it, so the
folder tree tells a reader where a decision can be made (docs/contributing.md lists the layers)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pytest_e3p"

# bottom first; one entry per top-level module or subpackage of pytest_e3p
LAYERS = [
    {"__init__", "text", "lazy", "strenum", "metrics", "_data"},
    {"storage"},
    {"hardware"},
    {"models"},
    {"measure"},
    {"variants"},
    {"remote"},  # a board measured over SSH: its agent, the transport, the devices file
    {"gate"},
    {"config"},
    {"run"},
    {"report", "export"},  # export: the results in other tools' formats (CSV, OpenMetrics, MLflow, Bencher)
    {"plugin"},
    {"finetune", "cli", "__main__", "doctor"},
]
LEVEL = {name: i for i, names in enumerate(LAYERS) for name in names}
# (importer, imported) pairs allowed upward, each with its reason
EXEMPT = {("__init__", "models"): "register_models() registers EdgeViT with timm when timm is first imported: a hook, not a dependency"}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        yield path, parts


def _imported(path: Path, parts: tuple[str, ...]):
    """The top-level pytest_e3p names (module or subpackage) each relative or absolute import reaches."""
    package = list(parts[:-1]) if parts[-1] != "__init__" else list(parts[:-1])
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "pytest_e3p":
                target = node.module.split(".")[1:]
            else:
                continue
            if target:
                yield node.lineno, target[0]
            else:  # `from .. import x, y`: each name is a module (or a name of pytest_e3p/__init__)
                for alias in node.names:
                    yield node.lineno, alias.name if alias.name in LEVEL else "__init__"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                names = alias.name.split(".")
                if names[0] == "pytest_e3p" and len(names) > 1:
                    yield node.lineno, names[1]


def test_every_module_has_a_layer():
    tops = {parts[0] for _, parts in _modules()}
    assert tops <= set(LEVEL), f"add these to LAYERS (and to docs/contributing.md): {sorted(tops - set(LEVEL))}"


@pytest.mark.parametrize("path,parts", list(_modules()), ids=lambda v: "/".join(v) if isinstance(v, tuple) else "")
def test_no_module_imports_a_layer_above_its_own(path, parts):
    own = LEVEL[parts[0]]
    upward = [
        f"line {line}: {target}" for line, target in _imported(path, parts) if target in LEVEL and LEVEL[target] > own and (parts[0], target) not in EXEMPT
    ]
    assert not upward, f"{path.relative_to(PACKAGE.parent)} ({parts[0]}) imports from a layer above it: {', '.join(upward)}"
