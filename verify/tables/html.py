"""report.html of a table pipeline: what was compared and how, the settle, the bootstrap copy,
and each anomaly's example with both regions' values side by side. One offline file (inline
CSS, no scripts), as :mod:`verify.html_report`, whose page top and anomaly table it reuses."""

from __future__ import annotations

from html import escape
from typing import Any

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
)


def _position(change: Any) -> str:
    if not isinstance(change, dict):
        return ""
    return escape(f"{change.get('event')} {change.get('shard')}#{change.get('sequence_number')}")


def table_examples(report: dict[str, Any]) -> str:
    """Each kind's examples (collapsible) with both regions' values side by side."""

    def table(kind: str, examples: list[Any]) -> str:
        rows = []
        for e in examples:
            key = ", ".join(f"{k}={v}" for k, v in (e.get("key") or {}).items())
            trace_a = e.get("source_trace") or e.get("trace") or ""
            rows.append(
                f"<td>{escape(key)}</td>"
                f"<td>{escape(str(e.get('explanation', e.get('reason', ''))))}</td>"
                f"<td>{escape(trace_a)}<br>{_position(e.get('source_change'))}<br>"
                f"{json_cell(e.get('source_value'))}</td>"
                f"<td>{escape(e.get('target_trace') or '')}<br>"
                f"{_position(e.get('target_version_change'))}<br>"
                f"{json_cell(e.get('target_value'))}</td>"
                f"<td>{_position(e.get('last_change'))}</td>"
            )
        return examples_table_of(
            "<th>key</th><th>why</th><th>region A: trace, stream position, item</th>"
            "<th>region B: trace, where A's stream has that version, item</th>"
            "<th>last change in A's stream</th>", rows,
        )  # fmt: skip

    return kind_sections(report, table, "table-examples")


def table_section(report: dict[str, Any]) -> str:
    """A table pipeline's comparison: what was compared, how, the settle, the bootstrap."""
    details = report.get("details", {})
    table = details.get("table") or {}
    chunks = details.get("chunks") or {}
    settle = details.get("settle") or {}
    scans = details.get("scans") or {}
    bootstrap = details.get("bootstrap")
    compared = pair_rows([
        ("table in region A", table.get("table_a")),
        ("table in region B", table.get("table_b")),
        ("key", ", ".join(table.get("key") or [])),
        ("A's stream", table.get("stream_arn") or "none"),
        ("items compared (both regions, by chunk digest)", details.get("items_compared")),
        ("chunks (of the key hash)", chunks.get("chunks")),
        ("chunks holding items / differing", f"{chunks.get('compared')} / "
                                             f"{chunks.get('differing')}"),
        ("items compared key by key (in differing chunks)",
         chunks.get("items_compared_per_key")),
        ("keys differing after the first read", settle.get("differing_after_first_compare")),
        ("keys differing after settling", settle.get("differing_after_settle")),
        ("waited for the target to settle (s)", settle.get("waited_s")),
        ("settle passes / stopped by", f"{settle.get('passes')} / "
                                       f"{settle.get('stopped_by', 'nothing left differing')}"),
        ("changes read from A's stream", details.get("stream_changes_read")),
        ("lag source", details.get("lag_source")),
    ])  # fmt: skip
    scan_rows = "".join(
        f"<tr><td>{escape(side.upper())}</td><td>{escape(str(s.get('table')))}</td>"
        f"<td>{s.get('items')}</td><td>{s.get('segments')}</td><td>{s.get('seconds')}</td>"
        f"<td>{s.get('items_per_s')}</td><td>{s.get('throttles')}</td></tr>"
        for side, s in scans.items()
    )
    if isinstance(bootstrap, dict):
        boot = (
            '<table id="bootstrap">'
            + pair_rows([(k, v) for k, v in bootstrap.items()])
            + "</table>"
        )
    else:
        boot = f"<p>{escape(str(bootstrap or 'not read'))}</p>"
    return (
        f'<h2>Table comparison</h2><table id="table-comparison">{compared}</table>'
        '<h3>Scans</h3><table id="scans"><tr><th>region</th><th>table</th><th>items</th>'
        "<th>segments</th><th>s</th><th>items/s</th><th>throttles</th></tr>"
        f"{scan_rows}</table><h3>Bootstrap copy</h3>{boot}"
        f"<h3>Anomaly examples, both regions' values</h3>{table_examples(report)}"
    )


def render_table_html(report: dict[str, Any]) -> str:
    """report.html of a table pipeline: one offline file, no charts of streams it never read."""
    notes = "".join(f"<li>{escape(str(n))}</li>" for n in report["details"].get("notes", []))
    return (
        page_start(report, max_width=1200, css=EXAMPLES_CSS)
        + f"""\
<p>apply lag ms: {escape(lag_text(report))}</p>
<p id="watermark">{escape(str(report["watermark"].get("statement") or ""))}</p>
{table_section(report)}
<h2>Anomalies</h2>
{anomaly_table(report, drilldown=False)}
{events_section(report, None)}
<h2>Notes</h2><ul>{notes}</ul>
</body></html>
"""
    )
