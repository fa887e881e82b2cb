"""Stored size and duration over time, drawn on the server as SVG.

No script and no library: a line through the backups in time order, marks on
those that did not succeed (their size and duration are not like the others'),
axes with labelled ticks in a unit that suits the values, and a ``<title>`` and
``<desc>`` that say in words what the picture shows. Colours are classes from
the page's stylesheet, so the charts follow the light or dark scheme."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from reconciler.timeutil import utc
from reconciler.usecases.status_model import HistoryPoint
from reconciler.web import format as fmt
from reconciler.web.markup import esc, tone

WIDTH, HEIGHT = 480, 220
LEFT, RIGHT, TOP, BOTTOM = 62, 14, 14, 30
"""Room for the y labels at the left and the dates below."""

_SIZE_UNITS = ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB"), (1.0, "B"))
_TIME_UNITS = ((3600.0, "h"), (60.0, "min"), (1.0, "s"))


@dataclass(frozen=True)
class _Point:
    at: float
    """POSIX seconds."""
    value: float
    status: str
    bar: float | None = None


@dataclass(frozen=True)
class _Axis:
    top: float
    ticks: tuple[float, ...]
    label: Callable[[float], str]


def size_chart(history: Sequence[HistoryPoint], element_id: str) -> str:
    points = [
        _Point(utc(p.created_at).timestamp(), float(p.size_bytes), p.status, _bar(p.added_bytes))
        for p in history
    ]
    has_bars = any(p.bar is not None for p in points)
    summary = _summary(points, fmt.size)
    if has_bars:
        summary += " Bars: what each backup added to the storage."
    return _chart(
        element_id,
        "Stored size over time",
        summary,
        points,
        _axis([p.value for p in points] + [p.bar or 0.0 for p in points], _SIZE_UNITS),
        fmt.size,
    )


def duration_chart(history: Sequence[HistoryPoint], element_id: str) -> str:
    points = [
        _Point(utc(p.created_at).timestamp(), p.duration_seconds, p.status)
        for p in history
        if p.duration_seconds is not None
    ]
    return _chart(
        element_id,
        "Duration over time",
        _summary(points, fmt.duration),
        points,
        _axis([p.value for p in points], _TIME_UNITS),
        fmt.duration,
    )


def _bar(added: int | None) -> float | None:
    return None if added is None else float(added)


def _summary(points: Sequence[_Point], show: Callable[[float], str]) -> str:
    if not points:
        return "No backups to draw yet."
    first, last = points[0], points[-1]
    low = min(p.value for p in points)
    high = max(p.value for p in points)
    problems = sum(1 for p in points if tone(p.status) not in ("ok", "running"))
    text = (
        f"{len(points)} backups from {fmt.when(_dt(first.at))} to {fmt.when(_dt(last.at))}:"
        f" lowest {show(low)}, highest {show(high)}, latest {show(last.value)}."
    )
    if problems:
        text += f" {problems} did not succeed (marked)."
    return text


def _dt(posix: float) -> datetime:
    return datetime.fromtimestamp(posix, UTC)


def _axis(values: Sequence[float], units: Sequence[tuple[float, str]]) -> _Axis:
    """Ticks from 0 at a round step in the largest unit the values reach."""
    high = max(values, default=0.0)
    factor, unit = next(((f, u) for f, u in units if high >= f), units[-1])
    scaled = high / factor
    if scaled <= 0:
        scaled = 1.0
    raw = scaled / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    if factor == 1.0 and unit == "B":
        step = max(step, 1.0)
    count = max(1, math.ceil(scaled / step - 1e-9))
    ticks = tuple(i * step * factor for i in range(count + 1))

    def label(value: float) -> str:
        if value == 0:
            return "0"
        amount = value / factor
        text = f"{amount:.2f}".rstrip("0").removesuffix(".")
        return f"{text} {unit}"

    return _Axis(top=ticks[-1], ticks=ticks, label=label)


def _chart(
    element_id: str,
    title: str,
    description: str,
    points: Sequence[_Point],
    axis: _Axis,
    show: Callable[[float], str],
) -> str:
    title_id, desc_id = f"{element_id}-title", f"{element_id}-desc"
    parts = [
        f'<svg id="{esc(element_id)}" class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}"'
        f' xmlns="http://www.w3.org/2000/svg" aria-labelledby="{esc(title_id)} {esc(desc_id)}">',
        f'<title id="{esc(title_id)}">{esc(title)}</title>',
        f'<desc id="{esc(desc_id)}">{esc(description)}</desc>',
    ]
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    bottom = TOP + plot_h

    def y(value: float) -> float:
        return bottom - (value / axis.top) * plot_h if axis.top > 0 else bottom

    for tick in axis.ticks:
        ty = y(tick)
        parts.append(_line("grid", LEFT, WIDTH - RIGHT, ty, ty))
        label = esc(axis.label(tick))
        parts.append(f'<text x="{LEFT - 6}" y="{ty + 4:.1f}" text-anchor="end">{label}</text>')
    parts.append(_line("axis", LEFT, LEFT, TOP, bottom))
    parts.append(_line("axis", LEFT, WIDTH - RIGHT, bottom, bottom))
    if not points:
        parts.append(
            f'<text x="{LEFT + plot_w / 2:.0f}" y="{TOP + plot_h / 2:.0f}"'
            ' text-anchor="middle">No backups yet</text>'
        )
        parts.append("</svg>")
        return "".join(parts)

    start, end = points[0].at, points[-1].at
    span = end - start

    def x(at: float) -> float:
        return LEFT + plot_w / 2 if span <= 0 else LEFT + (at - start) / span * plot_w

    parts.extend(_time_ticks(start, end, x, bottom))
    bar_w = max(1.0, min(8.0, plot_w / max(len(points), 1) * 0.6))
    for p in points:
        if p.bar is not None and p.bar > 0:
            top = y(p.bar)
            parts.append(
                f'<rect class="bar" x="{x(p.at) - bar_w / 2:.1f}" y="{top:.1f}"'
                f' width="{bar_w:.1f}" height="{bottom - top:.1f}"/>'
            )
    coords = " ".join(f"{x(p.at):.1f},{y(p.value):.1f}" for p in points)
    parts.append(f'<polyline class="series" points="{coords}"/>')
    for p in points:
        mark = tone(p.status)
        if mark == "ok" and len(points) > 1:
            continue  # a mark on every point hides the line; only the odd ones stand out
        parts.append(
            f'<circle class="mark-{mark}" cx="{x(p.at):.1f}" cy="{y(p.value):.1f}" r="4">'
            f"<title>{esc(fmt.when(_dt(p.at)))}: {esc(p.status)}, {esc(show(p.value))}</title>"
            "</circle>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _time_ticks(start: float, end: float, x: Callable[[float], float], bottom: float) -> list[str]:
    """Up to four dates under the axis; with hours when the span is under two days."""
    span = end - start
    pattern = "%Y-%m-%d" if span >= 2 * 86400 else "%m-%d %H:%M"
    count = 1 if span <= 0 else 4
    parts = []
    for i in range(count):
        at = start if count == 1 else start + span * i / (count - 1)
        # The end labels lean inwards so that they stay inside the picture.
        anchor = "middle"
        if count > 1 and i == 0:
            anchor = "start"
        elif count > 1 and i == count - 1:
            anchor = "end"
        tx = x(at)
        parts.append(_line("axis", tx, tx, bottom, bottom + 4))
        parts.append(
            f'<text x="{tx:.1f}" y="{bottom + 18}" text-anchor="{anchor}">'
            f"{esc(_dt(at).strftime(pattern))}</text>"
        )
    return parts


def _line(cls: str, x1: float, x2: float, y1: float, y2: float) -> str:
    return f'<line class="{cls}" x1="{x1:.1f}" x2="{x2:.1f}" y1="{y1:.1f}" y2="{y2:.1f}"/>'
