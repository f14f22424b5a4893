"""matplotlib for the report's PNG plots: optional (the `report` extra), headless, written atomically.

Every label of a plot is a recorded string (a model, a device, a dataset) drawn as plain text:
mathtext and TeX are off (`PLAIN_TEXT`), so a "$" in a name is a dollar sign, never a parse error."""

from __future__ import annotations

import io
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# the axis of a positive quantity: defined with the sustained-run plot, the lowest layer drawing one
from ..measure.sustained import RELATIVE_BELOW, ValueAxis, value_axis
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


# -- honest intervals and axes ---------------------------------------------------------------


def log_interval(center: float, passes: Sequence[Any]) -> tuple[float, float]:
    """(low, high) of an interval around `center`: x/÷ exp(2 sd of the logs of the positive pass
    values). Energy and latency spread in ratios, not in mJ or ms, so the low end stays above zero
    where center - 2 sd of the linear values would cross it. Fewer than two pass values: no spread
    is claimed, the interval is the point."""
    logs = [math.log(v) for v in passes if isinstance(v, (int, float)) and math.isfinite(v) and v > 0]
    if len(logs) < 2:
        return center, center
    factor = math.exp(2 * statistics.stdev(logs))
    return center / factor, center * factor


__all__ = ["PLAIN_TEXT", "RELATIVE_BELOW", "ValueAxis", "log_interval", "place_labels", "pyplot", "save_png", "value_axis"]


# -- labels that do not overlap --------------------------------------------------------------

# Offsets (points) tried around a point, nearest first: columns left and right of it, rows a line
# apart up to 120 pt away, so a crowd of a dozen names squeezed into a corner finds room in a stack.
_OFFSETS = sorted(
    {(dx, dy) for dx in (-70, -36, -6, 0, 6, 36, 70) for dy in range(-120, 121, 8)} - {(0, 0)},
    key=lambda o: (math.hypot(*o), -o[0], -o[1]),
)


def place_labels(ax: Any, points: Sequence[tuple[float, float, str]], fontsize: float = 7) -> tuple[list[Any], list[str]]:
    """Name each point (x, y, text) where its label overlaps no marker nor label placed before and stays inside
    the axes, trying `_OFFSETS` from the nearest; a leader line joins a label set off its point. A
    point with no free place gets a number there instead, and its "number: text" is returned for a
    key beside the plot. Call it after the figure's layout and limits are final: offsets are in
    points, and a later tight_layout would move the points under the labels.

    The boxes are worked out in display pixels from each text's measured size (one draw of the
    text, not one per try). Returns (the Text objects drawn, the key lines)."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    px = fig.dpi / 72.0
    # the markers are obstacles too: a name over another point hides it
    marker = 4 * px
    placed: list[tuple[float, float, float, float]] = []
    for x, y, _ in points:
        mx, my = ax.transData.transform((x, y))
        placed.append((mx - marker, my - marker, mx + marker, my + marker))
    legend = ax.get_legend()
    if legend is not None:  # and the legend's box
        b = legend.get_window_extent(renderer)
        placed.append((b.x0, b.y0, b.x1, b.y1))
    texts: list[Any] = []
    key: list[str] = []

    def size(text: str) -> tuple[float, float]:
        probe = ax.text(0, 0, text, fontsize=fontsize, transform=None)
        box = probe.get_window_extent(renderer)
        probe.remove()
        return box.width, box.height

    def spot(text: str, x: float, y: float) -> tuple[float, float, str, str] | None:
        w, h = size(text)
        ax_, ay_ = ax.transData.transform((x, y))
        for dx, dy in _OFFSETS:
            ha = "left" if dx > 0 else "right" if dx < 0 else "center"
            va = "bottom" if dy > 0 else "top" if dy < 0 else "center"
            tx, ty = ax_ + dx * px, ay_ + dy * px
            x0 = tx if ha == "left" else tx - w if ha == "right" else tx - w / 2
            y0 = ty if va == "bottom" else ty - h if va == "top" else ty - h / 2
            box = (x0 - 1, y0 - 1, x0 + w + 1, y0 + h + 1)  # a pixel of air around each
            inside = frame.x0 <= box[0] and box[2] <= frame.x1 and frame.y0 <= box[1] and box[3] <= frame.y1
            if inside and not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
                placed.append(box)
                return dx, dy, ha, va
        return None

    def draw(text: str, x: float, y: float, where: tuple[float, float, str, str]) -> None:
        dx, dy, ha, va = where
        far = abs(dx) > 12 or abs(dy) > 12
        arrow = {"arrowstyle": "-", "color": "0.6", "lw": 0.6, "shrinkA": 0, "shrinkB": 3} if far else None
        texts.append(ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize, ha=ha, va=va, arrowprops=arrow, zorder=4))

    for x, y, text in points:
        where = spot(text, x, y)
        if where is None:
            number = str(len(key) + 1)
            key.append(f"{number}: {text}")
            text = number
            # nowhere free even for a number: it goes beside the point, never unnamed
            where = spot(number, x, y) or (3.0, 3.0, "left", "bottom")
        draw(text, x, y, where)
    return texts, key
