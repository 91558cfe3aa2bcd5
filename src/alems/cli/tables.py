"""Tables laid out for the terminal's width: identifiers (task, provider, workflow …) are
never cut; other cells wrap; when even that does not fit, each row becomes a block of
`column: value` lines under its identifiers."""

from __future__ import annotations

import sys

from alems import config

PIPE_WIDTH = 200   # no terminal and no $COLUMNS: wide enough for every table


def console(*, stderr: bool = False, **kwargs):
    """A rich console: $COLUMNS (clamped, see config.terminal_columns), else the terminal's
    width, else PIPE_WIDTH. The width is always passed, so rich never reads $COLUMNS raw."""
    from rich.console import Console

    width = config.terminal_columns()
    stream = sys.stderr if stderr else sys.stdout
    if width is None and not stream.isatty():
        width = PIPE_WIDTH
    # rich re-reads $COLUMNS for its size; it sees the clamped value (or none) instead.
    return Console(stderr=stderr, width=width, _environ=config.environ_with_columns(width),
                   **kwargs)


def print_table(con, title: str, columns: list[str], rows: list[list[str]],
                keys: tuple[str, ...] = ("task", "provider", "workflow", "metric")) -> None:
    """Print `rows` as a table that fits `con.width`, else stacked (see the module doc)."""
    from rich.table import Table

    ident = [c in keys for c in columns]
    mins = []   # identifiers whole; other cells wrap at spaces, never inside a word
    for i, c in enumerate(columns):
        cells = [c] + [str(r[i]) for r in rows]
        mins.append(max(len(v) for v in cells) if ident[i]
                    else max((len(w) for v in cells for w in v.split()), default=1))
    # each column: its text, one space of padding either side and a border line
    if sum(mins) + 3 * len(columns) + 1 <= con.width:
        table = Table(title=title, title_justify="left")
        for c, m, k in zip(columns, mins, ident, strict=True):
            table.add_column(c, no_wrap=k, min_width=m, overflow="fold")
        for r in rows:
            table.add_row(*[str(v) for v in r])
        con.print(table)
        return
    con.print(title, style="italic", highlight=False, markup=False)
    for r in rows:
        head = " / ".join(str(v) for v, k in zip(r, ident, strict=True) if k) or "row"
        con.print(f"  {head}", style="bold", highlight=False, markup=False, soft_wrap=True)
        lines, line = [], "   "
        # `column: value` items, packed per line
        for c, v, k in zip(columns, r, ident, strict=True):
            if k:
                continue
            item = f" {c}: {v},"
            if len(line) + len(item) > con.width and len(line) > 3:
                lines.append(line)
                line = "   "
            line += item
        lines.append(line)
        for text in lines:
            con.print(text.rstrip(","), highlight=False, markup=False, soft_wrap=True)
