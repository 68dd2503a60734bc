"""report.html: one self-contained file (inline SVG and CSS, no scripts, no network) with lag
over time, lag per shard, produced versus replicated rate and the anomaly table."""

from __future__ import annotations

import json
from html import escape
from typing import Any

W, H, PAD = 760, 240, 48
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")


def _scale(values: list[float], lo: float, hi: float, out_lo: float, out_hi: float) -> list[float]:
    span = (hi - lo) or 1
    return [out_lo + (v - lo) * (out_hi - out_lo) / span for v in values]


def _axes(y_max: float, x_label: str, y_label: str) -> str:
    return (
        f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - 10}" y2="{H - PAD}" stroke="#444"/>'
        f'<line x1="{PAD}" y1="10" x2="{PAD}" y2="{H - PAD}" stroke="#444"/>'
        f'<text x="{W // 2}" y="{H - 12}" text-anchor="middle">{escape(x_label)}</text>'
        f'<text x="4" y="20">{escape(y_label)}</text>'
        f'<text x="{PAD - 4}" y="18" text-anchor="end" font-size="10">{y_max:g}</text>'
        f'<text x="{PAD - 4}" y="{H - PAD}" text-anchor="end" font-size="10">0</text>'
    )


def line_chart(chart_id: str, title: str, xs: list[float], series: dict[str, list[float]],
               x_label: str, y_label: str) -> str:  # fmt: skip
    body = ""
    all_y = [v for ys in series.values() for v in ys] or [0]
    y_max = max(max(all_y), 1)
    if xs:
        px = _scale(xs, min(xs), max(xs), PAD, W - 10)
        for color, (name, ys) in zip(COLORS, series.items(), strict=False):
            py = _scale(ys, 0, y_max, H - PAD, 10)
            points = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(px, py, strict=True))
            body += (
                f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{points}">'
                f"<title>{escape(name)}</title></polyline>"
            )
    legend = "".join(
        f'<text x="{W - 200}" y="{20 + 14 * i}" fill="{c}">{escape(n)}</text>'
        for i, (c, n) in enumerate(zip(COLORS, series, strict=False))
    )
    return _figure(chart_id, title, _axes(y_max, x_label, y_label) + body + legend)


def bar_chart(chart_id: str, title: str, labels: list[str], series: dict[str, list[float]],
              y_label: str) -> str:  # fmt: skip
    all_y = [v for ys in series.values() for v in ys if v is not None] or [0]
    y_max = max(max(all_y), 1)
    groups = max(len(labels), 1)
    group_w = (W - PAD - 10) / groups
    bar_w = group_w * 0.8 / max(len(series), 1)
    body = ""
    for g, label in enumerate(labels):
        x0 = PAD + g * group_w + group_w * 0.1
        for s, (color, (name, ys)) in enumerate(zip(COLORS, series.items(), strict=False)):
            value = ys[g] or 0
            h = (value / y_max) * (H - PAD - 10)
            body += (
                f'<rect x="{x0 + s * bar_w:.1f}" y="{H - PAD - h:.1f}" width="{bar_w:.1f}" '
                f'height="{h:.1f}" fill="{color}"><title>{escape(label)} {escape(name)}: '
                f"{value:g} ms</title></rect>"
            )
        body += (
            f'<text x="{x0 + group_w * 0.4:.1f}" y="{H - PAD + 14}" font-size="9" '
            f'text-anchor="middle">{escape(label[-12:])}</text>'
        )
    legend = "".join(
        f'<text x="{W - 200}" y="{20 + 14 * i}" fill="{c}">{escape(n)}</text>'
        for i, (c, n) in enumerate(zip(COLORS, series, strict=False))
    )
    return _figure(chart_id, title, _axes(y_max, "source shard", y_label) + body + legend)


def _figure(chart_id: str, title: str, svg_body: str) -> str:
    return (
        f'<figure id="{chart_id}"><figcaption>{escape(title)}</figcaption>'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">{svg_body}</svg></figure>'
    )


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


def render_html(report: dict[str, Any]) -> str:
    details = report.get("details", {})
    over = details.get("lag_over_time", {}).get("buckets", [])
    t0 = over[0]["t_ms"] if over else 0
    rates = details.get("rates", [])
    r0 = rates[0]["t_ms"] if rates else 0
    shards = details.get("lag_per_shard", [])
    charts = [
        line_chart(
            "chart-lag-over-time",
            "Replication lag over time (by source arrival)",
            [(b["t_ms"] - t0) / 1000 for b in over],
            {"avg lag ms": [b["avg"] for b in over], "max lag ms": [b["max"] for b in over]},
            "seconds since start",
            "ms",
        ),
        bar_chart(
            "chart-lag-per-shard",
            "Replication lag per source shard",
            [s["shard"] for s in shards],
            {k: [s[k] for s in shards] for k in ("p50", "p99", "max")},
            "ms",
        ),
        line_chart(
            "chart-rates",
            "Produced (source) versus replicated (target) records per second",
            [(r["t_ms"] - r0) / 1000 for r in rates],
            {
                "produced/s": [r["produced_per_s"] for r in rates],
                "replicated/s": [r["replicated_per_s"] for r in rates],
            },
            "seconds since start",
            "records/s",
        ),
    ]
    verdict = report["verdict"]
    reasons = "".join(f"<li>{escape(r)}</li>" for r in report["reasons"])
    counts = "".join(
        f"<tr><td>{escape(k)}</td><td>{v}</td></tr>" for k, v in report["counts"].items()
    )
    lag = " ".join(f"{k} {v}" for k, v in report["lag_ms"].items())
    wm = report["watermark"]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>verify {escape(report["run_id"])}: {escape(verdict)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 1000px; }}
.verdict-valid {{ color: #2a7a2a; }} .verdict-invalid {{ color: #b00; }}
.verdict-unknown {{ color: #a60; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 4px 8px;
vertical-align: top; }} tr.bad td:first-child {{ color: #b00; font-weight: bold; }}
code {{ font-size: 11px; word-break: break-all; }} figure {{ margin: 1em 0; }}
</style></head><body>
<h1 class="verdict-{escape(verdict)}">Verdict: {escape(verdict)}</h1>
<p>run {escape(report["run_id"])}, pipeline {escape(report["pipeline"])},
verified {escape(str(report["started_at"]))} to {escape(str(report["finished_at"]))}</p>
<ul>{reasons}</ul>
<h2>Counts</h2><table>{counts}</table>
<p>lag ms: {escape(lag)}; watermark claimed {escape(str(wm["claimed"]))},
verified {escape(str(wm["verified"]))}; tolerance {escape(str(details.get("tolerance_ms")))} ms</p>
<h2>Anomalies</h2>
{anomaly_table(report)}
<h2>Charts</h2>
{"".join(charts)}
</body></html>
"""
