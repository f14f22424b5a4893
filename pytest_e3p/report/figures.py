"""matplotlib for the report's PNG plots: optional (the `report` extra), headless, written atomically."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ..storage.results import write_atomic


def pyplot() -> Any:
    """matplotlib.pyplot on the headless Agg backend, or None where matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def save_png(fig: Any, path: Path) -> None:
    """Render, close and write a figure; a full disk never leaves a truncated PNG behind."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    write_atomic(path, buffer.getvalue())
