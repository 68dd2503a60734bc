"""report.html of a postgres-cdc run: the stream pipeline's page (lag of B behind A over time
and per shard, rates, the watermark, the anomaly table; :func:`verify.html_report.render_html`)
with a section of its own: the names and table read, the capture's lag, and every example as
transaction, key, stream position and explanation. One offline file, no scripts."""

from __future__ import annotations

from html import escape
from typing import Any

from verify.html_report import json_cell, pair_rows, render_html


def _examples(report: dict[str, Any]) -> str:
    rows = ""
    for kind, anomaly in report["anomalies"].items():
        for e in anomaly["examples"]:
            rows += (
                f'<tr><td class="kind">{escape(kind)}</td><td>{escape(str(e.get("txn", "")))}'
                f"</td><td>{escape(str(e.get('key', '')))}</td>"
                f"<td>{escape(str(e.get('explanation', '')))}</td><td>{json_cell(e)}</td></tr>"
            )
    if not rows:
        return "<p>No anomaly.</p>"
    return ('<table id="cdc-examples"><thead><tr><th>anomaly</th><th>txn</th><th>key</th>'
            f"<th>why</th><th>example</th></tr></thead><tbody>{rows}</tbody></table>")  # fmt: skip


def render_cdc_html(report: dict[str, Any]) -> str:
    """The ``render`` of :func:`verify.runner.write_reports` for ``postgres-cdc``."""
    details = report.get("details", {})
    names = details.get("names") or {}
    table = details.get("source_table") or {}
    capture = details.get("capture_lag") or {}
    summary = [
        ("change stream (A and B)", details.get("stream")),
        ("source table", f"{table.get('name')} ({table.get('rows', 'not read')} rows read)"),
        ("names in the records", f"{names.get('schema')}.{names.get('table')}: "
         f"{names.get('key')}, {names.get('commit_timestamp')}, {names.get('trace')}, "
         f"{names.get('payload')} ({names.get('source')})"),
        ("capture lag behind commit ms", capture.get("behind_commit_ms") or capture.get("note")),
        ("capture WAL backlog (max bytes)", capture.get("max_pending_bytes")),
        ("foreign (other tables, runs)", details.get("foreign")),
    ]  # fmt: skip
    section = (f'<h2>Change data capture</h2><table id="cdc">{pair_rows(summary)}</table>'
               f"<h2>Examples: transaction, key, where</h2>{_examples(report)}")  # fmt: skip
    page = render_html(report)
    return page.replace("</body>", section + "</body>", 1) if "</body>" in page else page + section
