"""Verify a ``postgres-cdc`` run: the ledger's statements against region A's and region B's
``{prefix}-cdc`` streams and the source table's final state; report.json and report.html.

:func:`run_cdc_verify` is what :func:`verify.runner.run_verify` calls for the pipeline. In order:

1. the ledger's statements (absent: a note; unreadable or not complete: verdict at best
   ``unknown``), the replicator's watermark claims (``claims.jsonl``, scope ``kinesis``: the
   kinesis pipeline's replicator copies the stream), the capture's ``capture-lag.jsonl``;
2. both streams followed and settled by :func:`verify.collect.read_regions` (what A holds and B
   lacks is waited for, ``--settle-seconds`` bounded by ``--verify-timeout``, before it is lost);
3. the table read from PostgreSQL (``postgres.json``'s URL; libpq takes ``PGPASSWORD``);
4. :func:`verify.reconcile.reconcile` (A against B: copies lost, reordered, differing, lag,
   watermark claims) and :func:`verify.cdc.checks.judge` (the ledger and the table).

A read with no reason against it is marked complete in ``verify.sqlite`` (streams, ledger and
table rows all live there), so ``from_store`` (``--from-store``, or ``xrh verify`` finding the
endpoint gone) judges it again without the network or the database; a live verify that finds
the database gone but a complete stored read does the same, saying so.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from verify.cdc import sources
from verify.cdc.checks import KINDS, REASONS, Judgement, judge
from verify.cdc.html import render_cdc_html
from verify.cdc.records import Names
from verify.cdc.store import CdcStore
from verify.collect import load_claims, read_regions
from verify.errors import VerifyUsageError
from verify.reconcile import Reconciliation, decide, reconcile
from verify.report import EMPTY_COUNTS, envelope, watermark_section
from verify.runner import (
    LEDGER_INCOMPLETE,
    READ_COMPLETE,
    READ_DETAILS,
    VerifyResult,
    _has_endpoints,
    _now_iso,
    drill_details,
    stored_read_at,
    write_reports,
)
from xrh import postgres_cdc as pc
from xrh import runs
from xrh.config import HarnessConfig
from xrh.faults import read_fault_log
from xrh.resources import ResourceNames

JUDGE_OPTIONS = "cdc_judge_options"
NO_WATERMARK = {"claimed": None, "verified": None, "held": None, "claims": [],
                "statement": "not checked: verify did not reach a reconciliation"}  # fmt: skip


def run_cdc_verify(
    run_dir: Path, config: HarnessConfig, *, timeout_s: float, progress: bool = False,
    fatal_duplicates: bool = False, tolerance_ms: int = 0, clients: Any = None,
    clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
    wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    incomplete: list[str] | None = None, from_store: bool = False, settle_s: float = 30.0,
) -> VerifyResult:  # fmt: skip
    """Verify one ``postgres-cdc`` run directory (see the module's docstring)."""
    run = runs.RunDir(Path(run_dir))
    started_at = _now_iso()
    names = Names.of(config.prefix, sources.cdc_names(run.path))
    db_info = sources.database(run.path)
    options = {"fatal_duplicates": fatal_duplicates, "tolerance_ms": tolerance_ms}
    if from_store:
        return _from_store(run, config, names, started_at, options, None)
    details = _details(run, config, names, db_info)
    table = details["source_table"]["name"]
    db_reason = ("no postgres.json in the run directory" if db_info is None
                 else sources.probe(db_info, table))  # fmt: skip
    if db_reason and stored_read_at(run.path):
        return _from_store(run, config, names, started_at, options,
                           f"the table {table} cannot be read ({db_reason})")  # fmt: skip
    notes: list[str] = details["notes"]
    reasons = list(incomplete or [])
    own_prefix = f"{run.run_id}/" if run.file(runs.LEDGER_FILE).exists() else None
    store = CdcStore(run.file(runs.VERIFY_STORE_FILE), names=names, own_prefix=own_prefix)
    try:
        ledger_reason = sources.import_ledger(store, run.file(runs.LEDGER_FILE), notes)
        if ledger_reason:
            store.set_meta(LEDGER_INCOMPLETE, ledger_reason)
        stream = details["stream"]
        kinesis = dataclasses.replace(config, pipeline="kinesis")  # the replicator's scope
        load_claims(store, run.path, kinesis, stream, details)
        details["capture_lag"] = sources.load_capture_lag(store, run.path)
        if clients is None and not _has_endpoints(config):
            reasons.append("no endpoint to read from")
        else:
            reasons += [r for r in read_regions(
                store, kinesis, stream, details, clients, timeout_s, progress, clock, sleep,
                wall_ms, settle_s=settle_s, run_path=run.path) if r not in reasons]  # fmt: skip
        table_read = False
        if db_reason:
            reasons.append(f"the table cannot be read and no earlier read is stored: {db_reason}")
        else:
            try:
                t0 = time.perf_counter()
                details["source_table"]["rows"] = sources.read_table(
                    store, db_info, table, own_prefix)  # fmt: skip
                details["timings_s"]["read_table"] = round(time.perf_counter() - t0, 3)
                table_read = True
            except Exception as exc:  # noqa: BLE001 - any database failure: unknown, said why
                reasons.append(f"the table {table} could not be read: {exc}")
        judge_options = {**options, "has_ledger": own_prefix is not None,
                         "table_read": table_read}  # fmt: skip
        rec, judgement = _judge(store, judge_options, details)
        if reasons:
            notes.append("the evidence is incomplete (see reasons): the counts below are what "
                         "was read, and the verdict stays unknown")  # fmt: skip
        else:
            store.set_meta(JUDGE_OPTIONS, json.dumps(judge_options))
            store.set_meta(READ_DETAILS, json.dumps(details, default=str))
            store.set_meta(READ_COMPLETE, _now_iso())
        counts = _counts(store)
    finally:
        store.close()
    return _finish(run, started_at, rec, judgement, reasons, ledger_reason, counts, details,
                   fatal_duplicates)  # fmt: skip


def _details(run: runs.RunDir, config: HarnessConfig, names: Names,
             db_info: dict[str, Any] | None) -> dict[str, Any]:  # fmt: skip
    table = (db_info or {}).get("table") or f"{pc.SCHEMA}.{pc.table_name(config.prefix)}"
    return {
        "regions": {"source": config.region_a, "target": config.region_b},
        "stream": ResourceNames(config.prefix).cdc_stream,
        "source_table": {"name": table, "url": (db_info or {}).get("url")},
        "names": {**dataclasses.asdict(names), "source": "config.json cdc_names (table-mapping "
                  "renames)" if names.renamed else "the contract's names (no cdc_names in "
                  "config.json)"},  # fmt: skip
        "notes": [], "timings_s": {}, "faults": read_fault_log(run.file(runs.FAULTS_FILE)),
        **({"drill": drill} if (drill := drill_details(run)) else {}),
    }  # fmt: skip


def _judge(store: CdcStore, options: dict[str, Any],
           details: dict[str, Any]) -> tuple[Reconciliation, Judgement]:  # fmt: skip
    t0 = time.perf_counter()
    store.finalize()
    rec = reconcile(store.db, tolerance_ms=options["tolerance_ms"])
    judgement = judge(store.db, rec, has_ledger=options["has_ledger"],
                      table_read=options["table_read"])  # fmt: skip
    details.setdefault("timings_s", {})["reconcile"] = round(time.perf_counter() - t0, 3)
    return rec, judgement


def _counts(store: CdcStore) -> dict[str, int]:
    names = {"ok": "acknowledged", "fail": "failed", "unknown": "unknown"}
    counts = dict(EMPTY_COUNTS)
    for status, n, txns in store.db.execute(
        "SELECT status, COUNT(*), COUNT(DISTINCT txn) FROM stmts GROUP BY status"
    ):
        counts[names.get(status, "unknown")] += n
        key = f"{names.get(status, 'unknown')}_transactions"
        counts[key] = counts.get(key, 0) + txns
    for region, n in store.db.execute("SELECT region, COUNT(*) FROM changes GROUP BY region"):
        counts["source_records" if region == "a" else "target_records"] = n
    return counts


def _from_store(run: runs.RunDir, config: HarnessConfig, names: Names, started_at: str,
                options: dict[str, Any], why: str | None) -> VerifyResult:  # fmt: skip
    """Judge the complete read kept in verify.sqlite again: no stream, no database."""
    read_at = stored_read_at(run.path)
    if read_at is None:
        raise VerifyUsageError(
            f"--run-dir {run.path}: {runs.VERIFY_STORE_FILE} holds no complete read to re-check")
    store = CdcStore(run.file(runs.VERIFY_STORE_FILE), names=names, fresh=False)
    try:
        details = json.loads(store.get_meta(READ_DETAILS) or "{}")
        stored = json.loads(store.get_meta(JUDGE_OPTIONS) or "{}")
        details.setdefault("notes", []).append(
            (f"{why}: " if why else "") + f"re-checked from {runs.VERIFY_STORE_FILE} (streams, "
            f"ledger and table read at {read_at}); nothing was read again")  # fmt: skip
        details["from_store"] = {"read_at": read_at}
        rec, judgement = _judge(store, {**stored, **options}, details)
        counts = _counts(store)
        ledger_reason = store.get_meta(LEDGER_INCOMPLETE)
    finally:
        store.close()
    return _finish(run, started_at, rec, judgement, [], ledger_reason, counts, details,
                   options["fatal_duplicates"])  # fmt: skip


def _finish(run: runs.RunDir, started_at: str, rec: Reconciliation | None,
            judgement: Judgement | None, reasons: list[str], ledger_reason: str | None,
            counts: dict[str, int], details: dict[str, Any],
            fatal_duplicates: bool) -> VerifyResult:  # fmt: skip
    anomalies = judgement.anomalies if judgement else {}
    decision = decide(anomalies, fatal_duplicates=fatal_duplicates, incomplete=reasons,
                      ledger_incomplete=ledger_reason, wording=REASONS)  # fmt: skip
    shown = {k: (anomalies[k].to_json() if k in anomalies else {"count": 0, "examples": []})
             for k in KINDS}  # fmt: skip
    if judgement is not None and rec is not None:
        details = {
            **details, **judgement.details,
            "anomaly_details": {k: a.details for k, a in anomalies.items() if a.details},
            "lag_per_shard": rec.lag.per_shard, "lag_from_commit_ms": rec.lag.from_commit,
            "lag_over_time": {"bucket_ms": rec.lag.bucket_ms, "buckets": rec.lag.over_time},
            "rates": rec.lag.rates,
        }  # fmt: skip
    lag = rec.lag.overall if rec else dict.fromkeys(("p50", "p90", "p99", "max"))
    watermark = watermark_section(rec) if rec else dict(NO_WATERMARK)
    return write_reports(
        run, decision.verdict, details,
        lambda: envelope(run_id=run.run_id, pipeline=pc.PIPELINE, decision=decision,
                         started_at=started_at, finished_at=_now_iso(), counts=counts,
                         anomalies=shown, watermark=watermark, lag=lag, details=details),
        render=render_cdc_html,
    )  # fmt: skip
