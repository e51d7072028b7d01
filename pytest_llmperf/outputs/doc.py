"""A tiny document model (headings, paragraphs, tables, images) rendered both to Markdown
(summary.md) and to self-contained HTML (report.html), so the two never drift apart."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Align = Literal["left", "right", "center"]


@dataclass
class Heading:
    level: int
    text: str
    anchor: str = ""


@dataclass
class Para:
    text: str
    #: a verdict (or other class) to colour the paragraph in HTML
    css: str = ""


@dataclass
class BulletList:
    items: list[str]


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    align: list[Align] = field(default_factory=list)
    #: one CSS class per row (the verdict), for HTML colouring
    row_classes: list[str] = field(default_factory=list)
    caption: str = ""

    def aligns(self) -> list[Align]:
        return [self.align[i] if i < len(self.align) else "left" for i in range(len(self.headers))]


@dataclass
class Image:
    path: Path
    alt: str


@dataclass
class Link:
    """A paragraph ending in a link to a file beside this one: ``md_href`` from the
    Markdown rendering, ``html_href`` from the HTML one."""

    before: str
    text: str
    md_href: str
    html_href: str


Block = Heading | Para | BulletList | Table | Image | Link


# -- markdown ----------------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table_markdown(table: Table) -> list[str]:
    """A pipe table padded like llama-bench's ``-o md`` output."""
    cells = [[_md_cell(h) for h in table.headers]] + [
        [_md_cell(c) for c in row] for row in table.rows
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(table.headers))]
    aligns = table.aligns()

    def fmt_row(row: list[str]) -> str:
        parts = []
        for text, width, align in zip(row, widths, aligns, strict=True):
            parts.append(text.rjust(width) if align == "right" else text.ljust(width))
        return "| " + " | ".join(parts) + " |"

    rule = []
    for width, align in zip(widths, aligns, strict=True):
        dashes = "-" * max(width, 3)
        if align == "right":
            dashes = dashes[:-1] + ":"
        elif align == "center":
            dashes = ":" + dashes[1:-1] + ":"
        rule.append(dashes)
    lines = [fmt_row(cells[0]), "| " + " | ".join(rule) + " |"]
    lines += [fmt_row(r) for r in cells[1:]]
    return lines


def render_markdown(blocks: Sequence[Block], *, image_base: Path | None = None) -> str:
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Para):
            out += [block.text, ""]
        elif isinstance(block, BulletList):
            out += [f"- {item}" for item in block.items] + [""]
        elif isinstance(block, Link):
            out += [f"{block.before}[{block.text}]({block.md_href})", ""]
        elif isinstance(block, Table):
            if block.caption:
                out += [block.caption, ""]
            out += [*table_markdown(block), ""]
        else:
            rel = block.path.name if image_base is None else _relpath(block.path, image_base)
            out += [f"![{block.alt}]({rel})", ""]
    while out and not out[-1]:
        out.pop()
    return "\n".join(out) + "\n"


def _relpath(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.as_posix()


# -- html --------------------------------------------------------------------------------

_CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif;
       margin: 24px auto; max-width: 1500px; padding: 0 16px; color: #1f2328;
       line-height: 1.45; }
h1 { font-size: 1.6em; border-bottom: 2px solid #d0d7de; padding-bottom: .3em; }
h2 { font-size: 1.3em; margin-top: 1.8em; border-bottom: 1px solid #d0d7de;
     padding-bottom: .2em; }
h3 { font-size: 1.08em; margin-top: 1.4em; font-family: ui-monospace, Menlo, Consolas,
     "DejaVu Sans Mono", monospace; }
table { border-collapse: collapse; margin: .6em 0 1.2em; font-size: 13px; }
caption { text-align: left; font-weight: 600; padding-bottom: .3em; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; white-space: nowrap; }
th { background: #f6f8fa; white-space: nowrap; }
td.r, th.r { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
div.table { overflow-x: auto; }
td.c, th.c { text-align: center; }
tr.regressed td, tr.error td { background: #ffebe9; }
tr.improved td { background: #ddf4ff; }
tr.inconclusive td, tr.mismatch td, tr.new td { background: #fff8c5; }
p.regressed, p.error { color: #c62828; font-weight: 600; }
p.note { color: #57606a; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; height: auto; border: 1px solid #d0d7de; }
figcaption { color: #57606a; font-size: 13px; }
code { font-family: ui-monospace, Menlo, Consolas, "DejaVu Sans Mono", monospace; }
"""

#: counts the images the browser decoded; a headless browser's --dump-dom shows it
_SCRIPT = """
window.addEventListener("load", function () {
  var n = 0;
  for (var i = 0; i < document.images.length; i++) {
    var img = document.images[i];
    if (img.complete && img.naturalWidth > 0) { n++; }
  }
  document.body.setAttribute("data-images-loaded", String(n));
  document.title = document.title + " (" + n + " plots)";
});
"""


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _td_class(align: Align) -> str:
    return {"right": ' class="r"', "center": ' class="c"', "left": ""}[align]


def table_html(table: Table) -> list[str]:
    aligns = table.aligns()
    out = ['<div class="table"><table>']
    if table.caption:
        out.append(f"<caption>{_esc(table.caption)}</caption>")
    out.append(
        "<thead><tr>"
        + "".join(
            f"<th{_td_class(a)}>{_esc(h)}</th>" for h, a in zip(table.headers, aligns, strict=True)
        )
        + "</tr></thead>"
    )
    out.append("<tbody>")
    for i, row in enumerate(table.rows):
        cls = table.row_classes[i] if i < len(table.row_classes) else ""
        attr = f' class="{_esc(cls)}"' if cls else ""
        out.append(
            f"<tr{attr}>"
            + "".join(f"<td{_td_class(a)}>{_esc(c)}</td>" for c, a in zip(row, aligns, strict=True))
            + "</tr>"
        )
    out.append("</tbody></table></div>")
    return out


def png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def render_html(blocks: Sequence[Block], *, title: str) -> str:
    body: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            anchor = f' id="{_esc(block.anchor)}"' if block.anchor else ""
            body.append(f"<h{block.level}{anchor}>{_esc(block.text)}</h{block.level}>")
        elif isinstance(block, Para):
            cls = f' class="{_esc(block.css)}"' if block.css else ""
            body.append(f"<p{cls}>{_esc(block.text)}</p>")
        elif isinstance(block, BulletList):
            body.append("<ul>" + "".join(f"<li>{_esc(i)}</li>" for i in block.items) + "</ul>")
        elif isinstance(block, Link):
            link = f'<a href="{_esc(block.html_href)}">{_esc(block.text)}</a>'
            body.append(f"<p>{_esc(block.before)}{link}</p>")
        elif isinstance(block, Table):
            body += table_html(block)
        else:
            body.append(
                f'<figure><img src="{png_data_uri(block.path)}" alt="{_esc(block.alt)}">'
                f"<figcaption>{_esc(block.alt)}</figcaption></figure>"
            )
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_esc(title)}</title>",
            f"<style>{_CSS}</style>",
            "</head>",
            "<body>",
            *body,
            f"<script>{_SCRIPT}</script>",
            "</body>",
            "</html>",
            "",
        ]
    )
