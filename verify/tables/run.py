"""Table verify's entry points: a ``dynamodb`` run directory, and ``xrh verify --table``.

- :func:`run_table_verify` (called by :func:`verify.runner.run_verify` for a ``dynamodb``
  run): ``{prefix}-items`` in A against the same table in B, with the run's ledger, the
  bootstrap copy's state row and the replicator's apply lag;
- :func:`verify_tables`: any table in A against a table in B, no ledger (replication a user
  runs: global tables, DMS), the key schema taken from DescribeTable; the table names are kept
  in the run directory's ``verify-table.json`` so ``--run-dir`` verifies the same pair again.

Both read into the run's ``verify.sqlite`` (:mod:`verify.tables.collect`), judge
(:mod:`verify.tables.checks`) and write report.json / report.html through
:func:`verify.runner.write_reports`; the verdict rules are :func:`verify.reconcile.decide`'s,
its reasons worded for keys and items (:data:`verify.tables.checks.KEY_REASONS`).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from verify.errors import EndpointUnreachable, VerifyUsageError
from verify.reconcile import decide
from verify.report import build_table_report
from verify.runner import (
    LEDGER_INCOMPLETE,
    READ_COMPLETE,
    READ_DETAILS,
    VerifyResult,
    drill_details,
    write_reports,
)
from verify.tables.checks import KEY_REASONS, Judgement, judge
from verify.tables.collect import TableReader, describe_pair
from verify.tables.evidence import (
    apply_lag,
    import_ledger,
    ledger_by_op,
    ledger_counts,
    read_bootstrap,
)
from verify.tables.store import TableStore
from xrh import runs
from xrh.config import EndpointMode, HarnessConfig
from xrh.faults import read_fault_log
from xrh.resources import ResourceNames

TABLE_FILE = "verify-table.json"
JUDGE_OPTIONS = "judge_options"
DELETES_NOTE = (
    "acknowledged deletes are checked through the final state only: a delete of an absent "
    "item leaves no stream record and a REMOVE record names no writer, so a delete is judged "
    "by whether B still holds what A removed (stale), not by its trace"
)


@dataclass(frozen=True, slots=True)
class _Job:
    run: runs.RunDir
    config: HarnessConfig
    table_a: str
    table_b: str
    with_ledger: bool  # a run of the harness: ledger, bootstrap row, replicator metrics
    option_a: str = "--table"
    option_b: str = "--table-b"


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def run_table_verify(
    run_dir: Path, config: HarnessConfig, *, timeout_s: float, progress: bool = False,
    clients: Any = None, clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep, incomplete: list[str] | None = None,
    from_store: bool = False, settle_s: float = 30.0, scan_segments: int = 4,
) -> VerifyResult:  # fmt: skip
    """Verify a ``dynamodb`` run (or a ``--table`` run directory again)."""
    run = runs.RunDir(Path(run_dir))
    names = ResourceNames(config.prefix)
    job = _Job(run, config, names.items_table, names.items_table, with_ledger=True,
               option_a="--prefix", option_b="--prefix")  # fmt: skip
    if run.file(TABLE_FILE).exists():
        try:
            pair = run.read_json(TABLE_FILE)
            job = _Job(run, config, str(pair["table_a"]), str(pair["table_b"]), False)
        except (ValueError, KeyError, TypeError) as exc:
            raise VerifyUsageError(f"{run.file(TABLE_FILE)}: unusable ({exc})") from None
    if from_store:
        return _from_store(job)
    return _verify(job, timeout_s, settle_s, scan_segments, progress, clients, clock, sleep,
                   incomplete or [])  # fmt: skip


def verify_tables(
    run_dir: Path, config: HarnessConfig, table_a: str, table_b: str | None = None, *,
    timeout_s: float, progress: bool = False, clients: Any = None,
    clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
    settle_s: float = 30.0, scan_segments: int = 4,
) -> VerifyResult:  # fmt: skip
    """``xrh verify --table``: table A against table B (same name unless ``table_b``)."""
    run = runs.RunDir(Path(run_dir))
    job = _Job(run, config, table_a, table_b or table_a, with_ledger=False)
    run.write_json(TABLE_FILE, {"table_a": job.table_a, "table_b": job.table_b})
    return _verify(job, timeout_s, settle_s, scan_segments, progress, clients, clock, sleep, [])


def table_clients(config: HarnessConfig, segments: int) -> Any:
    from xrh.aws import AwsClients

    return AwsClients(config, max_attempts=4, connect_timeout=3.0, read_timeout=30.0,
                      max_pool_connections=2 * segments + 8)  # fmt: skip


def _has_endpoints(config: HarnessConfig) -> bool:
    return config.endpoint_mode is EndpointMode.AWS or bool(
        config.endpoint_url_a and config.endpoint_url_b
    )


def _verify(
    job: _Job, timeout_s: float, settle_s: float, segments: int, progress: bool, clients: Any,
    clock: Callable[[], float], sleep: Callable[[float], None], incomplete: list[str],
) -> VerifyResult:  # fmt: skip
    run, config = job.run, job.config
    started_at = _now_iso()
    notes: list[str] = [DELETES_NOTE]
    details: dict[str, Any] = {
        "mode": "run" if job.with_ledger else "table",
        "regions": {"source": config.region_a, "target": config.region_b},
        "table": {"table_a": job.table_a, "table_b": job.table_b},
        "notes": notes,
    }
    reasons = list(incomplete)
    ledger_reason: str | None = None
    own_prefix = None
    if job.with_ledger:
        _run_events(run, details)
        metrics = None
        if run.file(runs.METRICS_FILE).exists():
            try:
                metrics = run.read_json(runs.METRICS_FILE)
            except ValueError:
                notes.append(f"{runs.METRICS_FILE} is not valid JSON")
        lag, details["lag_source"] = apply_lag(metrics)
    else:
        lag, details["lag_source"] = apply_lag(None)
        details["lag_source"] = "not measured: tables compared without a replicator's metrics"
    store = TableStore(run.file(runs.VERIFY_STORE_FILE))
    judgement: Judgement | None = None
    try:
        if job.with_ledger and run.file(runs.LEDGER_FILE).exists():
            own_prefix = f"{run.run_id}/"
            ledger_reason = import_ledger(store, run.file(runs.LEDGER_FILE), job.table_a, notes)
            if ledger_reason:
                store.set_meta(LEDGER_INCOMPLETE, ledger_reason)
        elif job.with_ledger:
            notes.append("no ledger.sqlite: the tables compared without a ledger")
        if clients is None and _has_endpoints(config):
            clients = table_clients(config, segments)
        reader = None
        if clients is None:
            reasons.append("no endpoint to read from")
        else:
            try:
                pair = describe_pair(clients, config, job.table_a, job.table_b,
                                     option_a=job.option_a, option_b=job.option_b)  # fmt: skip
                details["table"].update(key=list(pair.key_names), stream_arn=pair.stream_arn)
                if pair.stream_arn is None:
                    notes.append(f"{job.table_a} in region A has no stream: stale is not "
                                 "judged (lost, phantom and diverged are)")  # fmt: skip
                reader = TableReader(store, clients, pair, details, segments=segments,
                                     clock=clock, sleep=sleep, progress=progress)  # fmt: skip
                reasons += reader.read(timeout_s, settle_s)
                if job.with_ledger:
                    details["bootstrap"] = read_bootstrap(clients, config, job.table_a)
            except EndpointUnreachable as exc:
                reasons.append(str(exc))
            except VerifyUsageError as exc:
                if not job.with_ledger:
                    raise
                reasons.append(f"the run's table cannot be read: {exc}")
        if reader is not None and "chunks" in details:
            stream = reader.stream.stats if reader.stream else None
            options = {
                "own_prefix": own_prefix,
                "stream": stream is not None,
                "history_complete": bool(stream and stream.complete and not stream.trimmed),
            }
            store.set_meta(JUDGE_OPTIONS, json.dumps(options))
            if not reasons:
                store.set_meta(READ_COMPLETE, _now_iso())
                store.set_meta(READ_DETAILS, json.dumps(details, default=str))
            judgement = _judge(store, options, details)
            if reasons:
                notes.append("the evidence is incomplete (see reasons): the counts below are "
                              "what was read, and the verdict stays unknown")  # fmt: skip
        counts = _counts(store)
    finally:
        store.close()
    return _report(job, started_at, judgement, reasons, ledger_reason, counts, lag, details)


def _run_events(run: runs.RunDir, details: dict[str, Any]) -> None:
    """What happened to the run besides its writes: injected faults and a drill's steps, as
    the kinesis report has them (the drill matrix and the HTML read them from details). No
    recovery time: a table holds no arrival times to measure it by."""
    details["faults"] = read_fault_log(run.file(runs.FAULTS_FILE))
    drill = drill_details(run)
    if drill:
        details["drill"] = drill


def _judge(store: TableStore, options: dict[str, Any], details: dict[str, Any]) -> Judgement:
    t0 = time.perf_counter()
    judgement = judge(store.db, chunks=store.chunks, own_prefix=options["own_prefix"],
                      stream=options["stream"],
                      history_complete=options["history_complete"])  # fmt: skip
    details.setdefault("timings_s", {})["judge"] = round(time.perf_counter() - t0, 3)
    details["foreign"] = {"keys": judgement.details.get("foreign_keys", 0)}
    if "note" in judgement.details:
        details["notes"].append(judgement.details["note"])
    details["ledger_by_op"] = ledger_by_op(store)
    return judgement


def _counts(store: TableStore) -> dict[str, int]:
    return {**ledger_counts(store), "source_records": store.count("a"),
            "target_records": store.count("b")}  # fmt: skip


def _report(
    job: _Job, started_at: str, judgement: Judgement | None, reasons: list[str],
    ledger_reason: str | None, counts: dict[str, int], lag: dict[str, Any],
    details: dict[str, Any],
) -> VerifyResult:  # fmt: skip
    decision = decide(judgement.anomalies if judgement else {}, incomplete=reasons,
                      ledger_incomplete=ledger_reason, wording=KEY_REASONS)  # fmt: skip
    return write_reports(
        job.run, decision.verdict, details,
        lambda: build_table_report(
            run_id=job.run.run_id, pipeline="dynamodb", decision=decision,
            started_at=started_at, finished_at=_now_iso(),
            anomalies=judgement.anomalies if judgement else None, counts=counts, lag=lag,
            details=details,
        ),
    )  # fmt: skip


def _from_store(job: _Job) -> VerifyResult:
    """Judge the complete read an earlier verify kept in verify.sqlite, without the network."""
    run = job.run
    started_at = _now_iso()
    path = run.file(runs.VERIFY_STORE_FILE)
    if not path.exists():
        raise VerifyUsageError(f"--run-dir {run.path}: no {runs.VERIFY_STORE_FILE} to re-check")
    store = TableStore(path, fresh=False)
    try:
        read_at = store.get_meta(READ_COMPLETE)
        options = store.get_meta(JUDGE_OPTIONS)
        if read_at is None or options is None:
            raise VerifyUsageError(
                f"--run-dir {run.path}: {runs.VERIFY_STORE_FILE} holds no complete read to "
                "re-check"
            )
        details = json.loads(store.get_meta(READ_DETAILS) or "{}")
        details.setdefault("notes", []).append(
            f"re-checked from {runs.VERIFY_STORE_FILE} (regions read at {read_at}); the "
            "tables were not read again"
        )
        ledger_reason = store.get_meta(LEDGER_INCOMPLETE)
        judgement = _judge(store, json.loads(options), details)
        counts = _counts(store)
    finally:
        store.close()
    lag = {k: None for k in ("p50", "p90", "p99", "max")}
    if job.with_ledger and run.file(runs.METRICS_FILE).exists():
        with contextlib.suppress(ValueError):
            lag, details["lag_source"] = apply_lag(run.read_json(runs.METRICS_FILE))
    return _report(job, started_at, judgement, [], ledger_reason, counts, lag, details)
