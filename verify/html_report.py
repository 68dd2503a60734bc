"""report.html: one self-contained file (inline SVG and CSS, no scripts, no network) with
produced versus replicated rate, lag over time and per shard, the injected faults over time
(``faults.jsonl``), the drill's steps, and each anomaly's examples (collapsible, one section per
kind). The charts are :mod:`verify.charts`; the page pieces here are shared with the table
pipelines' pages (:mod:`verify.tables.html`, :mod:`verify.actions.html`,
:mod:`verify.active.html`)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from contextvars import ContextVar
from html import escape
from pathlib import Path
from typing import Any

from verify.charts import (
    bar_chart,
    clock,
    drill_marks,
    fault_marks,
    fault_timeline_chart,
    line_chart,
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


# Example fields first in the drill-down (the rest follow in name order): what a person
# follows a counterexample by (DESIGN.md, "report.json": key, trace, shard, sequence numbers).
_FIRST_FIELDS = ("key", "partition_key", "trace", "region", "shard", "sequence_number",
                 "source_shard", "source_sequence_number", "target_shard",
                 "target_sequence_number", "source_value", "target_value", "expected", "found")


def _cell(value: Any) -> str:
    if isinstance(value, dict | list):
        return json_cell(value)
    return "" if value is None else escape(str(value))


def examples_grid(kind: str, examples: list[Any]) -> str:
    """One kind's examples as a table: a column per field (the identifying ones first), a
    row per example."""
    del kind
    dicts = [e if isinstance(e, dict) else {"example": e} for e in examples]
    seen = {f for e in dicts for f in e}
    fields = [f for f in _FIRST_FIELDS if f in seen] + sorted(seen - set(_FIRST_FIELDS))
    return examples_table_of(
        "".join(f"<th>{escape(f)}</th>" for f in fields),
        ["".join(f"<td>{_cell(e.get(f))}</td>" for f in fields) for e in dicts],
    )


def examples_table_of(head: str, rows: list[str]) -> str:
    body = "".join(f"<tr>{r}</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def kind_sections(report: dict[str, Any], table: Callable[[str, list[Any]], str],
                  section_id: str = "drilldown") -> str:  # fmt: skip
    """The drill-down: per anomaly kind with examples, one collapsible ``<details>`` (open when
    the kind counts any) holding ``table(kind, examples)``."""
    out = ""
    for kind, anomaly in report["anomalies"].items():
        examples = anomaly.get("examples") or []
        if examples:
            out += (
                f'<details class="drilldown" id="drill-{escape(kind)}"'
                f'{" open" if anomaly["count"] else ""}><summary>{escape(kind)}: '
                f"{anomaly['count']} ({len(examples)} example(s))</summary>"
                f"{table(kind, examples)}</details>"
            )
    return f'<div id="{section_id}">{out}</div>' if out else "<p>No anomaly example.</p>"


def anomaly_table(report: dict[str, Any], *, drilldown: bool = True) -> str:
    """The count of every anomaly kind; with ``drilldown``, then each kind's examples (every
    field: key, trace, shards, sequence numbers, values), collapsible per kind. The table
    pipelines' pages show their own side-by-side drill-down instead (``drilldown=False``)."""
    rows = ""
    for kind, anomaly in report["anomalies"].items():
        examples = anomaly.get("examples") or []
        shown = f"{len(examples)} example(s) below" if examples else ""
        rows += (
            f'<tr class="{"bad" if anomaly["count"] else "ok"}"><td>{escape(kind)}</td>'
            f"<td>{anomaly['count']}</td><td>{shown}</td></tr>"
        )
    table = (
        '<table id="anomalies"><thead><tr><th>anomaly</th><th>count</th><th>examples</th></tr>'
        f"</thead><tbody>{rows}</tbody></table>"
    )
    if not drilldown:
        return table
    return table + kind_sections(report, examples_grid)


#: The directory of the run whose page is being rendered (set by verify's ``write_reports``
#: around the renderer, so every pipeline's page finds the run's faults.jsonl).
RENDERING_RUN_DIR: ContextVar[Path | None] = ContextVar("RENDERING_RUN_DIR", default=None)


def fault_events(report: dict[str, Any], run_dir: Path | None = None) -> list[dict[str, Any]]:
    """The injected faults of the run (``faults.jsonl``, one event a line), for the fault
    timeline. ``run_dir`` is the run's directory; without it the run being rendered
    (:data:`RENDERING_RUN_DIR`), else the run is looked for under ``$XRH_RUNS_DIR`` (else
    ``runs``) by its id. No file, or no run: no events."""
    if run_dir is None:
        run_dir = RENDERING_RUN_DIR.get()
    if run_dir is None:
        run_dir = Path(os.environ.get("XRH_RUNS_DIR") or "runs") / str(report.get("run_id"))
    events = []
    try:
        with open(Path(run_dir) / "faults.jsonl", "rb") as handle:
            for raw in handle:
                try:
                    event = json.loads(raw)
                except ValueError:
                    continue  # a torn last line
                if isinstance(event, dict):
                    events.append(event)
    except OSError:
        return []
    return events


def events_section(report: dict[str, Any], t0_ms: float | None, x_hi_s: float | None = None,
                   run_dir: Path | None = None) -> str:  # fmt: skip
    """The injected faults (table by kind, then per second on the run's time axis) and the
    drill's steps: what the marks on the charts stand for."""
    details = report.get("details") or {}
    events = fault_events(report, run_dir)
    timeline = ""
    if events:
        start = t0_ms if t0_ms else min(e.get("at_ms") or 0 for e in events)
        timeline = fault_timeline_chart("chart-faults", events, start, x_hi_s)
    return (faults_table(details.get("faults") or {}) + timeline
            + drill_table(details.get("drill") or {}))  # fmt: skip


def run_marks(report: dict[str, Any], t0_ms: float, run_dir: Path | None = None) -> list[Any]:
    """Faults and drill steps as marks on a time chart that starts at ``t0_ms``."""
    steps = (report.get("details", {}).get("drill") or {}).get("timeline", [])
    return fault_marks(fault_events(report, run_dir), t0_ms) + drill_marks(steps, t0_ms)


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


def render_html(report: dict[str, Any], run_dir: Path | None = None) -> str:
    details = report.get("details", {})
    if details.get("table"):  # a table pipeline: its own page, same one-file form
        from verify.tables.html import render_table_html

        return render_table_html(report)
    rates = details.get("rates", [])
    over = details.get("lag_over_time", {}).get("buckets", [])
    starts = [x[0]["t_ms"] for x in (rates, over) if x]
    t0 = min(starts) if starts else 0  # one time axis for every chart of the page
    shards = details.get("lag_per_shard", [])
    marks = run_marks(report, t0, run_dir) if t0 else []
    since = f"seconds since {clock(t0)} UTC (source arrival)" if t0 else "seconds"
    last = max([(r["t_ms"] - t0) / 1000 for r in rates] + [(b["t_ms"] - t0) / 1000 for b in over],
               default=None)  # fmt: skip
    charts = [
        line_chart(
            "chart-rates",
            "Produced (source) versus replicated (target) records per second",
            [(r["t_ms"] - t0) / 1000 for r in rates],
            {
                "produced/s": [r["produced_per_s"] for r in rates],
                "replicated/s": [r["replicated_per_s"] for r in rates],
            },
            since, "records per second", marks=marks, t0_ms=t0 or None,
        ),  # fmt: skip
        line_chart(
            "chart-lag-over-time",
            "Replication lag over time (by source arrival)",
            [(b["t_ms"] - t0) / 1000 for b in over],
            {"avg lag ms": [b["avg"] for b in over], "max lag ms": [b["max"] for b in over]},
            since, "replication lag (ms)", marks=marks, t0_ms=t0 or None,
        ),  # fmt: skip
        bar_chart(
            "chart-lag-per-shard",
            "Replication lag per source shard",
            [s["shard"] for s in shards],
            {k: [s[k] for s in shards] for k in ("p50", "p99", "max")},
            "replication lag (ms)",
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
<h2>Anomalies</h2>
{anomaly_table(report)}
<h2>Charts</h2>
<p>Time runs in seconds since the first record arrived, with the wall-clock time (UTC) under
each tick; dashed lines are drill steps, red ticks at the top seconds with injected faults
(hover for what).</p>
{"".join(charts)}
{events_section(report, t0 or None, last, run_dir)}
</body></html>
"""
    )
