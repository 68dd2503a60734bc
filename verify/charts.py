"""Inline SVG charts for every page the harness writes or serves: each pipeline's report.html
and the live replication tab of Locust's web UI. Pure functions from numbers to SVG text (no
scripts, no network), so a page that embeds them stays one offline file.

Every chart has a y axis with round ticks and its unit, and (time charts) an x axis with two
rows of ticks: seconds since the start and the wall-clock time (UTC) of the same tick. The
legend sits in its own rows above the plot, wrapped to the chart's width, so it never covers a
line, a tick label or the y axis label; the y axis label stands left of the tick labels.

Marks are events on the time axis: ``drill`` marks (a drill's steps, a failover) are dashed
vertical lines; ``fault`` marks (injected faults, DESIGN.md "Faults") are short ticks along the
top of the plot, one per second that had any, their count and kinds in the tooltip.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any

W, H = 760, 280
LEFT, RIGHT, TOP, BOTTOM = 70, 16, 12, 58  # plot margins: y ticks and label; two x tick rows
LEGEND_ROW = 16  # height of one legend row, above the plot area
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f")
FAULT_COLOR, DRILL_COLOR = "#c00000", "#f0a000"

Mark = tuple[float, str] | tuple[float, str, str]  # (x, label[, "drill" | "fault"])


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round values (1, 2 or 5 times a power of ten) from lo up to the first
    one at or above hi, so the last tick can be the top of the axis."""
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    value = math.ceil(lo / step) * step
    ticks: list[float] = []
    while len(ticks) < 50:
        ticks.append(round(value, 10))
        if value >= hi - step * 1e-9:
            break
        value += step
    return ticks


def fmt(value: float) -> str:
    """A tick label: 12, 2.5, 15k, 1.2M."""
    if abs(value) >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if abs(value) >= 10_000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def clock(epoch_ms: float) -> str:
    """Wall-clock time of an epoch-ms instant, UTC (``00:28:47``)."""
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%H:%M:%S")


def _scale(value: float, lo: float, hi: float, out_lo: float, out_hi: float) -> float:
    return out_lo + (value - lo) * (out_hi - out_lo) / ((hi - lo) or 1)


def _legend_rows(names: Sequence[str]) -> list[list[tuple[int, str, str]]]:
    """Legend entries (x, color, name) wrapped into rows that fit the chart's width."""
    rows: list[list[tuple[int, str, str]]] = [[]]
    x = LEFT
    for i, name in enumerate(names):
        width = 24 + 7 * len(name)
        if rows[-1] and x + width > W - RIGHT:
            rows.append([])
            x = LEFT
        rows[-1].append((x, COLORS[i % len(COLORS)], name))
        x += width
    return rows if rows[0] else []


class _Frame:
    """The plot area of one chart: the legend's rows above it, the axes around it."""

    def __init__(self, names: Sequence[str], extra_legend: Sequence[tuple[str, str]] = ()) -> None:
        self.legend = _legend_rows(list(names))
        self.extra = list(extra_legend)  # (color, text) for marks, after the series
        rows = len(self.legend) + (1 if self.extra else 0)
        self.top = TOP + LEGEND_ROW * rows + 6
        self.height = H + LEGEND_ROW * rows
        self.x0, self.x1, self.y0 = LEFT, W - RIGHT, self.height - BOTTOM

    def legend_svg(self) -> str:
        out = []
        for r, row in enumerate(self.legend):
            y = TOP + r * LEGEND_ROW
            for x, color, name in row:
                out.append(f'<rect x="{x}" y="{y}" width="10" height="10" fill="{color}"/>'
                           f'<text x="{x + 14}" y="{y + 9}">{escape(name)}</text>')  # fmt: skip
        if self.extra:
            y, x = TOP + len(self.legend) * LEGEND_ROW, LEFT
            for color, text in self.extra:
                out.append(f'<line x1="{x}" y1="{y + 5}" x2="{x + 10}" y2="{y + 5}" '
                           f'stroke="{color}" stroke-width="2"/><text x="{x + 14}" '
                           f'y="{y + 9}">{escape(text)}</text>')  # fmt: skip
                x += 24 + 7 * len(text)
        return "".join(out)

    def y_axis(self, y_hi: float, y_label: str) -> str:
        x0, x1, y0, top = self.x0, self.x1, self.y0, self.top
        out = [
            f'<line x1="{x0}" y1="{top}" x2="{x0}" y2="{y0}" stroke="#444"/>',
            f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#444"/>',
            f'<text class="y-label" transform="translate(13 {(y0 + top) // 2}) rotate(-90)" '
            f'text-anchor="middle">{escape(y_label)}</text>',
        ]
        for value in nice_ticks(0, y_hi):
            y = _scale(value, 0, y_hi, y0, top)
            out.append(f'<line x1="{x0 - 4}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" stroke="#eee"/>'
                       f'<text class="y-tick" x="{x0 - 6}" y="{y + 3:.1f}" text-anchor="end" '
                       f'font-size="10">{fmt(value)}</text>')  # fmt: skip
        return "".join(out)

    def time_axis(self, x_lo: float, x_hi: float, x_label: str, t0_ms: float | None) -> str:
        """Ticks in seconds since the start; under each, the wall-clock time when known."""
        y0 = self.y0
        out = [f'<text x="{(self.x0 + self.x1) // 2}" y="{self.height - 6}" '
               f'text-anchor="middle">{escape(x_label)}</text>']  # fmt: skip
        for value in nice_ticks(x_lo, x_hi, 8):
            if value > x_hi + 1e-9:
                break
            x = _scale(value, x_lo, x_hi, self.x0, self.x1)
            out.append(f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y0 + 4}" stroke="#444"/>'
                       f'<text class="x-tick" x="{x:.1f}" y="{y0 + 15}" text-anchor="middle" '
                       f'font-size="10">{fmt(value)}</text>')  # fmt: skip
            if t0_ms is not None:
                out.append(f'<text class="x-clock" x="{x:.1f}" y="{y0 + 27}" '
                           f'text-anchor="middle" font-size="9" fill="#666">'
                           f"{clock(t0_ms + value * 1000)}</text>")  # fmt: skip
        return "".join(out)


def _y_top(series: Iterable[Sequence[float | None]]) -> float:
    values = [v for ys in series for v in ys if v is not None]
    return nice_ticks(0, max(max(values, default=0), 1))[-1]


def _marks_svg(marks: Sequence[Mark], x_lo: float, x_hi: float, frame: _Frame) -> str:
    out = []
    for mark in marks:
        x_value, label = mark[0], mark[1]
        kind = mark[2] if len(mark) > 2 else "drill"  # type: ignore[misc]
        if not x_lo <= x_value <= x_hi:
            continue
        x = _scale(x_value, x_lo, x_hi, frame.x0, frame.x1)
        if kind == "fault":
            out.append(f'<line class="mark-fault" x1="{x:.1f}" y1="{frame.top}" x2="{x:.1f}" '
                       f'y2="{frame.top + 10}" stroke="{FAULT_COLOR}" stroke-width="2">'
                       f"<title>{escape(label)}</title></line>")  # fmt: skip
        else:
            out.append(f'<line class="mark-drill" x1="{x:.1f}" y1="{frame.top}" x2="{x:.1f}" '
                       f'y2="{frame.y0}" stroke="{DRILL_COLOR}" stroke-dasharray="3,3">'
                       f"<title>{escape(label)}</title></line>")  # fmt: skip
    return "".join(out)


def _mark_legend(marks: Sequence[Mark]) -> list[tuple[str, str]]:
    kinds = {m[2] if len(m) > 2 else "drill" for m in marks}  # type: ignore[misc]
    out = []
    if "drill" in kinds:
        out.append((DRILL_COLOR, "drill step (dashed)"))
    if "fault" in kinds:
        out.append((FAULT_COLOR, "injected faults (ticks at the top)"))
    return out


def line_chart(chart_id: str, title: str, xs: Sequence[float],
               series: dict[str, Sequence[float | None]], x_label: str, y_label: str, *,
               marks: Sequence[Mark] = (), t0_ms: float | None = None) -> str:  # fmt: skip
    """Lines over a shared x (seconds since ``t0_ms`` when given: the axis then also shows
    wall-clock times); a ``None`` value breaks its line. ``marks``: events on the x axis."""
    x_lo, x_hi = (min(xs), max(xs)) if xs else (0.0, 1.0)
    if x_hi <= x_lo:
        x_hi = x_lo + 1
    frame = _Frame(list(series), _mark_legend(marks))
    y_hi = _y_top(series.values())
    body = []
    for i, (name, ys) in enumerate(series.items()):
        runs: list[list[str]] = [[]]
        for x_value, y_value in zip(xs, ys, strict=False):
            if y_value is None:
                runs.append([])
                continue
            x = _scale(x_value, x_lo, x_hi, frame.x0, frame.x1)
            y = _scale(y_value, 0, y_hi, frame.y0, frame.top)
            runs[-1].append(f"{x:.1f},{y:.1f}")
        for points in runs:
            if points:
                body.append(f'<polyline fill="none" stroke="{COLORS[i % len(COLORS)]}" '
                            f'stroke-width="1.5" points="{" ".join(points)}" '
                            f'data-series="{escape(name)}"><title>{escape(name)}</title>'
                            "</polyline>")  # fmt: skip
    svg = (frame.y_axis(y_hi, y_label) + frame.time_axis(x_lo, x_hi, x_label, t0_ms)
           + "".join(body) + _marks_svg(marks, x_lo, x_hi, frame) + frame.legend_svg())  # fmt: skip
    return _figure(chart_id, title, svg, frame.height)


def bar_chart(chart_id: str, title: str, labels: Sequence[str],
              series: dict[str, Sequence[float | None]], y_label: str, *,
              x_label: str = "source shard", unit: str = "ms") -> str:  # fmt: skip
    """Groups of bars, one group per label (a shard), one bar per series (p50, p99, ...)."""
    frame = _Frame(list(series))
    y_hi = _y_top(series.values())
    groups = max(len(labels), 1)
    group_w = (frame.x1 - frame.x0) / groups
    bar_w = group_w * 0.8 / max(len(series), 1)
    body = []
    for g, label in enumerate(labels):
        left = frame.x0 + g * group_w + group_w * 0.1
        for i, (name, ys) in enumerate(series.items()):
            value = ys[g] or 0
            top = _scale(value, 0, y_hi, frame.y0, frame.top)
            body.append(f'<rect x="{left + i * bar_w:.1f}" y="{top:.1f}" width="{bar_w:.1f}" '
                        f'height="{frame.y0 - top:.1f}" fill="{COLORS[i % len(COLORS)]}">'
                        f"<title>{escape(label)} {escape(name)}: {value:g} {escape(unit)}"
                        "</title></rect>")  # fmt: skip
        body.append(f'<text x="{left + group_w * 0.4:.1f}" y="{frame.y0 + 15}" font-size="10" '
                    f'text-anchor="middle">{escape(label[-12:])}</text>')  # fmt: skip
    axis_label = (f'<text x="{(frame.x0 + frame.x1) // 2}" y="{frame.height - 6}" '
                  f'text-anchor="middle">{escape(x_label)}</text>')  # fmt: skip
    svg = frame.y_axis(y_hi, y_label) + axis_label + "".join(body) + frame.legend_svg()
    return _figure(chart_id, title, svg, frame.height)


def _figure(chart_id: str, title: str, svg_body: str, height: int) -> str:
    return (
        f'<figure id="{escape(chart_id)}"><figcaption>{escape(title)}</figcaption>'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" '
        f'viewBox="0 0 {W} {height}" font-family="sans-serif" font-size="11">{svg_body}</svg>'
        "</figure>"
    )


# ----------------------------------------------------------------------------- events


def fault_marks(events: Iterable[dict[str, Any]], t0_ms: float) -> list[Mark]:
    """Injected faults (``faults.jsonl`` lines) as one mark per second that had any, its
    tooltip the count by kind and operation (a run can inject thousands)."""
    per_second: dict[int, dict[str, int]] = {}
    for event in events:
        at = event.get("at_ms")
        if not isinstance(at, int | float):
            continue
        what = f"{event.get('side', '?')}:{event.get('operation', '?')}:{event.get('kind', '?')}"
        bucket = per_second.setdefault(int((at - t0_ms) // 1000), {})
        bucket[what] = bucket.get(what, 0) + 1
    return [
        (float(second), "faults: " + ", ".join(f"{n} {w}" for w, n in sorted(kinds.items())),
         "fault")
        for second, kinds in sorted(per_second.items())
    ]  # fmt: skip


def drill_marks(steps: Iterable[dict[str, Any]], t0_ms: float) -> list[Mark]:
    """A drill's steps (``drill-timeline.jsonl`` lines) as dashed lines."""
    return [
        ((s["at_ms"] - t0_ms) / 1000, f"{s.get('action')} {s.get('arg') or ''}".strip(), "drill")
        for s in steps
        if isinstance(s.get("at_ms"), int | float) and s.get("action") not in ("drill", "drill-end")
    ]


def fault_timeline_chart(chart_id: str, events: Sequence[dict[str, Any]], t0_ms: float,
                         x_hi_s: float | None = None) -> str:  # fmt: skip
    """Injected faults per second, one line per kind, on the same time axis as the others."""
    kinds = sorted({str(e.get("kind")) for e in events if isinstance(e.get("at_ms"), int | float)})
    if not kinds:
        return ""
    seconds = [int((e["at_ms"] - t0_ms) // 1000) for e in events
               if isinstance(e.get("at_ms"), int | float)]  # fmt: skip
    last = max(max(seconds), int(x_hi_s or 0))
    first = min(0, min(seconds))
    xs = [float(s) for s in range(first, last + 1)]
    counts = {k: [0.0] * len(xs) for k in kinds}
    for e in events:
        if isinstance(e.get("at_ms"), int | float):
            counts[str(e.get("kind"))][int((e["at_ms"] - t0_ms) // 1000) - first] += 1
    return line_chart(chart_id, "Injected faults per second, by kind (faults.jsonl)", xs,
                      {f"{k} /s": v for k, v in counts.items()}, f"seconds since {clock(t0_ms)} UTC",
                      "faults per second", t0_ms=t0_ms)  # fmt: skip
