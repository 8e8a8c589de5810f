"""Charts as inline SVG text, drawn here (no plotting library, nothing fetched): an x-y chart on
log or linear axes with points and lines, and horizontal stacked bars. Every piece of text is
escaped; knows nothing about networks."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape

PALETTE = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974",
           "#64b5cd", "#2f4b7c", "#a05195")
FONT = 'font-family="system-ui, sans-serif"'
MAX_TICKS = 10  # labels on one axis
_SI = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def tick_text(value: float) -> str:
    """1e9 -> '1G', 0.01 -> '0.01', 250 -> '250'."""
    for scale, suffix in _SI:
        if abs(value) >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


@dataclass
class Axis:
    """One axis: its label and range, logarithmic unless said otherwise."""

    label: str
    lo: float
    hi: float
    log: bool = True

    @classmethod
    def around(cls, label: str, values: list[float], log: bool = True, pad: float = 1.6) -> Axis:
        """An axis spanning `values` with some room (a factor on a log axis, a share of the span on a linear one)."""
        known = [v for v in values if v is not None and math.isfinite(v) and (v > 0 or not log)] or [1.0]
        lo, hi = min(known), max(known)
        if log:
            return cls(label, lo / pad, hi * pad, True)
        span = (hi - lo) or abs(hi) or 1.0
        return cls(label, min(0.0, lo - 0.05 * span), hi + 0.08 * span, False)

    def frac(self, value: float) -> float:
        """Where `value` lies on the axis, 0 at lo and 1 at hi."""
        if self.log:
            value = max(value, self.lo * 1e-3)
            return (math.log10(value) - math.log10(self.lo)) / (math.log10(self.hi) - math.log10(self.lo))
        return (value - self.lo) / ((self.hi - self.lo) or 1.0)

    def ticks(self) -> list[float]:
        """Where the axis is labelled: at most MAX_TICKS places (every few decades on a long log axis)."""
        if self.log:
            first, last = math.floor(math.log10(self.lo)), math.ceil(math.log10(self.hi))
            every = max(1, math.ceil((last - first + 1) / MAX_TICKS))
            decades = [10.0**k for k in range(math.ceil(first / every) * every, last + 1, every)
                       if self.lo <= 10.0**k <= self.hi]
            if len(decades) >= 2:
                return decades
            return [m * 10.0**k for k in range(first, last + 1) for m in (1, 2, 5) if self.lo <= m * 10.0**k <= self.hi]
        step = 10 ** math.floor(math.log10((self.hi - self.lo) / 4 or 1))
        step *= next((m for m in (1, 2, 5, 10) if (self.hi - self.lo) / (step * m) <= 6), 10)
        start = math.ceil(self.lo / step) * step
        return [start + i * step for i in range(min(int((self.hi - start) / step) + 1, MAX_TICKS))]


@dataclass
class Mark:
    """A point: where, its colour and shape (circle, square, triangle), a tooltip, and an optional label."""

    x: float
    y: float
    color: str = PALETTE[0]
    shape: str = "circle"
    title: str = ""
    label: str = ""


@dataclass
class Line:
    """A polyline through `points`, with an optional label at its last point."""

    points: list[tuple[float, float]]
    color: str = "#222"
    dash: bool = False
    label: str = ""


@dataclass
class Chart:
    """An x-y chart; `svg()` draws it."""

    x: Axis
    y: Axis
    marks: list[Mark] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    title: str = ""
    legend: list[tuple[str, str, str]] = field(default_factory=list)  # (text, colour, shape)
    width: int = 560
    height: int = 380

    def svg(self) -> str:
        left, right, top = 64, 16, 30 if self.title else 12
        bottom = 46 + 16 * math.ceil(len(self.legend) / 3)
        w, h = self.width - left - right, self.height - top - bottom

        def px(v: float) -> float:
            return left + self.x.frac(v) * w

        def py(v: float) -> float:
            return top + (1 - self.y.frac(v)) * h

        out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width}" height="{self.height}" '
               f'viewBox="0 0 {self.width} {self.height}" role="img" {FONT} font-size="11">',
               f"<title>{escape(self.title)}</title>" if self.title else "",
               f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="#fff" stroke="#999"/>']
        if self.title:
            out.append(f'<text x="{left}" y="18" font-size="12" font-weight="600">{escape(self.title)}</text>')
        for t in self.x.ticks():
            out.append(f'<line x1="{px(t):.1f}" y1="{top}" x2="{px(t):.1f}" y2="{top + h}" stroke="#e5e5e5"/>'
                       f'<text x="{px(t):.1f}" y="{top + h + 14}" text-anchor="middle">{tick_text(t)}</text>')
        for t in self.y.ticks():
            out.append(f'<line x1="{left}" y1="{py(t):.1f}" x2="{left + w}" y2="{py(t):.1f}" stroke="#e5e5e5"/>'
                       f'<text x="{left - 5}" y="{py(t) + 4:.1f}" text-anchor="end">{tick_text(t)}</text>')
        out.append(f'<text x="{left + w / 2}" y="{top + h + 30}" text-anchor="middle">{escape(self.x.label)}</text>')
        out.append(f'<text transform="translate(14 {top + h / 2}) rotate(-90)" text-anchor="middle">'
                   f"{escape(self.y.label)}</text>")
        out.append(f'<svg x="{left}" y="{top}" width="{w}" height="{h}" viewBox="{left} {top} {w} {h}">')
        for line in self.lines:
            pts = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in line.points)
            dash = ' stroke-dasharray="4 3"' if line.dash else ""
            out.append(f'<polyline points="{pts}" fill="none" stroke="{line.color}" stroke-width="1.3"{dash}/>')
        placed: list[tuple[float, float, float, float]] = []
        for m in self.marks:
            if not (math.isfinite(px(m.x)) and math.isfinite(py(m.y))):
                continue  # a figure no axis can place (infinite): left out of the drawing
            out.append(_marker(px(m.x), py(m.y), m.color, m.shape, m.title))
            spot = _label_spot(px(m.x), py(m.y), m.label, placed) if m.label else None
            if spot:  # a label with no free room is left out: the point's tooltip still names it
                x, y, anchor = spot
                out.append(f'<text x="{x:.1f}" y="{y:.1f}" font-size="9"{anchor}>{escape(m.label)}</text>')
        out.append("</svg>")
        for line in self.lines:
            if line.label:
                x, y = line.points[-1]
                out.append(f'<text x="{min(px(x), left + w) - 4:.1f}" y="{py(y) - 5:.1f}" text-anchor="end" '
                           f'font-size="10" fill="{line.color}">{escape(line.label)}</text>')
        out += _legend(self.legend, left, top + h + 44)
        out.append("</svg>")
        return "".join(out)


LABEL_CHAR_W, LABEL_H = 5.0, 10.0  # the room a 9 px label takes per character, and its height
_LABEL_OFFSETS = ((5, -4, ""), (5, 12, ""), (-5, -4, ' text-anchor="end"'), (-5, 12, ' text-anchor="end"'))


def _label_spot(x: float, y: float, label: str, placed: list[tuple[float, float, float, float]]):
    """Where a point's label goes without covering one already placed (above right, below right, above left,
    below left); None when every spot is taken. `placed` gains the box it takes."""
    width = LABEL_CHAR_W * len(label)
    for dx, dy, anchor in _LABEL_OFFSETS:
        x0 = x + dx - (width if anchor else 0)
        box = (x0, y + dy - LABEL_H, x0 + width, y + dy)
        if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
            placed.append(box)
            return x + dx, y + dy, anchor
    return None


def _marker(x: float, y: float, color: str, shape: str, title: str) -> str:
    tip = f"<title>{escape(title)}</title>" if title else ""
    if shape == "square":
        return f'<rect x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" fill="{color}">{tip}</rect>'
    if shape == "triangle":
        return f'<polygon points="{x:.1f},{y - 5:.1f} {x - 5:.1f},{y + 4:.1f} {x + 5:.1f},{y + 4:.1f}" ' \
               f'fill="{color}">{tip}</polygon>'
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4.5" fill="{color}" fill-opacity="0.85">{tip}</circle>'


def _legend(items: list[tuple[str, str, str]], left: float, top: float, per_row: int = 3,
            col_width: float = 165) -> list[str]:
    out = []
    for i, (text, color, shape) in enumerate(items):
        x, y = left + (i % per_row) * col_width, top + (i // per_row) * 16
        out.append(_marker(x + 5, y - 4, color, shape, ""))
        out.append(f'<text x="{x + 14}" y="{y}">{escape(_cut(text, 30))}</text>')
    return out


BAR_NUMBER_MIN_W = 22  # px: a bar segment at least this wide shows its share in it


def stacked_bars(rows: list[tuple[str, list[float]]], parts: list[str], title: str = "", width: int = 760,
                 colors: tuple[str, ...] = PALETTE) -> str:
    """One horizontal bar per row, split into `parts` by the row's shares (each row's values sum to about 1)."""
    label_w, bar_h, gap, top = 340, 14, 6, 28 if title else 8
    legend_rows = math.ceil(len(parts) / 4)
    height = top + len(rows) * (bar_h + gap) + 20 + 16 * legend_rows
    w = width - label_w - 20
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" {FONT} font-size="11">',
           f"<title>{escape(title)}</title>" if title else ""]
    if title:
        out.append(f'<text x="4" y="18" font-size="12" font-weight="600">{escape(title)}</text>')
    for i, (label, shares) in enumerate(rows):
        y = top + i * (bar_h + gap)
        out.append(f'<text x="{label_w - 6}" y="{y + bar_h - 3}" text-anchor="end">{escape(_cut(label, 56))}</text>')
        x = float(label_w)
        for j, share in enumerate(shares):
            if share <= 0:
                continue
            tip = f"{parts[j]}: {100 * share:.1f}%"
            out.append(f'<rect x="{x:.1f}" y="{y}" width="{share * w:.1f}" height="{bar_h}" '
                       f'fill="{colors[j % len(colors)]}"><title>{escape(tip)}</title></rect>')
            if share * w >= BAR_NUMBER_MIN_W:  # the share written on the bar where it fits
                out.append(f'<text x="{x + share * w / 2:.1f}" y="{y + bar_h - 3}" text-anchor="middle" '
                           f'font-size="9" fill="#fff">{100 * share:.0f}</text>')
            x += share * w
    y0 = top + len(rows) * (bar_h + gap) + 16
    for j, part in enumerate(parts):
        x, y = 4 + (j % 4) * 185, y0 + (j // 4) * 16
        out.append(f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{colors[j % len(colors)]}"/>'
                   f'<text x="{x + 14}" y="{y}">{escape(part)}</text>')
    out.append("</svg>")
    return "".join(out)


def _cut(text: str, n: int) -> str:
    """Text that must fit a label's room: its first `n` characters, an ellipsis if any were cut."""
    return text if len(text) <= n else text[: n - 1] + "…"
