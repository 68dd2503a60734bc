"""report.html of the action log: the log read, each table against the fold, the consumers'
lag over time (one chart per consumer), and each anomaly's example with the item expected and
found side by side. One offline file (inline CSS and SVG, no scripts), built from the shared
pieces of :mod:`verify.html_report` (page top, anomaly table, line charts, faults, drill)."""

from __future__ import annotations

from html import escape
from typing import Any

from verify.html_report import (
    EXAMPLES_CSS,
    anomaly_table,
    drill_table,
    faults_table,
    json_cell,
    lag_text,
    line_chart,
    page_start,
    pair_rows,
)


def examples_table(report: dict[str, Any]) -> str:
    """Every example: region, key, the action that left the fold's state, expected, found."""
    rows = ""
    for kind, anomaly in report["anomalies"].items():
        for e in anomaly["examples"]:
            key = ", ".join(f"{k}={v}" for k, v in (e.get("key") or {}).items())
            where = (
                f"{e.get('trace') or ''} {e.get('shard') or ''}#{e.get('sequence_number') or ''}"
            )
            rows += (
                f'<tr><td class="kind">{escape(kind)}</td><td>{escape(str(e.get("region")))}'
                f"</td><td>{escape(key)}</td><td>{escape(str(e.get('explanation', '')))}</td>"
                f"<td>{escape(where)}</td><td>{json_cell(e.get('expected'))}</td>"
                f"<td>{json_cell(e.get('found'))}</td></tr>"
            )
    if not rows:
        return "<p>No anomaly.</p>"
    return (
        '<table id="action-examples"><thead><tr><th>anomaly</th><th>region</th><th>key</th>'
        "<th>why</th><th>action (trace, shard#sequence)</th><th>expected (fold)</th>"
        f"<th>found (table)</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def lag_charts(lag: dict[str, Any]) -> str:
    """One chart per consumer: the largest and the mean lag of its shards per time bucket."""
    if not lag.get("file"):
        return f"<p>{escape(str(lag.get('note') or 'no consumer lag recorded'))}</p>"
    over = lag.get("over_time") or {}
    start = over.get("start_ms") or 0
    charts = ""
    for consumer, points in (over.get("series") or {}).items():
        summary = (lag.get("consumers") or {}).get(consumer, {})
        charts += line_chart(
            f"chart-lag-{consumer}",
            f"{consumer} consumer (writes region {summary.get('writes_region', '?')}): "
            "millis behind the actions stream",
            [(p["t_ms"] - start) / 1000 for p in points],
            {"max ms": [p["max"] for p in points], "avg ms": [p["avg"] for p in points]},
            f"seconds since the first sample (bucket {over.get('bucket_ms')} ms)",
            "millis behind latest",
        )
    summaries = "".join(
        f"<tr><td>{escape(c)}</td>"
        + "".join(f"<td>{s.get(k)}</td>" for k in ("samples", "shards", "p50", "p90", "p99", "max"))
        + "</tr>"
        for c, s in (lag.get("consumers") or {}).items()
    )
    return (
        '<table id="consumer-lag"><tr><th>consumer</th><th>samples</th><th>shards</th>'
        f"<th>p50</th><th>p90</th><th>p99</th><th>max</th></tr>{summaries}</table>{charts}"
    )


def render_action_html(report: dict[str, Any]) -> str:
    """report.html of an ``action-log`` run (the ``render`` of
    :func:`verify.runner.write_reports`)."""
    details = report.get("details", {})
    log = details.get("log") or {}
    fold = details.get("fold") or {}
    settle = details.get("settle") or {}
    summary = [
        ("actions stream (region A)", log.get("stream")),
        ("actions read", log.get("actions")),
        ("malformed records", log.get("malformed")),
        ("keys in the log / items the fold holds", f"{fold.get('keys')} / {fold.get('items')}"),
        ("updates DynamoDB would refuse", fold.get("refused_updates")),
        ("waited for the tables to settle (s)", settle.get("waited_s")),
        ("settle stopped by", settle.get("stopped_by", "nothing left differing")),
        ("lag source", details.get("lag_source")),
    ]
    tables = "".join(
        f"<tr><td>{escape(region)}</td><td>{escape(str(t.get('table')))}</td>"
        f"<td>{t.get('items')}</td><td>{t.get('expected_items')}</td>"
        f"<td>{(t.get('chunks') or {}).get('items_compared_per_key')}</td>"
        f"<td>{t.get('differing_after_first_compare')}</td>"
        f"<td>{t.get('differing_after_settle')}</td></tr>"
        for region, t in (details.get("tables") or {}).items()
    )
    malformed = "".join(
        f"<li>{escape(str(m.get('shard')))}#{escape(str(m.get('sequence_number')))}: "
        f"{escape(str(m.get('error')))}</li>"
        for m in log.get("malformed_examples") or []
    )
    notes = "".join(f"<li>{escape(str(n))}</li>" for n in details.get("notes", []))
    return (
        page_start(report, max_width=1200, css=EXAMPLES_CSS)
        + f"""\
<p>lazy consumer lag ms: {escape(lag_text(report))}</p>
<h2>Actions log and fold</h2><table id="action-log">{pair_rows(summary)}</table>
<ul id="malformed">{malformed}</ul>
<h2>Tables against the fold</h2>
<table id="action-tables"><tr><th>region</th><th>table</th><th>items</th><th>fold items</th>
<th>compared key by key</th><th>differing first</th><th>differing after settling</th></tr>
{tables}</table>
<h2>Consumer lag over time</h2>{lag_charts(details.get("consumer_lag") or {})}
<h2>Anomaly examples: expected and found</h2>{examples_table(report)}
<h2>Anomalies</h2>
{anomaly_table(report)}
{faults_table(details.get("faults") or {})}
{drill_table(details.get("drill") or {})}
<h2>Notes</h2><ul>{notes}</ul>
</body></html>
"""
    )
