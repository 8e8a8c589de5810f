"""The report as one self-contained HTML page: inline CSS, charts as inline SVG, no script and nothing
fetched, so it opens anywhere (a browser offline, an attachment). Every piece of text is escaped."""

from __future__ import annotations

from html import escape

from netprobe.history.report import CrossReport, Figure
from netprobe.render import CodeBlock, TableBlock, TextBlock

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f; margin: 0;
       background: #f6f6f7; }
header { background: #20324d; color: #fff; padding: 18px 28px 14px; }
header h1 { margin: 0 0 4px; font-size: 22px; }
header p { margin: 2px 0; color: #d6dde8; font-size: 13px; }
nav { padding: 8px 28px; background: #e9ecf1; font-size: 13px; }
nav a { color: #20324d; margin-right: 16px; text-decoration: none; }
main { padding: 4px 28px 40px; }
section { background: #fff; border: 1px solid #dcdfe4; border-radius: 6px; margin: 18px 0; padding: 12px 18px; }
h2 { font-size: 17px; margin: 4px 0 10px; color: #20324d; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 12.5px; margin: 6px 0; }
th, td { border: 1px solid #dcdfe4; padding: 3px 8px; vertical-align: top; }
th { background: #eef1f5; font-weight: 600; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr:nth-child(even) td { background: #fafbfc; }
table th.paper, table td.paper { background: #fff8e6; color: #6b5300; }
td:first-child { white-space: nowrap; }
p.caption, figcaption { color: #555; font-size: 12.5px; margin: 4px 0 10px; }
p.note { color: #8a5a00; }
code { font: 12px ui-monospace, Menlo, Consolas, monospace; word-break: break-all; }
.figures { display: flex; flex-wrap: wrap; gap: 14px; }
figure { margin: 6px 0; }
"""
GROUP = " · "  # in a column header, between the group it belongs to and its own name
HEADINGS = {"fused_stages": "Fused-MBConv stages across machines", "speeds": "Speed of every spec measured",
            "why": "Why: roofline and time by op kind", "machines": "Machines", "runs": "Runs in this report"}


def html_page(cross: CrossReport, meta: list[str]) -> str:
    """The whole page: a header with `meta` lines, then a section per table with its charts."""
    intro = [b for b in cross.report.blocks if not isinstance(b, TableBlock)]
    tables = {b.name: b for b in cross.report.tables}
    sections = []
    for name in ("fused_stages", "speeds", "why", "machines", "runs"):
        figures = [f for f in cross.figures if f.section == name]
        if name not in tables and not figures:
            continue
        body = [_figures(figures)] if figures else []
        if name in tables:
            body.append(table_html(tables[name]))
        sections.append((name, "".join(body)))
    nav = "".join(f'<a href="#{name}">{escape(HEADINGS[name])}</a>' for name, _ in sections)
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{escape(cross.title)}</title><style>{CSS}</style></head><body>",
             f"<header><h1>{escape(cross.title)}</h1>", *(f"<p>{escape(line)}</p>" for line in meta),
             *(_block(b) for b in intro), "</header>", f"<nav>{nav}</nav><main>"]
    parts += [f'<section id="{name}"><h2>{escape(HEADINGS[name])}</h2>{body}</section>' for name, body in sections]
    parts.append("</main></body></html>\n")
    return "\n".join(parts)


def table_html(block: TableBlock) -> str:
    """A table: escaped cells as the terminal shows them, numbers right-aligned, the paper's columns marked."""
    def cls(col) -> str:
        kinds = (["num"] if col.numeric else []) + (["paper"] if "paper" in col.header.lower() else [])
        return f' class="{" ".join(kinds)}"' if kinds else ""

    head = _header(block.columns, cls)
    cells = [(f"<td{cls(c)}>", c.cell) for c in block.columns]  # each column's tag made once, not per cell
    rows = "".join("<tr>" + "".join(f"{tag}{escape(cell(r))}</td>" for tag, cell in cells) + "</tr>"
                   for r in block.records)
    caption = f'<p class="caption">{escape(block.caption)}</p>' if block.caption else ""
    if not block.records:
        return f'<p class="caption">{escape(block.title)}: nothing to show.</p>'
    return f'<div class="scroll"><table><thead>{head}</thead><tbody>{rows}</tbody></table></div>{caption}'


def _header(columns, cls) -> str:
    """The header row; columns headed 'group · name' get a row above, the group spanning its columns."""
    parts = [c.header.rsplit(GROUP, 1) if GROUP in c.header else [None, c.header] for c in columns]
    if not any(group for group, _ in parts):
        return "<tr>" + "".join(f"<th{cls(c)}>{escape(c.header)}</th>" for c in columns) + "</tr>"
    top, bottom, i = [], [], 0
    while i < len(columns):
        group, name = parts[i]
        if group is None:
            top.append(f'<th rowspan="2"{cls(columns[i])}>{escape(name)}</th>')
            i += 1
            continue
        span = 1
        while i + span < len(columns) and parts[i + span][0] == group:
            span += 1
        top.append(f'<th colspan="{span}"{cls(columns[i])}>{escape(group)}</th>')
        bottom += [f"<th{cls(c)}>{escape(parts[j][1])}</th>" for j, c in enumerate(columns[i:i + span], start=i)]
        i += span
    return f"<tr>{''.join(top)}</tr><tr>{''.join(bottom)}</tr>"


def _figures(figures: list[Figure]) -> str:
    def one(f: Figure) -> str:
        caption = f"<figcaption>{escape(f.caption)}</figcaption>" if f.caption else ""
        return f'<figure aria-label="{escape(f.title)}">{f.svg}{caption}</figure>'

    return '<div class="figures">' + "".join(one(f) for f in figures) + "</div>"


def _block(block: TextBlock | CodeBlock) -> str:
    if isinstance(block, CodeBlock):
        return f"<p>{escape(block.label)}<code>{escape(block.text)}</code></p>"
    return f'<p class="{"note" if block.style == "yellow" else "text"}">{escape(block.text)}</p>'
