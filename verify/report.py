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
        watermark = {"claimed": None, "verified": None}
    else:
        anomalies = {kind: result.anomalies[kind].to_json() for kind in ANOMALY_KINDS}
        counts, lag = result.counts, result.lag.overall
        watermark = {
            "claimed": iso_or_none(result.watermark_claimed_ms),
            "verified": iso_or_none(result.watermark_verified_ms),
        }
        details = {
            **details,
            "anomaly_details": {k: a.details for k, a in result.anomalies.items() if a.details},
            "watermark_ms": {
                "claimed": result.watermark_claimed_ms,
                "verified": result.watermark_verified_ms,
            },
            "lag_from_commit_ms": result.lag.from_commit,
            "lag_per_shard": result.lag.per_shard,
            "lag_over_time": {"bucket_ms": result.lag.bucket_ms, "buckets": result.lag.over_time},
            "rates": result.lag.rates,
        }
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


def _example_line(example: dict[str, Any]) -> str:
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
    wm = report["watermark"]
    console.print(f"  watermark: claimed {wm['claimed']}  verified {wm['verified']}")
    for kind, anomaly in report["anomalies"].items():
        if anomaly["count"]:
            console.print(f"  {kind}: {anomaly['count']}")
            if anomaly["examples"]:
                console.print(f"    e.g. {_example_line(anomaly['examples'][0])}")
    dead = report.get("details", {}).get("dead_letters", {})
    if dead.get("count"):
        console.print(f"  dead-lettered: {dead['count']} record(s)")
