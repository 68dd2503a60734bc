"""Verify an ``active-active`` run: report.json and report.html in the run directory.

:func:`run_active_verify` is what :func:`verify.runner.run_verify` calls for the pipeline (so
``xrh verify --run-dir`` and the locustfile reach it). In order:

1. the ledger's writes at ``{prefix}-items`` in both regions
   (:func:`verify.ledger_file.load_ledger_file`: absent is a note, unreadable or not marked
   complete keeps the verdict from ``valid``), each key's winner, and the appliers' lag file;
2. both tables scanned, compared and settled (:mod:`verify.active.collect`), which measures
   the convergence time; then both staging streams read whole;
3. the checks (:mod:`verify.active.checks`) and the verdict by
   :func:`verify.reconcile.decide`'s rules: unread evidence is ``unknown``, any anomaly
   ``invalid``.

Everything read lives in ``verify.sqlite``; a read with no reason to call it incomplete is
marked there (:data:`verify.runner.READ_COMPLETE`, with the details and the judge's options),
and ``from_store`` (``--from-store``, or ``xrh verify`` finding the endpoint gone) judges that
read again without the network: the same judge over the same rows, so the same verdict.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from verify.active.checks import KINDS, REASONS, Judgement, judge
from verify.active.collect import ActiveRead, load_applied_lag
from verify.active.html import render_active_html
from verify.active.staging import LAG_KEYS, lag_details, staging_details
from verify.active.store import ActiveStore
from verify.ledger_file import load_ledger_file
from verify.reconcile import decide
from verify.report import EMPTY_COUNTS, envelope
from verify.runner import (
    LEDGER_INCOMPLETE,
    READ_COMPLETE,
    READ_DETAILS,
    VerifyResult,
    drill_details,
    write_reports,
)
from verify.tables.run import table_clients
from xrh import runs
from xrh.config import EndpointMode, HarnessConfig
from xrh.faults import read_fault_log
from xrh.resources import ResourceNames

PIPELINE = "active-active"
JUDGE_OPTIONS = "judge_options"
WATERMARK = {
    "claimed": None, "verified": None, "held": None, "claims": [],
    "statement": "does not apply to the active-active pipeline: both tables are compared "
    "with each other and with the ledger's winners; no watermark is published",
}  # fmt: skip


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def import_ledger(store: ActiveStore, path: Path, table: str, notes: list[str]) -> str | None:
    def copy_rows(ledger: Any) -> int:
        return store.add_ledger(ledger.execute(
            "SELECT trace, partition_key, region, op, status, commit_ts, invoked_at, "
            "completed_at FROM ledger WHERE pipeline = ? AND (target = ? OR target LIKE ?)",
            (PIPELINE, table, f"%/{table}")))  # fmt: skip

    return load_ledger_file(path, notes, copy_rows, target=f"table {table} in both regions",
                            absent="the tables compared with each other only")  # fmt: skip


def run_active_verify(
    run_dir: Path, config: HarnessConfig, *, timeout_s: float, progress: bool = False,
    clients: Any = None, clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep, incomplete: list[str] | None = None,
    from_store: bool = False, settle_s: float = 30.0, scan_segments: int = 4,
    poll_s: float = 1.0, wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
) -> VerifyResult:  # fmt: skip
    """Verify one ``active-active`` run directory (``from_store``: the stored read again)."""
    del progress  # the reads are short; the summary says what was done
    run = runs.RunDir(Path(run_dir))
    started_at = _now_iso()
    if from_store:
        return _from_store(run, config, started_at)
    names = ResourceNames(config.prefix)
    table = names.items_table
    details = _run_details(run, config)
    notes: list[str] = details["notes"]
    reasons = list(incomplete or [])
    judgement: Judgement | None = None
    store = ActiveStore(run.file(runs.VERIFY_STORE_FILE))
    try:
        ledger_reason = import_ledger(store, run.file(runs.LEDGER_FILE), table, notes)
        if ledger_reason:
            store.set_meta(LEDGER_INCOMPLETE, ledger_reason)
        store.build_winners()
        own_prefix = f"{run.run_id}/" if run.file(runs.LEDGER_FILE).exists() else None
        details["applied_lag_file"] = load_applied_lag(store, run.path)
        if clients is None and (config.endpoint_mode is EndpointMode.AWS
                                or (config.endpoint_url_a and config.endpoint_url_b)):  # fmt: skip
            clients = table_clients(config, scan_segments)
        if clients is None:
            reasons.append("no endpoint to read from")
        else:
            deadline = clock() + timeout_s
            read = ActiveRead(store, clients, config, table, names.staging_stream, details,
                              segments=scan_segments, clock=clock, sleep=sleep,
                              wall_ms=wall_ms, poll_s=poll_s)  # fmt: skip
            read_reasons = read.tables_and_settle(deadline, timeout_s, settle_s)
            details["convergence"] = convergence(store, read.converged_at_ms, details)
            if not read_reasons:
                read_reasons = read.staging_streams(max(deadline, clock() + 10.0))
            reasons += read_reasons
            if "comparison" in details:
                judgement = _judge(store, config, own_prefix, details)
                if not reasons:
                    store.set_meta(JUDGE_OPTIONS, json.dumps({"own_prefix": own_prefix}))
                    store.set_meta(READ_DETAILS, json.dumps(details, default=str))
                    store.set_meta(READ_COMPLETE, _now_iso())
        if reasons and judgement is not None:
            notes.append("the evidence is incomplete (see reasons): the counts below are what "
                         "was read, and the verdict stays unknown")  # fmt: skip
        counts = _counts(store)
        lag = _lag(store, details)
    finally:
        store.close()
    return _finish(run, started_at, judgement, reasons, ledger_reason, counts, lag, details)


def convergence(store: ActiveStore, converged_at_ms: int | None,
                details: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """How long after the load stopped (the ledger's last completed_at) both tables first
    compared equal; equal at the first comparison gives an upper bound (it happened before
    the scan ended)."""
    stopped = store.scalar("SELECT MAX(completed_at) FROM aa_ledger")
    settle = details.get("settle") or {}
    first_equal = settle.get("differing_after_first_compare") == 0
    out: dict[str, Any] = {
        "load_stopped_at_ms": stopped, "converged": converged_at_ms is not None,
        "converged_at_ms": converged_at_ms,
        "measured": "equal at the first comparison: an upper bound" if first_equal
        else f"equal after {settle.get('passes', 0)} settle pass(es)",
    }  # fmt: skip
    if converged_at_ms is None:
        out["measured"] = f"not converged: settling stopped by {settle.get('stopped_by')}"
    if stopped is not None and converged_at_ms is not None:
        out["convergence_ms"] = max(0, converged_at_ms - stopped)
    else:
        out["convergence_ms"] = None
    return out


def _run_details(run: runs.RunDir, config: HarnessConfig) -> dict[str, Any]:
    details: dict[str, Any] = {
        "regions": {"A": config.region_a, "B": config.region_b}, "notes": [],
        "faults": read_fault_log(run.file(runs.FAULTS_FILE)),
        "counts_note": "source_records: staging records read in both regions; target_records: "
        "items (tombstones included) in both tables",
    }  # fmt: skip
    drill = drill_details(run)
    if drill:
        details["drill"] = drill
    return details


def _judge(store: ActiveStore, config: HarnessConfig, own_prefix: str | None,
           details: dict[str, Any]) -> Judgement:  # fmt: skip
    t0 = time.perf_counter()
    judgement = judge(store, {"a": config.region_a, "b": config.region_b}, own_prefix=own_prefix)
    details.setdefault("timings_s", {})["judge"] = round(time.perf_counter() - t0, 3)
    details["judge"] = judgement.details
    details["conflicts"] = judgement.details["conflicts"]
    details["staging"] = {**(details.get("staging") or {}), **staging_details(store.db)}
    note = ("no ledger writes at the items table: the tables were compared with each other "
            "only (no winner, stale, lost or resurrected)")  # fmt: skip
    if not judgement.details["ledger"] and note not in details["notes"]:
        details["notes"].append(note)
    return judgement


def _counts(store: ActiveStore) -> dict[str, int]:
    return {**EMPTY_COUNTS, **store.ledger_counts(),
            "source_records": store.scalar("SELECT COUNT(*) FROM staging"),
            "target_records": store.scalar("SELECT COUNT(*) FROM stamps")}  # fmt: skip


def _lag(store: ActiveStore, details: dict[str, Any]) -> dict[str, Any]:
    found = details.get("applied_lag_file") or {"file": False}
    details["lag"], details["lag_source"], lag = lag_details(store.db, found)
    return lag


def _finish(
    run: runs.RunDir, started_at: str, judgement: Judgement | None, reasons: list[str],
    ledger_reason: str | None, counts: dict[str, int], lag: dict[str, Any],
    details: dict[str, Any],
) -> VerifyResult:  # fmt: skip
    decision = decide(judgement.anomalies if judgement else {}, incomplete=reasons,
                      ledger_incomplete=ledger_reason, wording=REASONS)  # fmt: skip

    def build() -> dict[str, Any]:
        if judgement is None:
            anomalies = {kind: {"count": 0, "examples": []} for kind in KINDS}
            shown = details
        else:
            anomalies = {kind: judgement.anomalies[kind].to_json() for kind in KINDS}
            shown = {**details, "anomaly_details": {
                k: a.details for k, a in judgement.anomalies.items() if a.details}}  # fmt: skip
        return envelope(
            run_id=run.run_id, pipeline=PIPELINE, decision=decision, started_at=started_at,
            finished_at=_now_iso(), counts=counts, anomalies=anomalies,
            watermark=dict(WATERMARK), lag=lag, details=shown,
        )  # fmt: skip

    return write_reports(run, decision.verdict, details, build, render=render_active_html)


def _from_store(run: runs.RunDir, config: HarnessConfig, started_at: str) -> VerifyResult:
    """The complete read kept in verify.sqlite judged again; ``unknown`` when there is none."""
    path = run.file(runs.VERIFY_STORE_FILE)
    store = ActiveStore(path, fresh=False) if path.exists() else None
    try:
        read_at = store.get_meta(READ_COMPLETE) if store else None
        if store is None or read_at is None:
            details = _run_details(run, config)
            details["notes"].append("asked to re-check from the stored read (--from-store, or "
                                    "the run's endpoint is gone); there is none to re-check")  # fmt: skip
            why = f"no complete read in {runs.VERIFY_STORE_FILE}"
            return _finish(run, started_at, None, [f"cannot re-check from the store: {why}"],
                           None, dict(EMPTY_COUNTS), dict.fromkeys(LAG_KEYS), details)  # fmt: skip
        details = json.loads(store.get_meta(READ_DETAILS) or "{}")
        details.setdefault("notes", []).append(
            f"re-checked from {runs.VERIFY_STORE_FILE} (both tables and staging streams read "
            f"at {read_at}); nothing was read from either region again"
        )
        details["from_store"] = {"read_at": read_at}
        options = json.loads(store.get_meta(JUDGE_OPTIONS) or "{}")
        judgement = _judge(store, config, options.get("own_prefix"), details)
        counts, lag = _counts(store), _lag(store, details)
        ledger_reason = store.get_meta(LEDGER_INCOMPLETE)
    finally:
        if store is not None:
            store.close()
    return _finish(run, started_at, judgement, [], ledger_reason, counts, lag, details)
