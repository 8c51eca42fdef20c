"""The one table renderer every ``rnnparity`` table goes through (check's summary, diff's
groups, verify's layers, bench's timings, explain's gates).

Plain text: columns two spaces apart, a dashed rule under the header, trailing spaces
trimmed. Markdown: a pipe table, with ``---:`` under right-aligned columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def render(
    header: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    right: Iterable[int] = (),
    markdown: bool = False,
    rule: bool = True,
) -> str:
    """``header`` and ``rows`` as a table; ``right`` lists the columns aligned right (numbers).

    Every row must have as many cells as ``header``; cells are printed with ``str``. ``rule``
    draws the dashed line under a plain-text header."""
    head = [str(cell) for cell in header]
    body = [[str(cell) for cell in row] for row in rows]
    for number, row in enumerate(body):
        if len(row) != len(head):
            raise ValueError(f"row {number} has {len(row)} cells; the header has {len(head)}: {head}")
    right_aligned = set(right)
    if markdown:
        lines = ["| " + " | ".join(head) + " |"]
        lines.append("|" + "|".join("---:" if i in right_aligned else "---" for i in range(len(head))) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]

    def line(row: list[str]) -> str:
        cells = (cell.rjust(w) if i in right_aligned else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        return "  ".join(cells).rstrip()

    lines = [line(head)]
    if rule:
        lines.append("  ".join("-" * w for w in widths))
    lines += [line(row) for row in body]
    return "\n".join(lines)
