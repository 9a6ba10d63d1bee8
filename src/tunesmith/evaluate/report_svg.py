"""A line chart as inline SVG, so report.html needs no image files, scripts or plotting library to be viewed."""

from __future__ import annotations

import math
from html import escape

WIDTH, HEIGHT = 640, 300
LEFT, RIGHT, TOP, BOTTOM = 60, 16, 30, 42


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round numbers (1, 2 or 5 times a power of ten apart) covering [low, high]."""
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= 0.75 * raw)  # 2.5 -> 2, not 5: keep ~count
    first = math.floor(low / step) * step
    ticks, value = [], first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    if ticks[-1] < high:
        ticks.append(round(value, 10))
    return ticks


def _label(value: float) -> str:
    return f"{value:g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.1e}"


def line_chart(series: list[dict], x_label: str = "optimizer step", y_label: str = "loss",
               marker_x: float | None = None, title: str = "") -> str:
    """series: [{"name", "color", "points": [[x, y], ...], "dots": bool}]; marker_x draws a dashed vertical line."""
    points = [p for s in series for p in s["points"]]
    if not points:
        return ""
    xs = nice_ticks(min(p[0] for p in points), max(p[0] for p in points))
    ys = nice_ticks(min(p[1] for p in points), max(p[1] for p in points))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + (x - xs[0]) / ((xs[-1] - xs[0]) or 1) * plot_w

    def py(y: float) -> float:
        return TOP + plot_h - (y - ys[0]) / ((ys[-1] - ys[0]) or 1) * plot_h

    out = [(f"<svg class='chart' viewBox='0 0 {WIDTH} {HEIGHT}' width='{WIDTH}' height='{HEIGHT}' role='img' "
            f"aria-label='{escape(title or y_label)}'>")]
    if title:
        out.append(f"<text x='{LEFT}' y='18' font-size='13' font-weight='600'>{escape(title)}</text>")
    for y in ys:
        out.append(f"<line x1='{LEFT}' x2='{WIDTH - RIGHT}' y1='{py(y):.1f}' y2='{py(y):.1f}' stroke='#e5e7eb'/>"
                   f"<text x='{LEFT - 6}' y='{py(y) + 4:.1f}' font-size='11' text-anchor='end'>{_label(y)}</text>")
    for x in xs:
        out.append(f"<text x='{px(x):.1f}' y='{TOP + plot_h + 16}' font-size='11' text-anchor='middle'>"
                   f"{_label(x)}</text>")
    out.append(f"<rect x='{LEFT}' y='{TOP}' width='{plot_w}' height='{plot_h}' fill='none' stroke='#9ca3af'/>")
    out.append(f"<text x='{LEFT + plot_w / 2:.1f}' y='{HEIGHT - 6}' font-size='12' text-anchor='middle'>"
               f"{escape(x_label)}</text><text x='14' y='{TOP + plot_h / 2:.1f}' font-size='12' "
               f"text-anchor='middle' transform='rotate(-90 14 {TOP + plot_h / 2:.1f})'>{escape(y_label)}</text>")
    if marker_x is not None:
        out.append(f"<line x1='{px(marker_x):.1f}' x2='{px(marker_x):.1f}' y1='{TOP}' y2='{TOP + plot_h}' "
                   f"stroke='#6b7280' stroke-dasharray='4 3'/>")
    for i, s in enumerate(series):
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in s["points"])
        out.append(f"<polyline class='series' fill='none' stroke='{s['color']}' stroke-width='1.8' "
                   f"points='{coords}'/>")
        if s.get("dots"):
            out += [f"<circle cx='{px(x):.1f}' cy='{py(y):.1f}' r='3' fill='{s['color']}'/>" for x, y in s["points"]]
        legend_x = WIDTH - RIGHT - 140 * (len(series) - i)  # above the plot, right-aligned: never over the data
        out.append(f"<line x1='{legend_x}' x2='{legend_x + 18}' y1='14' y2='14' stroke='{s['color']}' "
                   f"stroke-width='3'/><text x='{legend_x + 24}' y='18' font-size='12'>{escape(s['name'])}</text>")
    out.append("</svg>")
    return "".join(out)
