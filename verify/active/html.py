"""report.html of an active-active run: both tables compared, convergence, conflicts, lag per
direction over time (forwarding from the staging records, applied from the appliers' file),
and each anomaly's example with both regions' items and the winner side by side. One offline
file built from the shared pieces of :mod:`verify.html_report`."""

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
    """Each kind's examples (collapsible): key, why, the winner, what each region holds."""

    def table(kind: str, examples: list[Any]) -> str:
        rows = []
        for e in examples:
            held = {side: e.get(side) for side in ("A", "B")}
            rows.append(
                f"<td>{escape(str((e.get('key') or {}).get('pk')))}</td>"
                f"<td>{escape(str(e.get('explanation', '')))}</td>"
                f"<td>{json_cell(e.get('winner') or e.get('stamp'))}</td>"
                f"<td>{json_cell(held['A'] or e.get('source'))}</td>"
                f"<td>{json_cell(held['B'] or e.get('forwarded'))}</td>"
            )
        return examples_table_of("<th>key</th><th>why</th><th>winner (ledger)</th>"
                                 "<th>region A</th><th>region B</th>", rows)  # fmt: skip

    return kind_sections(report, table, "active-examples")


def _lag_section(name: str, found: dict[str, Any], report: dict[str, Any]) -> str:
    per = found.get("per_direction") or {}
    if not per:
        return f"<p>{escape(name)}: {escape(str(found.get('note') or 'not measured'))}</p>"
    rows = "".join(
        f"<tr><td>{escape(d)}</td>"
        + "".join(f"<td>{s.get(k)}</td>" for k in ("samples", "p50", "p90", "p99", "max"))
        + "</tr>"
        for d, s in per.items()
    )
    over = found.get("over_time") or {}
    start = over.get("start_ms") or 0
    charts = ""
    for direction, points in (over.get("series") or {}).items():
        charts += line_chart(
            f"chart-{name}-lag-{direction.replace('->', '-')}",
            f"{name} lag {direction} (ms)",
            [(p["t_ms"] - start) / 1000 for p in points],
            {"max ms": [p["max"] for p in points], "avg ms": [p["avg"] for p in points]},
            f"seconds since the first sample (bucket {over.get('bucket_ms')} ms)", "lag (ms)",
            t0_ms=start or None, marks=run_marks(report, start) if start else [],
        )  # fmt: skip
    return (
        f'<table id="{escape(name)}-lag"><tr><th>direction</th><th>samples</th><th>p50</th>'
        f"<th>p90</th><th>p99</th><th>max</th></tr>{rows}</table>{charts}"
    )


def render_active_html(report: dict[str, Any]) -> str:
    """report.html of an ``active-active`` run (the ``render`` of
    :func:`verify.runner.write_reports`)."""
    details = report.get("details", {})
    settle = details.get("settle") or {}
    conv = details.get("convergence") or {}
    conflicts = details.get("conflicts") or {}
    staging = details.get("staging") or {}
    lag = details.get("lag") or {}
    summary = [
        ("differing keys at the first comparison", settle.get("differing_after_first_compare")),
        ("differing keys after settling", settle.get("differing_after_settle")),
        ("waited for the tables to settle (s)", settle.get("waited_s")),
        ("settle stopped by", settle.get("stopped_by", "nothing left differing")),
        ("convergence after the load stopped (ms)", conv.get("convergence_ms")),
        ("how it was measured", conv.get("measured")),
        ("conflicts generated (write pairs)", conflicts.get("generated")),
        ("conflicted keys / resolved", f"{conflicts.get('conflicted_keys')} / "
                                       f"{conflicts.get('resolved')}"),
        ("staging records read", staging.get("records")),
        ("malformed staging records", staging.get("malformed")),
        ("resends (same source)", (details.get("judge") or {}).get("resends")),
        ("lag source", details.get("lag_source")),
    ]  # fmt: skip
    tables = "".join(
        f"<tr><td>{escape(region)}</td><td>{escape(str(t.get('table')))}</td>"
        f"<td>{escape(str(t.get('region')))}</td><td>{t.get('items')}</td>"
        f"<td>{t.get('tombstones')}</td></tr>"
        for region, t in (details.get("tables") or {}).items()
    )
    notes = "".join(f"<li>{escape(str(n))}</li>" for n in details.get("notes", []))
    return (
        page_start(report, max_width=1200, css=EXAMPLES_CSS)
        + f"""\
<p>lag ms (slower direction): {escape(lag_text(report))}</p>
<h2>Convergence and conflicts</h2><table id="active-summary">{pair_rows(summary)}</table>
<h2>Tables</h2>
<table id="active-tables"><tr><th>side</th><th>table</th><th>region</th><th>live items</th>
<th>tombstones</th></tr>{tables}</table>
<h2>Forwarding lag per direction (staging arrival minus change creation)</h2>
{_lag_section("forwarding", lag.get("forwarding") or {}, report)}
<h2>Applied lag per direction (replication-lag.jsonl)</h2>
{_lag_section("applied", lag.get("applied") or {}, report)}
<h2>Anomalies</h2>
{anomaly_table(report, drilldown=False)}
<h3>Examples per anomaly: the winner and both regions</h3>{examples_table(report)}
{events_section(report, None)}
<h2>Notes</h2><ul>{notes}</ul>
</body></html>
"""
    )
