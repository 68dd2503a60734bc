"""run_verify: read both regions into the store, reconcile, decide, write the reports.

This is the only place that builds boto3 clients (through :class:`xrh.aws.AwsClients`); the
readers and checks below it take their APIs, clocks and sleep as arguments.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from verify.dead_letters import read_bucket
from verify.errors import EndpointUnreachable, VerifyUsageError
from verify.html_report import render_html
from verify.kinesis_reader import error_code, is_connection_error, read_stream
from verify.model import StoreSide, Verdict
from verify.reconcile import FINAL_CHECKPOINT, Reconciliation, decide, reconcile
from verify.report import build_report
from verify.store import Store
from xrh import runs
from xrh.config import HarnessConfig, Side
from xrh.contracts import (
    LEDGER_COMPLETE_KEY,
    WATERMARK_SHARD_ID,
    WatermarkClaim,
    checkpoint_scope,
)
from xrh.errors import EXIT_INVALID, EXIT_UNKNOWN, EXIT_VALID
from xrh.resources import ResourceNames

DEFAULT_TIMEOUT_S = 300.0
EXIT_CODES = {
    Verdict.VALID: EXIT_VALID,
    Verdict.INVALID: EXIT_INVALID,
    Verdict.UNKNOWN: EXIT_UNKNOWN,
}


@dataclass(frozen=True, slots=True)
class VerifyResult:
    report: dict[str, Any]
    verdict: Verdict
    exit_code: int
    report_json: Path
    report_html: Path


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[str], Callable[[int], None]]]:
    """Yields ``task(label) -> advance(n)``; a rich bar per stream when enabled."""
    if not enabled:
        yield lambda label: lambda n: None
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed} records"),
        TimeElapsedColumn(), transient=True,
    ) as bar:  # fmt: skip

        def task(label: str) -> Callable[[int], None]:
            task_id = bar.add_task(label, total=None)
            return lambda n: bar.advance(task_id, n)

        yield task


def load_ledger(store: Store, path: Path, stream: str, notes: list[str]) -> str | None:
    """Import the ledger; returns a reason when it is incomplete (verdict unknown)."""
    if not path.exists():
        notes.append("no ledger.sqlite: source and target compared without a ledger")
        return None
    try:
        rows = store.import_ledger(path, stream)
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            meta = db.execute(
                "SELECT value FROM ledger_meta WHERE name = ?", (LEDGER_COMPLETE_KEY,)
            ).fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        return f"ledger {path} could not be read ({exc}): verdict unknown"
    notes.append(f"ledger: {rows} write attempts at stream {stream}")
    if meta is None or meta[0] != "1":
        return f"ledger {path} is not marked complete (ledger_meta.complete != '1')"
    return None


def load_claims(store: Store, path: Path, stream: str, details: dict[str, Any]) -> None:
    if not path.exists():
        details["claims"] = {"file": False, "lines": 0}
        return
    good, bad, other = [], 0, 0
    with path.open() as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                claim = WatermarkClaim.from_line(line)
            except (ValueError, KeyError, TypeError):
                bad += 1
                continue
            if claim.stream != stream:
                other += 1
                continue
            good.append(claim)
            if len(good) >= 5000:
                store.add_claims(good)
                good.clear()
    store.add_claims(good)
    details["claims"] = {"file": True, "unparseable_lines": bad, "other_streams": other}


def read_final_checkpoint(clients: Any, config: HarnessConfig, stream: str) -> dict | None:
    names = ResourceNames(config.prefix)
    scope = checkpoint_scope("kinesis", stream, config.region_a)
    try:
        item = (
            clients.client("dynamodb", Side.B)
            .get_item(
                TableName=names.checkpoint_table,
                Key={"scope": {"S": scope}, "shardId": {"S": WATERMARK_SHARD_ID}},
                ConsistentRead=True,
            )
            .get("Item")
        )
    except Exception as exc:
        if is_connection_error(exc):
            raise EndpointUnreachable(
                f"region B ({config.region_b}) endpoint not reachable: {exc}"
            ) from exc
        if error_code(exc) == "ResourceNotFoundException":
            return None
        raise
    if not item or "watermarkMs" not in item:
        return None
    return {"scope": scope, "watermark_ms": int(item["watermarkMs"]["N"])}


def run_verify(
    run_dir: Path,
    config: HarnessConfig,
    *,
    fatal_duplicates: bool = False,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    progress: bool = True,
    tolerance_ms: int = 0,
    stream: str | None = None,
    clients: Any = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    incomplete: list[str] | None = None,
    from_store: bool = False,
) -> VerifyResult:
    """Verify one run directory; writes verify.sqlite, report.json and report.html there.

    ``incomplete`` carries reasons known before starting (e.g. the CLI found no endpoint): the
    reads are skipped and the verdict is unknown. ``from_store`` re-checks the complete read an
    earlier verify of this run kept in verify.sqlite, without reading the regions again (the
    embedded endpoint stops with its run); see :func:`stored_read_at`.
    """
    if from_store:
        return _verify_stored(run_dir, config, fatal_duplicates, tolerance_ms, stream)
    run = runs.RunDir(Path(run_dir))
    started_at = _now_iso()
    stream = stream or ResourceNames(config.prefix).stream
    notes: list[str] = []
    details: dict[str, Any] = {
        "tolerance_ms": tolerance_ms,
        "stream": stream,
        "regions": {"source": config.region_a, "target": config.region_b},
        "notes": notes,
    }
    reasons = list(incomplete or [])
    result: Reconciliation | None = None
    ledger_reason: str | None = None
    store = Store(run.file(runs.VERIFY_STORE_FILE))
    try:
        ledger_reason = load_ledger(store, run.file(runs.LEDGER_FILE), stream, notes)
        if ledger_reason:
            store.set_meta(LEDGER_INCOMPLETE, ledger_reason)
        load_claims(store, run.file(runs.CLAIMS_FILE), stream, details)
        if run.file(runs.METRICS_FILE).exists():
            try:
                details["replicator_metrics"] = run.read_json(runs.METRICS_FILE)
            except ValueError:
                notes.append(f"{runs.METRICS_FILE} is not valid JSON")
        if not reasons:
            reasons += _read_regions(
                store, config, stream, details, clients, timeout_s, progress, clock, sleep, wall_ms
            )
        if not reasons:
            store.set_meta(READ_COMPLETE, _now_iso())
            store.set_meta(READ_DETAILS, json.dumps(details, default=str))
            t0 = time.perf_counter()
            store.finalize()
            result = reconcile(store.db, tolerance_ms=tolerance_ms)
            details["timings_s"]["reconcile"] = round(time.perf_counter() - t0, 3)
    finally:
        store.close()
    decision = decide(
        result.anomalies if result else {},
        fatal_duplicates=fatal_duplicates,
        incomplete=reasons,
        ledger_incomplete=ledger_reason,
    )
    return _write_report(run, config, decision, started_at, result, details)


def _write_report(
    run: runs.RunDir,
    config: HarnessConfig,
    decision: Any,
    started_at: str,
    result: Reconciliation | None,
    details: dict[str, Any],
) -> VerifyResult:
    report = build_report(
        run_id=run.run_id,
        pipeline=config.pipeline,
        decision=decision,
        started_at=started_at,
        finished_at=_now_iso(),
        result=result,
        details=details,
    )
    json_path = run.write_json(runs.REPORT_JSON, report)
    html_path = run.file(runs.REPORT_HTML)
    html_path.write_text(render_html(report))
    return VerifyResult(
        report, decision.verdict, EXIT_CODES[decision.verdict], json_path, html_path
    )


READ_COMPLETE = "read_complete"
READ_DETAILS = "read_details"
LEDGER_INCOMPLETE = "ledger_incomplete"


def stored_read_at(run_dir: Path) -> str | None:
    """When a complete read of both regions was stored in this run's verify.sqlite, or None."""
    path = runs.RunDir(Path(run_dir)).file(runs.VERIFY_STORE_FILE)
    if not path.exists():
        return None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = db.execute("SELECT value FROM meta WHERE name = ?", (READ_COMPLETE,)).fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return None
    return row[0] if row else None


def _verify_stored(
    run_dir: Path,
    config: HarnessConfig,
    fatal_duplicates: bool,
    tolerance_ms: int,
    stream: str | None,
) -> VerifyResult:
    """Reconcile the stored read again: the same checks, no network."""
    run = runs.RunDir(Path(run_dir))
    started_at = _now_iso()
    read_at = stored_read_at(run.path)
    if read_at is None:
        raise VerifyUsageError(
            f"--run-dir {run.path}: {runs.VERIFY_STORE_FILE} holds no complete read to re-check"
        )
    store = Store(run.file(runs.VERIFY_STORE_FILE), fresh=False)
    try:
        row = store.db.execute("SELECT value FROM meta WHERE name = ?", (READ_DETAILS,)).fetchone()
        details: dict[str, Any] = json.loads(row[0]) if row else {}
        details.setdefault("notes", []).append(
            f"re-checked from {runs.VERIFY_STORE_FILE} (regions read at {read_at}); "
            "the streams were not read again"
        )
        details["tolerance_ms"] = tolerance_ms
        details["stream"] = stream or details.get("stream") or ResourceNames(config.prefix).stream
        ledger = store.db.execute(
            "SELECT value FROM meta WHERE name = ?", (LEDGER_INCOMPLETE,)
        ).fetchone()
        t0 = time.perf_counter()
        store.finalize()
        result = reconcile(store.db, tolerance_ms=tolerance_ms)
        details.setdefault("timings_s", {})["reconcile"] = round(time.perf_counter() - t0, 3)
    finally:
        store.close()
    decision = decide(
        result.anomalies,
        fatal_duplicates=fatal_duplicates,
        incomplete=[],
        ledger_incomplete=ledger[0] if ledger else None,
    )
    return _write_report(run, config, decision, started_at, result, details)


def _read_regions(
    store: Store,
    config: HarnessConfig,
    stream: str,
    details: dict[str, Any],
    clients: Any,
    timeout_s: float,
    progress: bool,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    wall_ms: Callable[[], int],
) -> list[str]:
    """Fill the store from both regions; returns reasons the evidence is incomplete."""
    if clients is None:
        from xrh.aws import AwsClients

        clients = AwsClients(config, max_attempts=2, connect_timeout=3.0, read_timeout=30.0)
    deadline = clock() + timeout_s
    reads: dict[str, Any] = {}
    details["reads"] = reads
    details["timings_s"] = {}
    reasons: list[str] = []
    t0 = time.perf_counter()
    with _progress(progress) as task:
        for label, side, store_side in (
            ("source", Side.A, StoreSide.SOURCE),
            ("target", Side.B, StoreSide.TARGET),
        ):
            region = config.region(side)

            def add(record: Any, _side: StoreSide = store_side) -> None:
                store.add(_side, record)

            try:
                stats = read_stream(
                    clients.client("kinesis", side), stream, add, deadline=deadline, clock=clock,
                    sleep=sleep, on_progress=task(f"reading {label} {stream} in {region}"),
                )  # fmt: skip
            except EndpointUnreachable as exc:
                url = config.endpoint_url(side) or "AWS"
                return [f"region {side.name} ({region}) endpoint {url} is not reachable: {exc}"]
            except Exception as exc:
                if error_code(exc) == "ResourceNotFoundException":
                    return [f"stream {stream} not found in region {side.name} ({region})"]
                raise
            reads[label] = stats.to_json()
            if not stats.complete:
                reasons.append(
                    f"{label} stream {stream} in {region} not read to its end within "
                    f"{timeout_s:g} s (unfinished shards: {', '.join(stats.unfinished)})"
                )
    store.flush()
    details["timings_s"]["read"] = round(time.perf_counter() - t0, 3)
    try:
        checkpoint = read_final_checkpoint(clients, config, stream)
        dead = _dead_letters(store, clients, config)
    except EndpointUnreachable as exc:
        return [str(exc)]
    details["dead_letters"] = dead
    if checkpoint is not None:
        store.add_claim(wall_ms(), checkpoint["watermark_ms"], "checkpoint", FINAL_CHECKPOINT)
        details["final_checkpoint"] = checkpoint
    else:
        details["final_checkpoint"] = None
    return reasons


def _dead_letters(store: Store, clients: Any, config: HarnessConfig) -> dict[str, Any]:
    names = ResourceNames(config.prefix)
    count, listed = 0, []
    for side in (Side.A, Side.B):
        bucket = names.dead_letter_bucket(config.region(side))
        try:
            for record in read_bucket(clients.client("s3", side), bucket):
                count += 1
                store.add_dead_letter(
                    record.partition_key, record.data, record.reason, record.location
                )
                if len(listed) < 100:
                    listed.append(
                        {
                            "partition_key": record.partition_key,
                            "reason": record.reason,
                            "location": record.location,
                            "data": None
                            if record.data is None
                            else record.data[:500].decode(errors="replace"),
                        }
                    )
        except Exception as exc:
            if is_connection_error(exc):
                raise EndpointUnreachable(
                    f"region {side.name} endpoint not reachable reading {bucket}: {exc}"
                ) from exc
            raise
    return {"count": count, "records": listed, "listed": len(listed)}


def summary_json(result: VerifyResult) -> str:
    return json.dumps({"verdict": result.verdict.value, "exit_code": result.exit_code})
