"""report.html of the action log: the log read, each table against the fold, the consumers'
lag over time (one chart per consumer), and each anomaly's example with the item expected and
found side by side. One offline file (inline CSS and SVG, no scripts), built from the shared
pieces of :mod:`verify.html_report` (page top, anomaly table, line charts, faults, drill)."""

from __future__ import annotations

from html import escape
from typing import Any

from verify.charts import line_chart
from verify.html_report import (
    EXAMPLES_CSS,
    anomaly_table,
    events_section,
    examples_table_of,
    json_cell,
    kind_sections,
    lag_text,
    page_start,
    pair_rows,
    run_marks,
)


def examples_table(report: dict[str, Any]) -> str:
    """Each kind's examples (collapsible): region, key, the action that left the fold's
    state (trace, shard and sequence number), the item expected and the item found."""

    def table(kind: str, examples: list[Any]) -> str:
        rows = []
        for e in examples:
            key = ", ".join(f"{k}={v}" for k, v in (e.get("key") or {}).items())
            where = (
                f"{e.get('trace') or ''} {e.get('shard') or ''}#{e.get('sequence_number') or ''}"
            )
            rows.append(
                f"<td>{escape(str(e.get('region')))}</td><td>{escape(key)}</td>"
                f"<td>{escape(str(e.get('explanation', '')))}</td><td>{escape(where)}</td>"
                f"<td>{json_cell(e.get('expected'))}</td><td>{json_cell(e.get('found'))}</td>"
            )
        return examples_table_of("<th>region</th><th>key</th><th>why</th><th>action (trace, "
                                 "shard#sequence)</th><th>expected (fold)</th><th>found "
                                 "(table)</th>", rows)  # fmt: skip

    return kind_sections(report, table, "action-examples")


def lag_charts(lag: dict[str, Any], report: dict[str, Any] | None = None) -> str:
    """One chart per consumer: the largest and the mean lag of its shards per time bucket;
    with ``report``, its injected faults and drill steps marked on the time axis."""
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
            "millis behind latest (ms)",
            t0_ms=start or None, marks=run_marks(report, start) if report and start else [],
        )  # fmt: skip
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
<h2>Consumer lag over time</h2>{lag_charts(details.get("consumer_lag") or {}, report)}
<h2>Anomalies</h2>
{anomaly_table(report, drilldown=False)}
<h3>Examples per anomaly: expected and found</h3>{examples_table(report)}
{events_section(report, None)}
<h2>Notes</h2><ul>{notes}</ul>
</body></html>
"""
    )
