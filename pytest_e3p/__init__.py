"""pytest-e3p: the E3P-ViT energy-efficiency pipeline as a pytest plugin."""

import sys

__version__ = "0.1.0"


def register_models() -> None:
    """Register pytest-e3p's timm models (EdgeViT-XXS/XS/S) now. Imports timm and torch."""
    from .models import edgevit  # noqa: F401  (registers on import; a second call costs nothing)


# Registration without the import cost. pytest imports this package in every project of an
# environment that has the plugin installed (entry point pytest_e3p.plugin), and importing timm
# (and with it torch) takes seconds. So EdgeViT is registered with timm only once timm is there:
# - timm already imported: register now (torch is loaded already, so this costs milliseconds);
# - otherwise: a finder at the front of sys.meta_path waits for `import timm` (any form, `import
#   timm.models` too, imports `timm` first), lets the normal finders find and load it, registers
#   right after timm's own __init__ has run, and only then takes itself out of sys.meta_path. It
#   answers for no other module name. A failed registration warns and never breaks `import timm`.
# Either way `import pytest_e3p` alone imports neither timm nor torch, and after it
# `timm.create_model("edgevit_xxs")` works. zoo calls register_models() too, as a backstop.


class _RegisterAfterTimmLoader:
    """Wraps timm's own loader for the one import; restored on the module afterwards."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        try:
            self.loader.exec_module(module)
        finally:
            module.__loader__ = self.loader
            if getattr(module, "__spec__", None) is not None:
                module.__spec__.loader = self.loader
        _remove_hook()
        _register_quietly()

    def __getattr__(self, name):  # anything else (get_resource_reader, is_package, ...) is timm's loader's
        return getattr(object.__getattribute__(self, "loader"), name)


class _TimmImportHook:
    """A meta path finder that answers only for the top-level `timm` package."""

    pytest_e3p_timm_hook = True  # found by this mark, not by class: the package may be imported anew

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "timm":
            return None
        # Stay installed until timm has actually run: importlib.util.find_spec("timm") (an
        # "is timm installed?" check) comes here too without importing anything.
        for finder in list(sys.meta_path):
            if getattr(finder, "pytest_e3p_timm_hook", False):
                continue
            find_spec = getattr(finder, "find_spec", None)
            spec = find_spec(fullname, path, target) if find_spec is not None else None
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _RegisterAfterTimmLoader(spec.loader)
                return spec
        return None


def _register_quietly() -> None:
    try:
        register_models()
    except Exception as exc:  # an incompatible timm: say so, but leave the user's `import timm` working
        import warnings

        warnings.warn(f"pytest-e3p could not register EdgeViT with timm: {type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=2)


def _remove_hook() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "pytest_e3p_timm_hook", False)]


if "timm" in sys.modules:
    _register_quietly()
elif not any(getattr(f, "pytest_e3p_timm_hook", False) for f in sys.meta_path):
    sys.meta_path.insert(0, _TimmImportHook())
