"""run_verify: collect both regions into the store (verify.collect), reconcile, decide, write the reports.

This is the only place that builds boto3 clients (through :class:`xrh.aws.AwsClients`); the
readers and checks below it take their APIs, clocks and sleep as arguments.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from verify.collect import DEFAULT_SETTLE_S, load_claims, load_ledger, read_regions
from verify.errors import VerifyUsageError
from verify.html_report import RENDERING_RUN_DIR, render_html
from verify.lag import caught_up_after
from verify.model import StoreSide, Verdict
from verify.reconcile import Reconciliation, decide, reconcile
from verify.report import build_report
from verify.store import Store
from xrh import runs
from xrh.config import EndpointMode, HarnessConfig
from xrh.drills.nemesis import TIMELINE_FILE, read_timeline
from xrh.errors import EXIT_INVALID, EXIT_UNKNOWN, EXIT_VALID
from xrh.faults import read_fault_log
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
    settle_s: float = DEFAULT_SETTLE_S,
    scan_segments: int = 4,
) -> VerifyResult:
    """Verify one run directory; writes verify.sqlite, report.json and report.html there.

    ``incomplete`` carries reasons known before starting (the replicator did not drain, the CLI
    found no endpoint): the verdict is unknown, but whatever can be read is read and reported,
    so an unknown verdict still shows its evidence. ``from_store`` re-checks the complete read
    an earlier verify of this run kept in verify.sqlite, without reading the regions again (the
    embedded endpoint stops with its run); see :func:`stored_read_at`. ``settle_s``: how long
    the target may make no progress before what it lacks is called lost. A ``dynamodb`` run
    is verified by :mod:`verify.tables` (``scan_segments``: its parallel scans' segments).
    """
    if config.pipeline == "dynamodb":
        from verify.tables.run import run_table_verify

        return run_table_verify(
            Path(run_dir), config, timeout_s=timeout_s, progress=progress, clients=clients,
            clock=clock, sleep=sleep, incomplete=incomplete, from_store=from_store,
            settle_s=settle_s, scan_segments=scan_segments,
        )  # fmt: skip
    if config.pipeline == "action-log":
        from verify.actions.run import run_action_verify

        return run_action_verify(
            Path(run_dir), config, timeout_s=timeout_s, progress=progress, clients=clients,
            clock=clock, sleep=sleep, incomplete=incomplete, from_store=from_store,
            settle_s=settle_s, scan_segments=scan_segments,
        )  # fmt: skip
    if config.pipeline == "active-active":
        from verify.active.run import run_active_verify

        return run_active_verify(
            Path(run_dir), config, timeout_s=timeout_s, progress=progress, clients=clients,
            clock=clock, sleep=sleep, incomplete=incomplete, from_store=from_store,
            settle_s=settle_s, scan_segments=scan_segments, wall_ms=wall_ms,
        )  # fmt: skip
    if config.pipeline == "postgres-cdc":
        from verify.cdc.run import run_cdc_verify

        return run_cdc_verify(
            Path(run_dir), config, timeout_s=timeout_s, progress=progress,
            fatal_duplicates=fatal_duplicates, tolerance_ms=tolerance_ms, clients=clients,
            clock=clock, sleep=sleep, wall_ms=wall_ms, incomplete=incomplete,
            from_store=from_store, settle_s=settle_s,
        )  # fmt: skip
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
    ledger_path = run.file(runs.LEDGER_FILE)
    # This run's records: traces that name it (loadgen.context.producer_name) or ledger rows.
    own_prefix = f"{run.run_id}/" if ledger_path.exists() else None
    store = Store(run.file(runs.VERIFY_STORE_FILE), own_prefix=own_prefix)
    try:
        ledger_reason = load_ledger(store, ledger_path, stream, notes, config.region_b)
        if ledger_reason:
            store.set_meta(LEDGER_INCOMPLETE, ledger_reason)
        load_claims(store, run.path, config, stream, details)
        details["faults"] = read_fault_log(run.file(runs.FAULTS_FILE))
        timeline = read_timeline(run.file(TIMELINE_FILE))
        if timeline:
            details["drill"] = drill_details(run)
        if run.file(runs.METRICS_FILE).exists():
            try:
                details["replicator_metrics"] = run.read_json(runs.METRICS_FILE)
            except ValueError:
                notes.append(f"{runs.METRICS_FILE} is not valid JSON")
        read_reasons = ["no endpoint to read from"]
        if clients is not None or _has_endpoints(config):
            read_reasons = read_regions(
                store, config, stream, details, clients, timeout_s, progress, clock, sleep,
                wall_ms, settle_s=settle_s, run_path=run.path,
            )  # fmt: skip
            reasons += [r for r in read_reasons if r not in reasons]
        if not reasons:
            store.set_meta(READ_COMPLETE, _now_iso())
            store.set_meta(READ_DETAILS, json.dumps(details, default=str))
        if store.counts[StoreSide.SOURCE] or store.counts[StoreSide.TARGET]:
            if reasons:
                notes.append(
                    "the evidence is incomplete (see reasons): the counts below are what was "
                    "read, and the verdict stays unknown"
                )
            t0 = time.perf_counter()
            store.finalize()
            result = reconcile(store.db, tolerance_ms=tolerance_ms)
            details.setdefault("timings_s", {})["reconcile"] = round(time.perf_counter() - t0, 3)
            if timeline:
                details["drill"]["recovery_s"] = _recovery(store, timeline)
    finally:
        store.close()
    decision = decide(
        result.anomalies if result else {},
        fatal_duplicates=fatal_duplicates,
        incomplete=reasons,
        ledger_incomplete=ledger_reason,
    )
    return _write_report(run, config, decision, started_at, result, details)


def drill_details(run: runs.RunDir) -> dict[str, Any] | None:
    """The drill the run was (its name and every step it took), or None for a plain run."""
    timeline = read_timeline(run.file(TIMELINE_FILE))
    if not timeline:
        return None
    return {"name": timeline[0].get("arg"), "timeline": timeline, "recovery_s": None}


def _recovery(store: Store, timeline: list[dict[str, Any]]) -> float | None:
    """How long after the drill's last fault step the target had every record that reached
    its source before that step."""
    steps = [s["at_ms"] for s in timeline if s.get("action") not in ("drill", "drill-end")]
    return caught_up_after(store.db, max(steps)) if steps else None


def _has_endpoints(config: HarnessConfig) -> bool:
    return config.endpoint_mode is EndpointMode.AWS or bool(
        config.endpoint_url_a and config.endpoint_url_b
    )


def _write_report(
    run: runs.RunDir,
    config: HarnessConfig,
    decision: Any,
    started_at: str,
    result: Reconciliation | None,
    details: dict[str, Any],
) -> VerifyResult:
    """report.json and report.html of a stream pipeline (see :func:`write_reports`)."""
    return write_reports(
        run,
        decision.verdict,
        details,
        lambda: build_report(
            run_id=run.run_id,
            pipeline=config.pipeline,
            decision=decision,
            started_at=started_at,
            finished_at=_now_iso(),
            result=result,
            details=details,
        ),
    )


def write_reports(
    run: runs.RunDir,
    verdict: Verdict,
    details: dict[str, Any],
    build: Callable[[], dict[str, Any]],
    render: Callable[[dict[str, Any]], str] | None = None,
) -> VerifyResult:
    """report.json and report.html from ``build()`` (the page by ``render``, by default
    :func:`verify.html_report.render_html`). A verify that could not finish (verdict
    unknown: endpoints gone, nothing stored) never replaces an earlier report of the run: it
    writes report-<time>.json and .html beside it (and says so in ``details``' notes)."""
    json_name, html_name = runs.REPORT_JSON, runs.REPORT_HTML
    if verdict is Verdict.UNKNOWN and run.file(runs.REPORT_JSON).exists():
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        json_name, html_name = f"report-{stamp}.json", f"report-{stamp}.html"
        details.setdefault("notes", []).append(
            f"verify could not finish: the run's earlier {runs.REPORT_JSON} was kept and this "
            f"report is {json_name}"
        )
    report = build()
    json_path = run.write_json(json_name, report)
    html_path = run.file(html_name)
    token = RENDERING_RUN_DIR.set(run.path)
    try:
        html_path.write_text((render or render_html)(report))
    finally:
        RENDERING_RUN_DIR.reset(token)
    return VerifyResult(report, verdict, EXIT_CODES[verdict], json_path, html_path)


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


def summary_json(result: VerifyResult) -> str:
    return json.dumps({"verdict": result.verdict.value, "exit_code": result.exit_code})
