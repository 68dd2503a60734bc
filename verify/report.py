"""report.json (DESIGN.md's schema plus one ``details`` key) and the terminal summary."""

from __future__ import annotations

from typing import Any, TextIO

from verify.checks import iso_or_none
from verify.model import ANOMALY_KINDS
from verify.reconcile import Decision, Reconciliation

SCHEMA_VERSION = 1
EMPTY_COUNTS = {
    "acknowledged": 0,
    "failed": 0,
    "unknown": 0,
    "source_records": 0,
    "target_records": 0,
}


def build_report(
    *,
    run_id: str,
    pipeline: str,
    decision: Decision,
    started_at: str,
    finished_at: str,
    result: Reconciliation | None,
    details: dict[str, Any],
) -> dict[str, Any]:
    """``result`` is None when verification stopped before reconciling (endpoint down)."""
    if result is None:
        anomalies = {kind: {"count": 0, "examples": []} for kind in ANOMALY_KINDS}
        counts, lag = dict(EMPTY_COUNTS), {"p50": None, "p90": None, "p99": None, "max": None}
        watermark = {"claimed": None, "verified": None, "held": None, "claims": [],
                     "statement": "not checked: verify did not reach a reconciliation"}  # fmt: skip
    else:
        anomalies = {kind: result.anomalies[kind].to_json() for kind in ANOMALY_KINDS}
        counts, lag = result.counts, result.lag.overall
        watermark = watermark_section(result)
        details = {
            **details,
            "anomaly_details": {k: a.details for k, a in result.anomalies.items() if a.details},
            # other runs' records and records nobody in this run wrote: counted, never judged
            "foreign": result.foreign,
            "watermark_ms": {
                "claimed": result.watermark_claimed_ms,
                "verified": result.watermark_verified_ms,
            },
            "lag_from_commit_ms": result.lag.from_commit,
            "lag_per_shard": result.lag.per_shard,
            "lag_over_time": {"bucket_ms": result.lag.bucket_ms, "buckets": result.lag.over_time},
            "rates": result.lag.rates,
        }
    return envelope(
        run_id=run_id, pipeline=pipeline, decision=decision, started_at=started_at,
        finished_at=finished_at, counts=counts, anomalies=anomalies, watermark=watermark,
        lag=lag, details=details,
    )  # fmt: skip


def envelope(
    *,
    run_id: str,
    pipeline: str,
    decision: Decision,
    started_at: str,
    finished_at: str,
    counts: dict[str, Any],
    anomalies: dict[str, Any],
    watermark: dict[str, Any],
    lag: dict[str, Any],
    details: dict[str, Any],
) -> dict[str, Any]:
    """DESIGN.md's report.json shape, the same for every pipeline."""
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "pipeline": pipeline,
        "verdict": decision.verdict.value,
        "reasons": decision.reasons,
        "started_at": started_at,
        "finished_at": finished_at,
        "counts": counts,
        "anomalies": anomalies,
        "watermark": watermark,
        "lag_ms": lag,
        "details": details,
    }


TABLE_WATERMARK = {
    "claimed": None,
    "verified": None,
    "held": None,
    "claims": [],
    "statement": "does not apply to a table pipeline: the tables' final states are compared, "
    "and the replicator publishes no watermark",
}


def build_table_report(
    *,
    run_id: str,
    pipeline: str,
    decision: Decision,
    started_at: str,
    finished_at: str,
    anomalies: dict[str, Any] | None,
    counts: dict[str, Any] | None,
    lag: dict[str, Any],
    details: dict[str, Any],
) -> dict[str, Any]:
    """A table pipeline's report (:mod:`verify.tables`): ``anomalies`` maps every kind to an
    :class:`~verify.checks.Anomaly` (None when verify stopped before judging)."""
    if anomalies is None:
        shown = {kind: {"count": 0, "examples": []} for kind in ANOMALY_KINDS}
    else:
        shown = {kind: anomalies[kind].to_json() for kind in ANOMALY_KINDS}
        details = {
            **details,
            "anomaly_details": {k: a.details for k, a in anomalies.items() if a.details},
        }
    return envelope(
        run_id=run_id, pipeline=pipeline, decision=decision, started_at=started_at,
        finished_at=finished_at, counts={**EMPTY_COUNTS, **(counts or {})}, anomalies=shown,
        watermark=dict(TABLE_WATERMARK), lag=lag, details=details,
    )  # fmt: skip


def watermark_section(result: Reconciliation) -> dict[str, Any]:
    """DESIGN.md's ``claimed`` and ``verified``, and in words whether the claims held.

    ``claimed`` is the newest A -> B claim; ``verified`` is how far the data proves the target
    complete at the end of the read (just below the oldest record it still lacks, else the
    newest record). A verified time earlier than the claimed one is no violation by itself
    (records may be unacknowledged, or reach the source late); a claim is violated only when
    the target lacked a record the claim covered while it was in force (checkpoint_ahead)."""
    ahead = result.anomalies["checkpoint_ahead"]
    last = ahead.details.get("last_claims", [])
    checked = ahead.details.get("claims_checked", 0)
    section: dict[str, Any] = {
        "claimed": iso_or_none(result.watermark_claimed_ms),
        "verified": iso_or_none(result.watermark_verified_ms),
        "held": None if not checked else ahead.count == 0,
        "claims": last,
    }
    if not checked:
        statement = "no watermark claim was made or seen (the replicator publishes none)"
    elif ahead.count:
        statement = (
            f"{ahead.count} of {checked} claim(s) did NOT hold: the target lacked records "
            "they covered while they were in force (see checkpoint_ahead)"
        )
    else:
        statement = f"all {checked} claim(s) held"
    for claim in last:
        statement += (
            f"; newest {claim['direction']} claim {claim['watermark']} "
            + ("held" if claim["held"] else "did NOT hold")
            + (
                f", the data proves the target complete to {claim['proven_to']} when it was "
                f"in force ({claim['in_force_at']})"
                if claim["proven_to"]
                else ""
            )
        )
    if result.watermark_verified_ms is not None:
        statement += (
            f"; at the end of the read the target holds every record committed up to "
            f"{iso_or_none(result.watermark_verified_ms)}"
        )
    section["statement"] = statement
    return section


def _example_line(example: dict[str, Any]) -> str:
    if isinstance(example.get("key"), dict):  # a table's key: name it before the story
        key = ", ".join(f"{k}={v}" for k, v in example["key"].items())
        traces = [f"{side} trace {example[f'{side}_trace']}" for side in ("source", "target")
                  if example.get(f"{side}_trace")]  # fmt: skip
        if example.get("trace"):
            traces.append(f"trace {example['trace']}")
        return f"{key}: {example.get('explanation', '')}" + (
            f" ({'; '.join(traces)})" if traces else ""
        )
    if "explanation" in example:
        return example["explanation"]
    parts = [f"{k}={example[k]}" for k in ("trace", "key") if k in example]
    for side in ("source", "target"):
        if f"{side}_shard" in example:
            parts.append(
                f"{side} {example[f'{side}_shard']}#{example.get(f'{side}_sequence_number', '?')}"
            )
    if "dead_letter_reason" in example:
        parts.append(f"dead-lettered: {example['dead_letter_reason']}")
    return ", ".join(parts)


def print_summary(report: dict[str, Any], file: TextIO | None = None) -> None:
    """A few lines a person reads first: verdict, reasons, counts, lag, one example each."""
    from rich.console import Console

    console = Console(file=file, highlight=False, soft_wrap=True)
    style = {"valid": "bold green", "invalid": "bold red"}.get(report["verdict"], "bold yellow")
    console.print(f"[{style}]verdict: {report['verdict']}[/]  run {report['run_id']}")
    for reason in report["reasons"]:
        console.print(f"  - {reason}")
    c = report["counts"]
    console.print(
        f"  ledger: {c['acknowledged']} acknowledged, {c['failed']} failed, {c['unknown']} unknown;"
        f" source {c['source_records']} records, target {c['target_records']}"
    )
    lag = report["lag_ms"]
    if lag["max"] is not None:
        console.print(
            f"  lag ms: p50 {lag['p50']}  p90 {lag['p90']}  p99 {lag['p99']}  max {lag['max']}"
        )
    details = report.get("details", {})
    table = details.get("table")
    if table:
        chunks = details.get("chunks") or {}
        settle = details.get("settle") or {}
        console.print(
            f"  tables: {table.get('table_a')} (A) vs {table.get('table_b')} (B): "
            f"{details.get('items_compared', 0)} item(s) compared by digest, "
            f"{chunks.get('items_compared_per_key', 0)} key by key in "
            f"{chunks.get('differing', 0)} differing chunk(s) of {chunks.get('compared', 0)}; "
            f"waited {settle.get('waited_s', 0)} s for the target to settle"
        )
        if "bootstrap" in details:
            console.print(f"  bootstrap: {_bootstrap_line(details['bootstrap'])}")
    else:
        wm = report["watermark"]
        console.print(f"  watermark: {wm.get('statement') or (wm['claimed'], wm['verified'])}")
    faults = report.get("details", {}).get("faults") or {}
    if faults.get("total"):
        kinds = ", ".join(f"{k} {v}" for k, v in faults.get("by_kind", {}).items())
        console.print(f"  injected faults: {faults['total']} ({kinds})")
    for kind, anomaly in report["anomalies"].items():
        if anomaly["count"]:
            console.print(f"  {kind}: {anomaly['count']}")
            if anomaly["examples"]:
                console.print(f"    e.g. {_example_line(anomaly['examples'][0])}")
    dead = report.get("details", {}).get("dead_letters", {})
    if dead.get("count"):
        reasons = sorted({r.get("reason") for r in dead.get("records", []) if r.get("reason")})
        console.print(
            f"  dead-lettered: {dead['count']} record(s), kept with their data"
            + (f" ({', '.join(reasons)[:200]})" if reasons else "")
        )


def _bootstrap_line(bootstrap: Any) -> str:
    if not isinstance(bootstrap, dict):
        return str(bootstrap)
    return (
        f"{bootstrap.get('state')}, {bootstrap.get('items_copied')} item(s) copied in "
        f"{bootstrap.get('copy_seconds')} s ({bootstrap.get('items_per_s')} items/s)"
    )
