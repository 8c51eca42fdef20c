"""``rnnparity explain --plot``: kernel, recurrent_kernel and bias drawn as coloured gate blocks.

The picture people draw on whiteboards, from the same data as the explain table
(:func:`rnnparity.layout.explain_layout`): one panel per weight, matrix cells in a grid
(rows: ``input_dim`` for ``kernel``, ``units`` for ``recurrent_kernel``, the bias rows),
columns coloured by gate, each block labelled with its gate and column range. Needs
matplotlib (``pip install -e ".[plot]"``); imported only when a plot is asked for.
"""

from __future__ import annotations

import os
from typing import Any

# One colour per gate position (colour-blind-safe Okabe-Ito palette).
GATE_COLOURS = ("#E69F00", "#56B4E9", "#009E73", "#CC79A7")

DPI = 110
MAX_WIDTH_PX, MAX_HEIGHT_PX = 2000, 1400  # any size of layer fits a screen, text stays at its point size
MAX_COLUMNS_DRAWN = 48  # wider weights: one block per gate, no per-column grid or ticks
MAX_ROWS_DRAWN = 8  # taller weights: the panel keeps this height, rows are not ticked one by one
CELL_INCHES = 0.45


def _matplotlib() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ImportError("--plot needs matplotlib: pip install -e '.[plot]' (or pip install matplotlib)") from None
    matplotlib.use("Agg")  # files only; never a window
    import matplotlib.pyplot as plt

    return plt


def figure_size(columns: int, panel_rows: list[int]) -> tuple[float, float]:
    """Width and height in inches: a cell per column and row up to the caps, then grouped."""
    shown_rows = sum(min(rows, MAX_ROWS_DRAWN) for rows in panel_rows)
    width = max(6.0, CELL_INCHES * min(columns, MAX_COLUMNS_DRAWN) + 2.0)
    height = 1.2 + CELL_INCHES * shown_rows + 0.9 * len(panel_rows)
    return min(width, MAX_WIDTH_PX / DPI), min(height, MAX_HEIGHT_PX / DPI)


def draw_layout(data: dict[str, Any], path: str | os.PathLike[str]) -> list[tuple[str, str, int, int]]:
    """Write the picture of ``explain_layout(...)`` data to ``path`` (format from its suffix).

    Small layers get a cell per matrix entry; wide or tall ones one block per gate (units
    grouped), so the picture stays within MAX_WIDTH_PX x MAX_HEIGHT_PX with readable labels.
    Returns the blocks drawn, ``(weight, gate, first column, end column)``, in drawing order."""
    plt = _matplotlib()
    from matplotlib.patches import Rectangle

    units = int(data["units"])
    gates = list(data["gate_order"])
    panels = [(name, shape) for name, shape in data["shapes"].items() if shape is not None]
    rows_of = [1 if len(shape) == 1 else int(shape[0]) for _, shape in panels]
    width = len(gates) * units
    grouped = width > MAX_COLUMNS_DRAWN
    figure, axes = plt.subplots(
        len(panels),
        1,
        figsize=figure_size(width, rows_of),
        gridspec_kw={"height_ratios": [min(r, MAX_ROWS_DRAWN) + 1.2 for r in rows_of]},
        squeeze=False,
    )
    drawn = []
    for axis, (name, shape), rows in zip(axes[:, 0], panels, rows_of):
        scale = max(1.0, rows / MAX_ROWS_DRAWN)  # a tall panel keeps its drawn height; margins scale with it
        for index, gate in enumerate(gates):
            colour = GATE_COLOURS[index % len(GATE_COLOURS)]
            start = index * units
            axis.add_patch(Rectangle((start, 0), units, rows, facecolor=colour, edgecolor="black", linewidth=1.2, alpha=0.85))
            drawn.append((name, gate, start, start + units))
            axis.text(
                start + units / 2,
                -0.12 * scale,
                f"{gate}  [{start}:{start + units}]",
                ha="center",
                va="bottom",
                fontsize=9,
                fontweight="bold",
            )
        if not grouped:
            for column in range(width + 1):
                axis.axvline(column, color="white", linewidth=0.5)
        if rows <= MAX_ROWS_DRAWN:
            for row in range(rows + 1):
                axis.axhline(row, xmin=0, xmax=1, color="white", linewidth=0.5)
        label = f"{name}  {tuple(shape)}"
        if name == "bias" and rows == 2:
            label += "  row 0: input, row 1: recurrent"
        axis.set_title(label, loc="left", fontsize=10, pad=2)
        axis.set_xlim(0, width)
        axis.set_ylim(rows + 0.05 * scale, -0.8 * scale)
        if grouped:
            boundaries = [i * units for i in range(len(gates) + 1)]
            axis.set_xticks(boundaries, [str(b) for b in boundaries], fontsize=7)
        else:
            axis.set_xticks([i + 0.5 for i in range(width)], [str(i) for i in range(width)], fontsize=7)
        if rows <= MAX_ROWS_DRAWN:
            axis.set_yticks([r + 0.5 for r in range(rows)], [str(r) for r in range(rows)], fontsize=7)
        else:
            axis.set_yticks([0.5, rows - 0.5], ["0", str(rows - 1)], fontsize=7)
        axis.tick_params(length=0)
        for spine in axis.spines.values():
            spine.set_visible(False)
    kind = data["kind"] + ("" if data["kind"] != "gru" else f" reset_after={data['reset_after']}")
    title = f"Keras {kind}: units={units}, input_dim={data['input_dim']}, gate order {', '.join(gates)}"
    if grouped:
        title += f"\n(one block per gate: columns [k*{units}:(k+1)*{units}] for gate k)"
    figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return drawn
