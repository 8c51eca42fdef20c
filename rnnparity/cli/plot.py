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


def _matplotlib() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ImportError("--plot needs matplotlib: pip install -e '.[plot]' (or pip install matplotlib)") from None
    matplotlib.use("Agg")  # files only; never a window
    import matplotlib.pyplot as plt

    return plt


def draw_layout(data: dict[str, Any], path: str | os.PathLike[str]) -> list[tuple[str, str, int, int]]:
    """Write the picture of ``explain_layout(...)`` data to ``path`` (format from its suffix).

    Returns the blocks drawn, ``(weight, gate, first column, end column)``, in drawing order."""
    plt = _matplotlib()
    from matplotlib.patches import Rectangle

    units = int(data["units"])
    gates = list(data["gate_order"])
    panels = [(name, shape) for name, shape in data["shapes"].items() if shape is not None]
    rows_of = [1 if len(shape) == 1 else int(shape[0]) for _, shape in panels]
    width = len(gates) * units
    figure, axes = plt.subplots(
        len(panels),
        1,
        figsize=(max(6.0, 0.45 * width + 2.0), 1.2 + 0.45 * sum(rows_of) + 0.9 * len(panels)),
        gridspec_kw={"height_ratios": [r + 1.2 for r in rows_of]},
        squeeze=False,
    )
    drawn = []
    for axis, (name, shape), rows in zip(axes[:, 0], panels, rows_of):
        for index, gate in enumerate(gates):
            colour = GATE_COLOURS[index % len(GATE_COLOURS)]
            start = index * units
            axis.add_patch(Rectangle((start, 0), units, rows, facecolor=colour, edgecolor="black", linewidth=1.2, alpha=0.85))
            drawn.append((name, gate, start, start + units))
            axis.text(
                start + units / 2,
                -0.12,
                f"{gate}  [{start}:{start + units}]",
                ha="center",
                va="bottom",
                fontsize=9,
                fontweight="bold",
            )
        for column in range(width + 1):
            axis.axvline(column, color="white", linewidth=0.5)
        for row in range(rows + 1):
            axis.axhline(row, xmin=0, xmax=1, color="white", linewidth=0.5)
        label = f"{name}  {tuple(shape)}"
        if name == "bias" and rows == 2:
            label += "  row 0: input, row 1: recurrent"
        axis.set_title(label, loc="left", fontsize=10, pad=2)
        axis.set_xlim(0, width)
        axis.set_ylim(rows + 0.05, -0.8)
        axis.set_xticks([i + 0.5 for i in range(width)], [str(i) for i in range(width)], fontsize=7)
        axis.set_yticks([r + 0.5 for r in range(rows)], [str(r) for r in range(rows)], fontsize=7)
        axis.tick_params(length=0)
        for spine in axis.spines.values():
            spine.set_visible(False)
    kind = data["kind"] + ("" if data["kind"] != "gru" else f" reset_after={data['reset_after']}")
    figure.suptitle(f"Keras {kind}: units={units}, input_dim={data['input_dim']}, gate order {', '.join(gates)}", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return drawn
