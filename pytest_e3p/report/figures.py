"""matplotlib for the report's PNG plots: optional (the `report` extra), headless, written atomically.

Every label of a plot is a recorded string (a model, a device, a dataset) drawn as plain text:
mathtext and TeX are off (`PLAIN_TEXT`), so a "$" in a name is a dollar sign, never a parse error."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ..storage.results import write_atomic

# text.parse_math (matplotlib >= 3.5): Text objects read it when they are made
PLAIN_TEXT: dict[Any, Any] = {"text.parse_math": False, "text.usetex": False}


def pyplot() -> Any:
    """matplotlib.pyplot on the headless Agg backend, with labels as plain text (`PLAIN_TEXT`: the
    report draws no formula), or None where matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    matplotlib.rcParams.update(PLAIN_TEXT)
    return plt


def save_png(fig: Any, path: Path) -> None:
    """Render, close and write a figure; a full disk never leaves a truncated PNG behind."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    write_atomic(path, buffer.getvalue())
