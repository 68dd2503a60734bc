"""report.html: one self-contained file (inline SVG and CSS, no scripts, no network) with lag
over time, lag per shard, produced versus replicated rate and the anomaly table."""

from __future__ import annotations

import json
import math
from html import escape
from typing import Any

W, H = 760, 260
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 34, 46  # plot area margins: ticks, labels, legend row
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")


def _scale(values: list[float], lo: float, hi: float, out_lo: float, out_hi: float) -> list[float]:
    span = (hi - lo) or 1
    return [out_lo + (v - lo) * (out_hi - out_lo) / span for v in values]


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round values (1, 2 or 5 times a power of ten) from lo up to the first
    one at or above hi, so the last tick can be the top of the axis."""
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step) * step
    ticks, value = [], first
    while len(ticks) < 50:
        ticks.append(round(value, 10))
        if value >= hi - step * 1e-9:
            break
        value += step
    return ticks


def _fmt(value: float) -> str:
    if abs(value) >= 10_000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def _axes(x_lo: float, x_hi: float, y_hi: float, x_label: str, y_label: str,
          x_ticks: bool = True) -> str:  # fmt: skip
    """Both axes with ticks, grid lines and labels (the y label turned along its axis)."""
    x0, x1, y0, y1 = LEFT, W - RIGHT, H - BOTTOM, TOP
    out = [
        f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#444"/>',
        f'<line x1="{x0}" y1="{y1}" x2="{x0}" y2="{y0}" stroke="#444"/>',
        f'<text x="{(x0 + x1) // 2}" y="{H - 8}" text-anchor="middle">{escape(x_label)}</text>',
        f'<text transform="translate(14 {(y0 + y1) // 2}) rotate(-90)" text-anchor="middle">'
        f"{escape(y_label)}</text>",
    ]
    for value in nice_ticks(0, y_hi):
        (y,) = _scale([value], 0, y_hi, y0, y1)
        out.append(f'<line x1="{x0 - 4}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{x0 - 6}" y="{y + 3:.1f}" text-anchor="end" font-size="10">'
                   f"{_fmt(value)}</text>")  # fmt: skip
    if x_ticks:
        for value in nice_ticks(x_lo, x_hi, 8):
            (x,) = _scale([value], x_lo, x_hi, x0, x1)
            out.append(f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y0 + 4}" stroke="#444"/>')
            out.append(f'<text x="{x:.1f}" y="{y0 + 15}" text-anchor="middle" font-size="10">'
                       f"{_fmt(value)}</text>")  # fmt: skip
    return "".join(out)


def _legend(names: list[str]) -> str:
    """One row above the plot area, so it never covers a line or a tick label."""
    out, x = [], LEFT
    for color, name in zip(COLORS, names, strict=False):
        out.append(f'<rect x="{x}" y="10" width="10" height="10" fill="{color}"/>'
                   f'<text x="{x + 14}" y="19">{escape(name)}</text>')  # fmt: skip
        x += 24 + 7 * len(name)
    return "".join(out)


def line_chart(chart_id: str, title: str, xs: list[float], series: dict[str, list[float]],
               x_label: str, y_label: str, *, marks: list[tuple[float, str]] = ()) -> str:  # fmt: skip
    """Lines over a shared x; ``marks`` are vertical lines (x, label), e.g. injected faults."""
    all_y = [v for ys in series.values() for v in ys if v is not None] or [0]
    y_hi = nice_ticks(0, max(max(all_y), 1))[-1]
    x_lo, x_hi = (min(xs), max(xs)) if xs else (0.0, 1.0)
    if x_hi <= x_lo:
        x_hi = x_lo + 1
    body = ""
    px = _scale(xs, x_lo, x_hi, LEFT, W - RIGHT)
    for color, (name, ys) in zip(COLORS, series.items(), strict=False):
        py = _scale([v or 0 for v in ys], 0, y_hi, H - BOTTOM, TOP)
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(px, py, strict=True))
        body += (
            f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{points}">'
            f"<title>{escape(name)}</title></polyline>"
        )
    for x_value, label in marks:
        if x_lo <= x_value <= x_hi:
            (x,) = _scale([x_value], x_lo, x_hi, LEFT, W - RIGHT)
            body += (f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{H - BOTTOM}" '
                     f'stroke="#f0a000" stroke-dasharray="3,3"><title>{escape(label)}</title>'
                     "</line>")  # fmt: skip
    axes = _axes(x_lo, x_hi, y_hi, x_label, y_label)
    return _figure(chart_id, title, axes + body + _legend(list(series)))


def bar_chart(chart_id: str, title: str, labels: list[str], series: dict[str, list[float]],
              y_label: str) -> str:  # fmt: skip
    all_y = [v for ys in series.values() for v in ys if v is not None] or [0]
    y_hi = nice_ticks(0, max(max(all_y), 1))[-1]
    plot_h = H - BOTTOM - TOP
    groups = max(len(labels), 1)
    group_w = (W - LEFT - RIGHT) / groups
    bar_w = group_w * 0.8 / max(len(series), 1)
    body = ""
    for g, label in enumerate(labels):
        x0 = LEFT + g * group_w + group_w * 0.1
        for i, (color, (name, ys)) in enumerate(zip(COLORS, series.items(), strict=False)):
            value = ys[g] or 0
            h = (value / y_hi) * plot_h
            body += (
                f'<rect x="{x0 + i * bar_w:.1f}" y="{H - BOTTOM - h:.1f}" width="{bar_w:.1f}" '
                f'height="{h:.1f}" fill="{color}"><title>{escape(label)} {escape(name)}: '
                f"{value:g} ms</title></rect>"
            )
        body += (
            f'<text x="{x0 + group_w * 0.4:.1f}" y="{H - BOTTOM + 15}" font-size="10" '
            f'text-anchor="middle">{escape(label[-12:])}</text>'
        )
    axes = _axes(0, 1, y_hi, "source shard", y_label, x_ticks=False)
    return _figure(chart_id, title, axes + body + _legend(list(series)))


def _figure(chart_id: str, title: str, svg_body: str) -> str:
    return (
        f'<figure id="{chart_id}"><figcaption>{escape(title)}</figcaption>'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">{svg_body}</svg></figure>'
    )


_CSS = """\
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: 4px 8px;
vertical-align: top; } tr.bad td:first-child { color: #b00; font-weight: bold; }
code { font-size: 11px; word-break: break-all; } figure { margin: 1em 0; }"""


# The table pipelines' pages: examples side by side (``td.kind`` the anomaly's name).
EXAMPLES_CSS = """\
table { border-collapse: collapse; margin-bottom: 1em; } td, th { border: 1px solid #ccc;
padding: 4px 8px; vertical-align: top; } tr.bad td:first-child, td.kind { color: #b00;
font-weight: bold; } code { font-size: 11px; word-break: break-all; } figure { margin: 1em 0; }"""


def json_cell(value: Any) -> str:
    """A value as a table cell's code (an item, a stamp, a position), or "absent"."""
    if value is None:
        return "<em>absent</em>"
    return f"<code>{escape(json.dumps(value, sort_keys=True, default=str))}</code>"


def pair_rows(pairs: list[tuple[str, Any]]) -> str:
    """Rows of a two-column summary table."""
    return "".join(f"<tr><td>{escape(k)}</td><td>{escape(str(v))}</td></tr>" for k, v in pairs)


def anomaly_table(report: dict[str, Any]) -> str:
    rows = ""
    for kind, anomaly in report["anomalies"].items():
        examples = "".join(
            f"<li><code>{escape(json.dumps(e, sort_keys=True))}</code></li>"
            for e in anomaly["examples"]
        )
        rows += (
            f'<tr class="{"bad" if anomaly["count"] else "ok"}"><td>{escape(kind)}</td>'
            f"<td>{anomaly['count']}</td><td><ul>{examples}</ul></td></tr>"
        )
    return (
        '<table id="anomalies"><thead><tr><th>anomaly</th><th>count</th><th>examples</th></tr>'
        f"</thead><tbody>{rows}</tbody></table>"
    )


def _clock(epoch_ms: int) -> str:
    from datetime import UTC, datetime

    if not epoch_ms:
        return "start"
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%H:%M:%S UTC")


def faults_table(faults: dict[str, Any]) -> str:
    if not faults.get("total"):
        return ""
    rows = "".join(
        f"<tr><td>{escape(k)}</td><td>{v}</td></tr>" for k, v in faults["by_kind"].items()
    )
    return (
        f'<h2>Injected faults</h2><table id="faults"><tr><th>kind</th><th>count</th></tr>{rows}'
        f"</table><p>entries failed by partial faults: {faults.get('partial_entries', 0)}</p>"
    )


def drill_table(drill: dict[str, Any]) -> str:
    """The drill's steps, as its nemesis took them (dashed lines on the charts)."""
    if not drill.get("timeline"):
        return ""
    rows = "".join(
        f"<tr><td>{s.get('t_s')}</td><td>{escape(str(s.get('action')))}</td>"
        f"<td>{escape(str(s.get('arg') or ''))}</td><td>{'ok' if s.get('ok') else 'FAILED'}"
        f"</td><td>{escape(str(s.get('note') or ''))}</td></tr>"
        for s in drill["timeline"]
    )
    return (
        f'<h2>Drill: {escape(str(drill.get("name")))}</h2><table id="drill"><tr><th>s</th>'
        f"<th>step</th><th>argument</th><th></th><th>note</th></tr>{rows}</table>"
        "<p>Dashed lines on the charts mark the steps.</p>"
    )


def page_start(report: dict[str, Any], *, max_width: int, css: str) -> str:
    """The top of either pipeline's report.html: title, styles (the shared ones, then
    ``css``), the verdict with its reasons, and the counts."""
    verdict = report["verdict"]
    reasons = "".join(f"<li>{escape(r)}</li>" for r in report["reasons"])
    counts = "".join(
        f"<tr><td>{escape(k)}</td><td>{v}</td></tr>" for k, v in report["counts"].items()
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>verify {escape(report["run_id"])}: {escape(verdict)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: {max_width}px; }}
.verdict-valid {{ color: #2a7a2a; }} .verdict-invalid {{ color: #b00; }}
.verdict-unknown {{ color: #a60; }}
{css}
</style></head><body>
<h1 class="verdict-{escape(verdict)}">Verdict: {escape(verdict)}</h1>
<p>run {escape(report["run_id"])}, pipeline {escape(report["pipeline"])},
verified {escape(str(report["started_at"]))} to {escape(str(report["finished_at"]))}</p>
<ul>{reasons}</ul>
<h2>Counts</h2><table>{counts}</table>
"""


def lag_text(report: dict[str, Any]) -> str:
    return " ".join(f"{k} {v}" for k, v in report["lag_ms"].items())


def render_html(report: dict[str, Any]) -> str:
    details = report.get("details", {})
    if details.get("table"):  # a table pipeline: its own page, same one-file form
        from verify.tables.html import render_table_html

        return render_table_html(report)
    over = details.get("lag_over_time", {}).get("buckets", [])
    t0 = over[0]["t_ms"] if over else 0
    rates = details.get("rates", [])
    r0 = rates[0]["t_ms"] if rates else 0
    shards = details.get("lag_per_shard", [])
    faults = details.get("faults") or {}
    steps = [s for s in (details.get("drill") or {}).get("timeline", [])
             if s.get("action") not in ("drill", "drill-end")]  # fmt: skip

    def marks(t_start: int) -> list[tuple[float, str]]:
        return [((s["at_ms"] - t_start) / 1000, f"{s['action']} {s.get('arg') or ''}".strip())
                for s in steps]  # fmt: skip

    charts = [
        line_chart(
            "chart-lag-over-time",
            "Replication lag over time (by source arrival)",
            [(b["t_ms"] - t0) / 1000 for b in over],
            {"avg lag ms": [b["avg"] for b in over], "max lag ms": [b["max"] for b in over]},
            f"seconds since {_clock(t0)} (source arrival)",
            "replication lag (ms)",
            marks=marks(t0),
        ),
        bar_chart(
            "chart-lag-per-shard",
            "Replication lag per source shard",
            [s["shard"] for s in shards],
            {k: [s[k] for s in shards] for k in ("p50", "p99", "max")},
            "replication lag (ms)",
        ),
        line_chart(
            "chart-rates",
            "Produced (source) versus replicated (target) records per second",
            [(r["t_ms"] - r0) / 1000 for r in rates],
            {
                "produced/s": [r["produced_per_s"] for r in rates],
                "replicated/s": [r["replicated_per_s"] for r in rates],
            },
            f"seconds since {_clock(r0)} (arrival)",
            "records per second",
            marks=marks(r0),
        ),
    ]
    wm = report["watermark"]
    return (
        page_start(report, max_width=1000, css=_CSS)
        + f"""\
<p>lag ms: {escape(lag_text(report))}; tolerance {escape(str(details.get("tolerance_ms")))} ms</p>
<h2>Watermark</h2>
<p id="watermark">{escape(str(wm.get("statement") or ""))}</p>
<p>claimed {escape(str(wm["claimed"]))} (the newest claim, region A to B); verified
{escape(str(wm["verified"]))} (how far the data proves the target complete at the end of the
read). A verified time before the claimed one is not a violation by itself: a claim is broken
only when the target lacked a record it covered while it was in force (checkpoint_ahead).</p>
{faults_table(faults)}
{drill_table(details.get("drill") or {})}
<h2>Anomalies</h2>
{anomaly_table(report)}
<h2>Charts</h2>
{"".join(charts)}
</body></html>
"""
    )
