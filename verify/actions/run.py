"""Verify an ``action-log`` run: region A's actions stream folded, both regions' tables against
the fold, the ledger against the stream; report.json and report.html in the run directory.

:func:`run_action_verify` is what :func:`verify.runner.run_verify` calls for the pipeline
(and so ``xrh verify --run-dir`` and the locustfile). In order:

1. the ledger's attempts at ``{prefix}-actions`` (:func:`verify.ledger_file.load_ledger_file`:
   absent is a note, unreadable or not marked complete keeps the verdict from ``valid``), and
   the consumers' lag file (:mod:`verify.actions.lag`);
2. the actions stream read whole and folded (:mod:`verify.actions.fold`) into ``verify.sqlite``;
3. both tables scanned and compared with the fold, settling while the lazy consumer catches
   up (:mod:`verify.actions.compare`);
4. the checks (:mod:`verify.actions.checks`) and the verdict by
   :func:`verify.reconcile.decide`'s rules: unread evidence is ``unknown``, any anomaly
   ``invalid``.

A read with no reason to call it incomplete is marked in its stores
(:func:`verify.actions.stored.mark_complete`); ``from_store`` (``--from-store``, or
``xrh verify`` finding the run's endpoint gone) judges that read again without the network:
the same judge over the same stored log, fold, table items and lag, so the same verdict. A
store without a complete read gives ``unknown``, saying so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from verify.actions.checks import REASONS, Judgement, judge
from verify.actions.compare import SIDES, TableComparison, open_stores
from verify.actions.fold import fold, read_actions
from verify.actions.html import render_action_html
from verify.actions.lag import LAG_KEYS, lag_report, load_lag
from verify.actions.store import ActionStore
from verify.actions.stored import Stored, incomplete_reason, mark_complete
from verify.errors import EndpointUnreachable
from verify.kinesis_reader import error_code
from verify.ledger_file import load_ledger_file
from verify.reconcile import decide
from verify.report import EMPTY_COUNTS, envelope
from verify.runner import LEDGER_INCOMPLETE, VerifyResult, drill_details, write_reports
from verify.tables.run import table_clients
from verify.tables.store import TableStore
from xrh import runs
from xrh.config import EndpointMode, HarnessConfig, Side
from xrh.faults import read_fault_log
from xrh.resources import ResourceNames

PIPELINE = "action-log"
MALFORMED_LISTED = 20
WATERMARK = {
    "claimed": None, "verified": None, "held": None, "claims": [],
    "statement": "does not apply to the action-log pipeline: each table is compared with the "
    "fold of the actions log, and the consumers publish no watermark",
}  # fmt: skip


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _has_endpoints(config: HarnessConfig) -> bool:
    return config.endpoint_mode is EndpointMode.AWS or bool(
        config.endpoint_url_a and config.endpoint_url_b
    )


def import_ledger(store: ActionStore, path: Path, stream: str, notes: list[str]) -> str | None:
    """The ledger's ``action-log`` attempts at ``stream`` into the store; a reason when the
    ledger is unreadable or incomplete, else None."""

    def copy_rows(ledger: Any) -> int:
        cursor = ledger.execute(
            "SELECT trace, key, op, status, shard_id, sequence_number, commit_ts FROM ledger "
            "WHERE pipeline = ? AND (target = ? OR target LIKE ?)",
            (PIPELINE, stream, f"%/{stream}"),
        )
        return store.add_ledger_rows(cursor)

    return load_ledger_file(path, notes, copy_rows, target=f"stream {stream}",
                            absent="the tables compared with the log without a ledger")  # fmt: skip


def ledger_counts(store: ActionStore) -> dict[str, int]:
    counts = {"acknowledged": 0, "failed": 0, "unknown": 0}
    names = {"ok": "acknowledged", "fail": "failed", "unknown": "unknown"}
    for status, n in store.db.execute("SELECT status, COUNT(*) FROM ledger GROUP BY status"):
        counts[names.get(status, "unknown")] += n
    return counts


def log_details(store: ActionStore, stream: str) -> dict[str, Any]:
    """What was read from the stream: actions by kind, malformed records with their errors."""
    by_action = dict(store.db.execute("SELECT action, COUNT(*) FROM actions GROUP BY action"))
    malformed = [
        {"shard": s, "sequence_number": q, "partition_key": p, "trace": t, "error": e, "data": d}
        for s, q, p, t, e, d in store.db.execute(
            "SELECT shard, seq, partition_key, trace, error, data FROM malformed ORDER BY ord "
            "LIMIT ?", (MALFORMED_LISTED,))
    ]  # fmt: skip
    return {"stream": stream, "actions": sum(by_action.values()), "by_action": by_action,
            "ops": store.count("ops"), "malformed": store.count("malformed"),
            "malformed_examples": malformed}  # fmt: skip


def run_action_verify(
    run_dir: Path, config: HarnessConfig, *, timeout_s: float, progress: bool = False,
    clients: Any = None, clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep, incomplete: list[str] | None = None,
    from_store: bool = False, settle_s: float = 30.0, scan_segments: int = 4,
    poll_s: float = 1.0,
) -> VerifyResult:  # fmt: skip
    """Verify one ``action-log`` run directory; writes verify.sqlite (the log and the fold),
    verify-items-{a,b}.sqlite (the comparisons), report.json and report.html there;
    ``from_store``: judges the complete read kept there again, without the network."""
    del progress  # the reads are short; the summary says what was done
    run = runs.RunDir(Path(run_dir))
    names = ResourceNames(config.prefix)
    stream, table = names.actions_stream, names.items_table
    started_at = _now_iso()
    if from_store:
        return _from_store(run, config, started_at)
    details = _run_details(run, config)
    notes: list[str] = details["notes"]
    reasons = list(incomplete or [])
    judgement: Judgement | None = None
    stored_reason = incomplete_reason(run.path)  # before the stores start afresh
    store = ActionStore(run.file(runs.VERIFY_STORE_FILE))
    try:
        ledger_reason = import_ledger(store, run.file(runs.LEDGER_FILE), stream, notes)
        if ledger_reason:
            store.set_meta(LEDGER_INCOMPLETE, ledger_reason)
        own_prefix = f"{run.run_id}/" if run.file(runs.LEDGER_FILE).exists() else None
        details["consumer_lag"] = load_lag(store, run.path)
        lag, details["lag_source"] = lag_report(store, details["consumer_lag"])
        if clients is None and _has_endpoints(config):
            clients = table_clients(config, scan_segments)
        if clients is None:
            reasons.append("no endpoint to read from")
        else:
            read_reasons, judgement = _read_and_judge(
                store, run, config, clients, stream, table, details, timeout_s, settle_s,
                scan_segments, clock, sleep, poll_s, own_prefix, mark=not reasons,
            )  # fmt: skip
            reasons += read_reasons
        if reasons and judgement is not None:
            notes.append("the evidence is incomplete (see reasons): the counts below are what "
                         "was read, and the verdict stays unknown")  # fmt: skip
        elif reasons and stored_reason is not None:
            reasons.append(f"no complete earlier read to re-check instead: {stored_reason}")
        counts = _counts(store, details)
    finally:
        store.close()
    return _finish(run, started_at, judgement, reasons, ledger_reason, counts, lag, details)


def _run_details(run: runs.RunDir, config: HarnessConfig) -> dict[str, Any]:
    """The report's details before anything is read: regions, faults, a drill's steps."""
    details: dict[str, Any] = {
        "regions": {"source": config.region_a, "target": config.region_b},
        "notes": [],
        "faults": read_fault_log(run.file(runs.FAULTS_FILE)),
    }
    drill = drill_details(run)
    if drill:
        details["drill"] = drill
    return details


def _counts(store: ActionStore, details: dict[str, Any]) -> dict[str, int]:
    return {**EMPTY_COUNTS, **ledger_counts(store),
            "source_records": store.count("actions") + store.count("malformed"),
            "target_records": (details.get("tables") or {}).get("B", {}).get("items", 0)}  # fmt: skip


def _finish(
    run: runs.RunDir, started_at: str, judgement: Judgement | None, reasons: list[str],
    ledger_reason: str | None, counts: dict[str, int], lag: dict[str, Any],
    details: dict[str, Any],
) -> VerifyResult:  # fmt: skip
    """The verdict by :func:`verify.reconcile.decide`'s rules, report.json and report.html."""
    decision = decide(judgement.anomalies if judgement else {}, incomplete=reasons,
                      ledger_incomplete=ledger_reason, wording=REASONS)  # fmt: skip
    return write_reports(
        run, decision.verdict, details,
        lambda: _report(run, decision, started_at, judgement, counts, lag, details),
        render=render_action_html,
    )  # fmt: skip


def _from_store(run: runs.RunDir, config: HarnessConfig, started_at: str) -> VerifyResult:
    """Judge the complete read an earlier verify kept in the run's stores, reading nothing
    from the regions; ``unknown`` with the reason when the stores hold no complete read."""
    reason = incomplete_reason(run.path)
    if reason is not None:
        details = _run_details(run, config)
        details["notes"].append("asked to re-check from the stored read (--from-store, or the "
                                "run's endpoint is gone); there is none to re-check")  # fmt: skip
        return _finish(run, started_at, None, [f"cannot re-check from the store: {reason}"],
                       None, dict(EMPTY_COUNTS), dict.fromkeys(LAG_KEYS), details)  # fmt: skip
    stored = Stored(run.path)
    try:
        details = stored.details
        details.setdefault("notes", []).append(
            f"re-checked from {runs.VERIFY_STORE_FILE}, verify-items-a.sqlite and "
            f"verify-items-b.sqlite (the actions stream and both tables read at "
            f"{stored.read_at}); nothing was read from either region again"
        )
        details["from_store"] = {"read_at": stored.read_at}
        found = details.get("consumer_lag") or {"file": False, "note": "no lag stored"}
        lag, details["lag_source"] = lag_report(stored.store, found)
        judgement = _judge(stored.store, stored.items, stored.options["table"],
                           stored.options.get("own_prefix"), details)  # fmt: skip
        counts = _counts(stored.store, details)
        ledger_reason = stored.store.get_meta(LEDGER_INCOMPLETE)
    finally:
        stored.close()
    return _finish(run, started_at, judgement, [], ledger_reason, counts, lag, details)


def _judge(
    store: ActionStore, item_stores: dict[Side, TableStore], table: str,
    own_prefix: str | None, details: dict[str, Any],
) -> Judgement:  # fmt: skip
    t0 = time.perf_counter()
    compared = {side.name: (table, item_stores[side].db) for side in SIDES}
    judgement = judge(store.db, compared, own_prefix=own_prefix)
    details.setdefault("timings_s", {})["judge"] = round(time.perf_counter() - t0, 3)
    details["foreign"] = {"items": judgement.details["foreign_items"]}
    details["anomalies_per_region"] = judgement.details["anomalies_per_region"]
    return judgement


def _read_and_judge(
    store: ActionStore, run: runs.RunDir, config: HarnessConfig, clients: Any, stream: str,
    table: str, details: dict[str, Any], timeout_s: float, settle_s: float, segments: int,
    clock: Callable[[], float], sleep: Callable[[float], None], poll_s: float,
    own_prefix: str | None, *, mark: bool = True,
) -> tuple[list[str], Judgement | None]:  # fmt: skip
    """Read and fold the log, compare both tables, judge: the reasons the evidence is
    incomplete, and the judgement (None when nothing could be compared). ``mark``: a read
    with no reason against it is marked complete in the stores, for re-checking."""
    deadline = clock() + timeout_s
    timings = details.setdefault("timings_s", {})
    t0 = time.perf_counter()
    try:
        stats = read_actions(clients.client("kinesis", Side.A), stream, store,
                             deadline=deadline, clock=clock, sleep=sleep)  # fmt: skip
    except EndpointUnreachable as exc:
        return [f"region A: {exc}"], None
    except Exception as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return [
                f"the actions stream {stream} in region A ({config.region_a}) does not exist"
            ], None
        raise
    details["log"] = {**log_details(store, stream), "read": stats.to_json()}
    timings["read_log"] = round(time.perf_counter() - t0, 3)
    if not stats.complete:
        return [f"the actions stream {stream} was not read to its end in time (unfinished "
                f"shards: {', '.join(stats.unfinished)})"], None  # fmt: skip
    if details["log"]["malformed"]:
        details["notes"].append(
            f"{details['log']['malformed']} record(s) of the actions stream are not actions "
            "(listed in details.log.malformed_examples); no consumer can apply them, so the "
            "fold leaves them out"
        )
    t1 = time.perf_counter()
    details["fold"] = fold(store).to_json()
    timings["fold"] = round(time.perf_counter() - t1, 3)
    stores = open_stores(run.path, store)
    judgement = None
    try:
        comparison = TableComparison(stores, clients, config, table, details, segments=segments,
                                     clock=clock, sleep=sleep, poll_s=poll_s)  # fmt: skip
        remaining = max(1.0, deadline - clock())
        reasons = comparison.run(remaining, settle_s)
        if "chunks" in (details["tables"].get("B") or {}) or not reasons:
            judgement = _judge(store, stores, table, own_prefix, details)
            if mark and not reasons:
                mark_complete(store, stores, details,
                              {"table": table, "own_prefix": own_prefix})  # fmt: skip
    finally:
        for table_store in stores.values():
            table_store.close()
    return reasons, judgement


def _report(
    run: runs.RunDir, decision: Any, started_at: str, judgement: Judgement | None,
    counts: dict[str, Any], lag: dict[str, Any], details: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    from verify.actions.checks import KINDS

    if judgement is None:
        anomalies = {kind: {"count": 0, "examples": []} for kind in KINDS}
    else:
        anomalies = {kind: judgement.anomalies[kind].to_json() for kind in KINDS}
        details = {**details, "anomaly_details": {
            k: a.details for k, a in judgement.anomalies.items() if a.details}}  # fmt: skip
    return envelope(
        run_id=run.run_id, pipeline=PIPELINE, decision=decision, started_at=started_at,
        finished_at=_now_iso(), counts=counts, anomalies=anomalies, watermark=dict(WATERMARK),
        lag=lag, details=details,
    )  # fmt: skip
