"""Line charts drawn on the server as SVG: no script, no library, nothing inline that the
console's Content-Security-Policy would refuse (colours come from its stylesheet, by
class).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

__all__ = ["Series", "line_chart"]

WIDTH, HEIGHT = 640, 200
_LEFT, _RIGHT, _TOP, _BOTTOM = 48, 24, 12, 28


class Series:
    """One line: its label, a CSS class (``series-0``...) and a value per minute (None:
    nothing to show that minute)."""

    def __init__(self, label: str, values: Sequence[float | None], css: str) -> None:
        self.label = label
        self.values = values
        self.css = css


def _nice(top: float) -> float:
    """A round upper bound at or above ``top`` (1, 2, 5 x 10^n)."""
    if top <= 0:
        return 1.0
    scale = 1.0
    while scale * 10 <= top:
        scale *= 10
    while scale > top:
        scale /= 10
    for step in (1, 2, 5, 10):
        if step * scale >= top:
            return step * scale
    return 10 * scale


def line_chart(title: str, unit: str, series: Sequence[Series], labels: Mapping[int, str]) -> str:
    """An SVG chart of ``series`` (each as long as the others: one value per minute, the
    oldest first); ``labels``: the x-axis labels by position."""
    count = max((len(s.values) for s in series), default=0)
    top = _nice(max((v for s in series for v in s.values if v is not None), default=0.0))
    plot_w = WIDTH - _LEFT - _RIGHT
    plot_h = HEIGHT - _TOP - _BOTTOM

    def x(i: int) -> float:
        return _LEFT + (plot_w * i / max(1, count - 1))

    def y(v: float) -> float:
        return _TOP + plot_h * (1 - v / top)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}">',
        f"<title>{escape(title)}</title>",
    ]
    for step in range(5):
        value = top * step / 4
        parts.append(
            f'<line class="grid" x1="{_LEFT}" x2="{WIDTH - _RIGHT}" '
            f'y1="{y(value):.1f}" y2="{y(value):.1f}"/>'
            f'<text class="axis" x="{_LEFT - 6}" y="{y(value) + 4:.1f}" '
            f'text-anchor="end">{value:g}</text>'
        )
    for i, label in labels.items():
        parts.append(
            f'<text class="axis" x="{x(i):.1f}" y="{HEIGHT - 8}" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
    parts.append(
        f'<text class="axis" x="{_LEFT}" y="{_TOP - 2}" text-anchor="start">{escape(unit)}</text>'
    )
    for line in series:
        points = " ".join(
            f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(line.values) if v is not None
        )
        if points:
            parts.append(
                f'<polyline class="line {escape(line.css)}" data-series="{escape(line.label)}" '
                f'fill="none" points="{points}"/>'
            )
            # A dot on each minute counted: a lone minute shows, which a line cannot.
            parts += [
                f'<circle class="dot {escape(line.css)}" cx="{x(i):.1f}" cy="{y(v):.1f}" r="2.5"/>'
                for i, v in enumerate(line.values)
                if v is not None and v > 0
            ]
    parts.append("</svg>")
    return "".join(parts)
