"""The report's content, built once and rendered as HTML (and PDF from it), and as the
paper pack's LaTeX / CSV tables and vector figures: a list of blocks, each a heading,
paragraph, warning, table or figure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Folded:
    """A table cell shown short, with its full text one click away (<details> in HTML);
    the LaTeX and CSV tables carry the short text."""
    short: str
    full: str

    def __str__(self) -> str:
        return self.short


@dataclass
class Block:
    kind: str                     # h1 | h2 | p | warn | table | figure
    text: str = ""
    columns: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)   # str, or Folded
    png: bytes | None = None
    figure: Any = None            # the matplotlib Figure behind `png` (vector export)
    identifiers: bool = False     # a table of names and ids: break lines between words only
    name: str = ""                # the file name of a table or figure in the paper pack
