"""``xrh capture``: PostgreSQL changes into ``{prefix}-cdc`` in region A, as DMS-shaped records.

``--capture slot`` (the default, :class:`~replicator.core.capture.Capture`) reads the logical
replication slot ``<table>_slot`` (pgoutput, publication ``<table>_pub``), creating the slot,
table and publication when missing (said on stderr and in the log: changes made before the slot
existed are not captured), and confirms the slot only past what Kinesis acknowledged.
``--capture notify`` runs the seed's trigger + LISTEN/NOTIFY design
(:class:`~replicator.core.notify_capture.NotifyCapture`), lossy by design and labelled so.

The database is ``--postgres-url``, else the ``url`` of the run directory's ``postgres.json``.
Tables and names follow ``--table-mappings`` (DMS JSON, ``@file`` or inline; default: the
harness table only). Files in the run directory: ``capture.log`` (JSON lines) and, about once a
second, a line of ``capture-lag.jsonl``. SIGUSR1 drains (exit 0, or 2 after
``--drain-timeout``); SIGTERM/SIGINT stop. Exit codes: 0 stopped or drained, 2 could not drain
or the slot stayed busy (``--slot-wait``), 3 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from xrh import early_signals


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", default=None, help="run directory (default <runs-dir>/latest)")
    parser.add_argument("--postgres-url", default=None,
                        help="the database (default: the run directory's postgres.json url)")
    parser.add_argument("--capture", choices=["slot", "notify"], default="slot",
                        help="slot: logical replication slot (no loss); notify: the seed's "
                        "trigger + LISTEN/NOTIFY (loses changes while not listening)")
    parser.add_argument("--table-mappings", default=None,
                        help="DMS table-mapping JSON, inline or @file (default: the harness table)")
    parser.add_argument("--batch-changes", type=int, default=5000,
                        help="changes per slot peek at most (whole transactions; default 5000)")
    parser.add_argument("--drain-timeout", type=float, default=60.0,
                        help="seconds a drain (SIGUSR1) may take before exit 2 (default 60)")
    parser.add_argument("--slot-wait", type=float, default=60.0,
                        help="seconds to wait for a slot another capture holds (default 60)")
    parser.add_argument("--max-attempts", type=int, default=10,
                        help="PutRecords sends per record before the batch is retried later")  # fmt: skip


def _check(args: argparse.Namespace) -> None:
    from xrh.errors import UsageError

    if not 1 <= args.batch_changes <= 1_000_000:
        raise UsageError(f"--batch-changes {args.batch_changes} is outside 1..1000000")
    for name in ("drain_timeout", "slot_wait"):
        value = getattr(args, name)
        if not value >= 0 or value == float("inf"):
            raise UsageError(f"--{name.replace('_', '-')} must be a finite number >= 0, got {value}")
    if args.max_attempts < 1:
        raise UsageError(f"--max-attempts must be >= 1, got {args.max_attempts}")


def _mappings(args: argparse.Namespace, prefix: str):
    from replicator.core import table_mappings
    from xrh import postgres_cdc as cdc
    from xrh.errors import UsageError

    spec = args.table_mappings
    if spec is None:
        return table_mappings.default_mappings(cdc.SCHEMA, cdc.table_name(prefix))
    source = "--table-mappings"
    if spec.startswith("@"):
        source = spec[1:]
        try:
            spec = Path(source).read_text()
        except OSError as exc:
            raise UsageError(f"--table-mappings: cannot read {source}: {exc.strerror}") from None
    try:
        return table_mappings.parse(spec, source)
    except table_mappings.MappingError as exc:
        raise UsageError(str(exc)) from None


def _postgres_url(args: argparse.Namespace, run_dir: Path) -> str:
    from xrh.errors import UsageError
    from xrh.postgres_cdc import POSTGRES_FILE

    if args.postgres_url:
        return args.postgres_url
    path = run_dir / POSTGRES_FILE
    try:
        return str(json.loads(path.read_text())["url"])
    except (OSError, ValueError, KeyError, TypeError):
        raise UsageError(f"no database: pass --postgres-url, or run where {path} names one "
                         "(xrh provision --pipeline postgres-cdc writes it)") from None  # fmt: skip


class _Files:
    """``capture.log`` (JSON lines) and ``capture-lag.jsonl`` in the run directory."""

    def __init__(self, run_dir: Path, mode: str, label: str | None) -> None:
        from xrh.postgres_cdc import LAG_FILE

        self.log_path, self.lag_path = run_dir / "capture.log", run_dir / LAG_FILE
        self.mode, self.label = mode, label
        self._log = self.log_path.open("a", buffering=1)

    def log(self, event: str, **fields: Any) -> None:
        line: dict[str, Any] = {"ts": int(time.time() * 1000), "mode": self.mode, "event": event}
        if self.label:
            line["behaviour"] = self.label
        line.update(fields)
        self._log.write(json.dumps(line, default=str) + "\n")

    def lag(self, **fields: Any) -> None:
        line = json.dumps({"ts_ms": int(time.time() * 1000), "mode": self.mode, **fields})
        fd = os.open(self.lag_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)

    def close(self) -> None:
        self._log.close()


def _prepare(url: str, prefix: str, mode: str, mappings: Any, files: _Files) -> None:
    """Table, publication and slot (and the notify trigger) exist before capture reads."""
    import psycopg

    from xrh import postgres_setup
    from xrh.errors import UsageError

    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            postgres_setup.create_table(conn, prefix)
            rows = conn.execute("SELECT schemaname, tablename FROM pg_tables").fetchall()
            tables = [f"{s}.{t}" for s, t in rows if mappings.selected(s, t)]
            postgres_setup.create_publication(conn, prefix, tables or None)
            if mode == "notify":
                postgres_setup.create_notify_trigger(conn, prefix)
            elif postgres_setup.create_slot(conn, prefix):
                note = "created the missing slot; changes made before now are not captured"
                print(f"xrh capture: {note}", file=sys.stderr, flush=True)
                files.log("slot_created", note=note)
    except psycopg.OperationalError as exc:
        raise UsageError(f"cannot reach PostgreSQL at {_safe(url)}: {str(exc).strip()}") from None


def _safe(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def run(args: argparse.Namespace) -> int:
    from replicator.adapters.kinesis import KinesisSink
    from replicator.adapters.s3 import S3DeadLetterSink
    from replicator.core.putrecords import Backoff, PutRecordsSender
    from replicator.runners.cli import _run_dir
    from xrh.aws import AwsClients
    from xrh.config import Side, config_from_options
    from xrh.endpoint import resolve_config
    from xrh.resources import ResourceNames

    _check(args)
    config = config_from_options(args)
    run_dir = _run_dir(args, config.runs_dir)
    mappings = _mappings(args, config.prefix)
    url = _postgres_url(args, run_dir)
    config = resolve_config(config, run_dir)
    names = ResourceNames(config.prefix)
    region = config.region(Side.A)
    label = None
    if args.capture == "notify":
        from replicator.core.notify_capture import NOTIFY_LABEL as label
    files = _Files(run_dir, args.capture, label)
    stop = threading.Event()
    try:
        _prepare(url, config.prefix, args.capture, mappings, files)
        clients = AwsClients(config, max_attempts=1, read_timeout=10.0)
        sender = PutRecordsSender(KinesisSink(clients.client("kinesis", Side.A)), names.cdc_stream,
                                  backoff=Backoff(max_attempts=args.max_attempts),
                                  sleep=lambda s: stop.wait(s) and None)  # fmt: skip
        dead = S3DeadLetterSink(clients.client("s3", Side.A), names.dead_letter_bucket(region))
        build = _slot if args.capture == "slot" else _notify
        capture, close = build(args, url, config.prefix, mappings, sender, dead, region, files, stop)
        early_signals.handle(stop=capture.request_stop, drain=capture.request_drain)
        signal.signal(signal.SIGINT, lambda *_: capture.request_stop())
        print(f"capturing {_safe(url)} into {names.cdc_stream} in {region} "
              f"({args.capture}{'; ' + label if label else ''}); log {files.log_path}",
              file=sys.stderr, flush=True)  # fmt: skip
        files.log("start", stream=names.cdc_stream, region=region, database=_safe(url))
        try:
            code = capture.run()
        finally:
            close()
        files.log("exit", code=code, reason=capture.exit_reason)
        print(f"xrh capture: {capture.exit_reason}", file=sys.stderr)
        return code
    finally:
        files.close()


def _slot(args, url, prefix, mappings, sender, dead, region, files, stop):  # noqa: ANN001
    from replicator.adapters.postgres import PostgresSlot
    from replicator.core.capture import Capture, CaptureSettings
    from replicator.core.capture_batch import BatchDecoder
    from replicator.core.pgoutput import format_lsn
    from xrh import postgres_cdc as cdc

    slot = PostgresSlot(url, cdc.slot_name(prefix), cdc.publication_name(prefix))
    settings = CaptureSettings(batch_changes=args.batch_changes,
                               drain_timeout_s=args.drain_timeout, slot_wait_s=args.slot_wait)  # fmt: skip

    def progress(stats: Any, pending: int | None) -> None:
        confirmed = None if stats.confirmed_lsn is None else format_lsn(stats.confirmed_lsn)
        files.lag(confirmed_lsn=confirmed, pending_bytes=pending, records_put=stats.records_put,
                  last_commit_ms=stats.last_commit_ms)  # fmt: skip
        files.log("progress", records_put=stats.records_put, dead_lettered=stats.dead_lettered,
                  transactions=stats.transactions, put_requests=stats.put_requests,
                  peeks=stats.peeks, confirmed_lsn=confirmed, pending_bytes=pending)  # fmt: skip

    capture = Capture(slot, BatchDecoder(mappings, slot.lookup, files.log), sender, dead,
                      slot_name=cdc.slot_name(prefix), region=region, settings=settings,
                      sleep=lambda s: stop.wait(s) and None, log=files.log, progress=progress)  # fmt: skip
    capture.wake = stop.set
    return capture, slot.close


def _notify(args, url, prefix, mappings, sender, dead, region, files, stop):  # noqa: ANN001
    from replicator.adapters.postgres import NotifyListener
    from replicator.core.notify_capture import ColumnInfo, NotifyCapture
    from xrh import postgres_cdc as cdc

    listener = NotifyListener(url, cdc.notify_channel(prefix))
    columns = [ColumnInfo(*c) for c in listener.columns(cdc.SCHEMA, cdc.table_name(prefix))]
    capture = NotifyCapture(
        listener, sender, dead, columns=columns, mappings=mappings, region=region,
        drain_timeout_s=args.drain_timeout, sleep=lambda s: stop.wait(s) and None, log=files.log,
        progress=lambda fields: files.lag(confirmed_lsn=None, pending_bytes=None,
                                          records_put=fields["records_put"], last_commit_ms=None),
    )  # fmt: skip
    capture.wake = stop.set
    return capture, listener.close
