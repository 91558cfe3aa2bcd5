"""How the report's blocks look: HTML (one stylesheet for the browser and for paged media)
and the PDF WeasyPrint typesets from that HTML on A4 pages."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from alems.analysis.blocks import Block, Folded
from alems.atomic_io import atomic_target
from alems.errors import AlemsError

# ------------------------------------------------------------------------------ HTML
# One stylesheet for the browser and for paged media. The print rules are what WeasyPrint
# lays the PDF out with: A4 pages numbered at the foot; a table's header row repeated on each
# page it spans, under a running "(continued)" caption; a heading or caption never last on a
# page; a table split only after its first three rows and before its last two; a short table
# (SHORT_TABLE_ROWS rows or fewer) or a figure moved whole to the next page.
SHORT_TABLE_ROWS = 12
_CSS = """body{font-family:system-ui,Arial,sans-serif;color:#222}
@media screen{body{max-width:1000px;margin:2em auto}}
table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:0.85em}
th,td{border:1px solid #bbb;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#eee}caption{caption-side:top;text-align:left;font-weight:600;padding:4px 0}
.warn{background:#fff4d6;border-left:4px solid #e6a400;padding:4px 8px;margin:4px 0}
figure{margin:1em 0}img{max-width:100%}figcaption{font-size:0.9em;color:#444}
@page{size:A4;margin:16mm 14mm 18mm;font-family:system-ui,Arial,sans-serif;
@top-left{content:string(table-continued,start);font-size:8pt;color:#555}
@bottom-center{content:"A-LEMS report — page " counter(page) " of " counter(pages);
font-size:7pt;color:grey}}
@media print{body{font-size:9pt}h1{font-size:16pt}h2{font-size:12.5pt;margin:1.2em 0 0.5em}
thead{display:table-header-group}tr,figure,.warn,table.short{break-inside:avoid}
h1,h2,caption{break-after:avoid}
tbody tr:nth-child(-n+2),tbody tr:nth-last-child(2){break-after:avoid}
tbody tr:first-child{string-set:table-continued attr(data-continued)}
.table-end{string-set:table-continued ""}td{overflow-wrap:anywhere}
table.ids td{overflow-wrap:break-word}img{max-height:22cm}}
span.id{white-space:nowrap}details summary{cursor:pointer}
details pre{white-space:pre-wrap;font-size:0.95em;margin:4px 0 0}
"""
# In a table of names and ids a line breaks between words only: a word up to ID_NOWRAP_CHARS
# long is kept whole (hyphens included); a longer one (a path, a long option) may break
# after these characters, and only where even that does not fit, anywhere.
ID_NOWRAP_CHARS = 40
_ID_BREAKS = ("/", "_", "=", ",")


def _id_word(word: str) -> str:
    text = html.escape(word)
    if len(word) <= ID_NOWRAP_CHARS:
        return f'<span class="id">{text}</span>'
    for ch in _ID_BREAKS:
        text = text.replace(ch, ch + "<wbr>")
    return text


def _cell_html(c, identifiers: bool) -> str:
    if isinstance(c, Folded):
        return (f"<details><summary>{html.escape(c.short)}</summary>"
                f"<pre>{html.escape(c.full)}</pre></details>")
    if identifiers:
        return " ".join(_id_word(w) for w in str(c).split(" "))
    return html.escape(str(c))


def render_html(blocks: list[Block]) -> str:
    title = next((b.text for b in blocks if b.kind == "h1"), "A-LEMS report")
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"]
    e = html.escape
    for b in blocks:
        if b.kind in ("h1", "h2"):
            parts.append(f"<{b.kind}>{e(b.text)}</{b.kind}>")
        elif b.kind == "p":
            parts.append(f"<p>{e(b.text)}</p>")
        elif b.kind == "warn":
            parts.append(f'<div class="warn">⚠ {e(b.text)}</div>')
        elif b.kind == "table":
            head = "".join(f"<th>{e(c)}</th>" for c in b.columns)
            rows = b.rows or [["–"] * len(b.columns)]
            cont = f' data-continued="{e(b.text)} (continued)"'
            body = "".join(f"<tr{cont if i == 0 else ''}>"
                           + "".join(f"<td>{_cell_html(c, b.identifiers)}</td>" for c in r)
                           + "</tr>" for i, r in enumerate(rows))
            classes = (["short"] if len(rows) <= SHORT_TABLE_ROWS else []) + (
                ["ids"] if b.identifiers else [])
            short = f' class="{" ".join(classes)}"' if classes else ""
            parts.append(f"<table{short}><caption>{e(b.text)}</caption><thead><tr>{head}</tr>"
                         f'</thead><tbody>{body}</tbody></table><div class="table-end"></div>')
        elif b.kind == "figure" and b.png is not None:
            data = base64.b64encode(b.png).decode("ascii")
            parts.append(f'<figure><img alt="{e(b.text)}" src="data:image/png;base64,{data}">'
                         f"<figcaption>{e(b.text)}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


# ------------------------------------------------------------------------------- PDF
def render_pdf(blocks: list[Block], output: str | Path) -> int:
    """Typeset the HTML report on A4 pages (WeasyPrint); returns the number of pages."""
    try:
        from weasyprint import HTML
    except ImportError:
        raise AlemsError("a PDF report needs weasyprint; install it with "
                         "`pip install 'alems[reports]'`, or write .html") from None
    except OSError as exc:   # the Python package is there, Pango is not
        raise AlemsError(f"weasyprint cannot load Pango ({exc}); install it, e.g. `apt-get "
                         "install libpango-1.0-0 libpangoft2-1.0-0`, or write .html") from None
    document = HTML(string=render_html(blocks)).render()
    document.write_pdf(output)
    return len(document.pages)


def write_report(blocks: list[Block], output: str | Path) -> Path:
    output = Path(output)
    suffix = output.suffix.lower()
    if suffix not in (".html", ".htm", ".pdf"):
        raise AlemsError(f"--output {output}: give a name ending in .html or .pdf")
    with atomic_target(output) as tmp:   # the folder was checked, never created here
        if suffix == ".pdf":
            render_pdf(blocks, tmp)
        else:
            tmp.write_text(render_html(blocks), encoding="utf-8")
    return output
