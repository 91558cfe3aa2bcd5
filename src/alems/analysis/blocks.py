"""The report's content, built once and rendered as HTML (and PDF from it): a list of
blocks, each a heading, paragraph, warning, table or figure."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Block:
    kind: str                     # h1 | h2 | p | warn | table | figure
    text: str = ""
    columns: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    png: bytes | None = None
