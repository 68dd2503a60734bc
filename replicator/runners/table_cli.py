"""``xrh replicate --pipeline dynamodb``: bootstrap copy, then live apply of A's stream to B.

Flow (the handover is explained in :mod:`replicator.core.bootstrap`):

1. bootstrap (``--bootstrap auto``, the default): copy ``{prefix}-items`` of the ``--side``
   region into the other region's table with a parallel scan (``--scan-segments`` threads),
   unless the copy is already complete or live-apply checkpoints exist (then skipped with a
   warning). If another live process owns the copy, wait for it (and take it over if its
   heartbeat stops for ``--lease-seconds``). ``--bootstrap never`` skips it: live apply starts
   at once (a target that was filled some other way, or a source table that started empty);
2. live apply: the shard poller (:mod:`replicator.runners.poller`) over the table's stream
   (``DynamoStreamReader``), leases in the lease table keyed by the items table, the
   :class:`~replicator.core.table_apply.TableApplier` (its gate opens once step 1 returned),
   checkpoints in the target's checkpoint table under ``checkpoint_scope("dynamodb", items
   table, source region)``. Every shard without a checkpoint starts at TRIM_HORIZON, so the
   changes made during the copy are replayed over it. No stream watermark is claimed.

Progress of the copy: a rich bar on a terminal, log lines otherwise (items copied / DescribeTable's
estimate, rate); the metrics file carries the bootstrap figures (items copied, copy seconds,
items/s) beside live apply's counters (:mod:`replicator.runners.table_progress`).

Signals: SIGTERM stops (the copy after its pages in flight, their progress recorded, releasing
the state row so that a successor need not wait; live apply after its batch). SIGUSR1 drains:
during the copy, the copy is finished first, then the stream is drained; ``--drain-timeout``
counts from the signal, copy included (exit 2 when it runs out). Exit codes as the kinesis
runner: 0 stopped or drained, 2 could not drain, 3 bad usage (a source table without a stream
of new images, ``--start-at-latest``, ``--behaviour sample``).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from replicator.runners import options
from xrh import early_signals
from xrh.config import Side

# --------------------------------------------------------------------------- wiring


@dataclass
class TableReplicator:
    """The dynamodb pipeline's process: an optional bootstrap, then the poller."""

    poller: Any
    applier: Any
    bootstrap: Any  # replicator.core.bootstrap.Bootstrap, or None with --bootstrap never
    files: Any
    view: Any  # table_progress.ProgressView, or None with --bootstrap never
    drain_timeout_s: float
    max_seconds: float | None = None
    #: with --bootstrap never: the source table's check (a stream of new images), which the
    #: bootstrap makes itself otherwise
    precheck: Any = None
    max_clock_skew_ms: int = 500
    gate_open: bool = False
    result: Any = None
    drain_at: float | None = None  # time.time() of SIGUSR1 (or --until-drained's start)
    stop: bool = False
    exit_reason: str = ""
    started: float = field(default_factory=time.time)

    # ------------------------------------------------------------------ control

    def gate(self) -> str | None:
        """TableApplier's gate: None once the bootstrap returned (complete or skipped)."""
        return None if self.gate_open else "bootstrap copy not complete"

    def covered_before(self) -> int | None:
        """TableApplier's cutoff: changes older than this are in the completed copy (see
        :mod:`replicator.core.table_apply`); None without one (skipped, never, stopped)."""
        from replicator.core.bootstrap_report import Outcome
        from replicator.core.table_apply import copy_cutoff_ms

        result = self.result
        if result is None or result.row is None or result.outcome not in (
            Outcome.COPIED, Outcome.ALREADY_COMPLETE
        ):  # fmt: skip
            return None
        return copy_cutoff_ms(result.row.started_at_ms, self.max_clock_skew_ms)

    def request_stop(self) -> None:
        self.stop = True
        if self.bootstrap is not None:
            self.bootstrap.request_stop()
        self.poller.request_stop()

    def request_drain(self) -> None:
        if self.drain_at is None:
            self.drain_at = time.time()
            if not self.gate_open:  # (the poller logs its own)
                self.files.log("drain_requested", during="bootstrap")
        if self.gate_open:
            self.poller.request_drain(since=self.drain_at)

    # ------------------------------------------------------------------ run

    def run(self) -> int:
        from replicator.runners.poller import EXIT_NOT_DRAINED, EXIT_OK

        if self.precheck is not None:
            self.precheck()
        if self.bootstrap is not None:
            code = self._bootstrap()
            if code is not None:
                self._final_metrics()
                return code
        self.gate_open = True
        if self.stop:
            self.exit_reason = "stop requested"
            self._final_metrics()
            return EXIT_OK
        if self.drain_at is not None:
            self.poller.request_drain(since=self.drain_at)
        if self.max_seconds is not None:
            left = self.max_seconds - (time.time() - self.started)
            if left <= 0:
                self.exit_reason = "max seconds"
                self._final_metrics()
                return EXIT_NOT_DRAINED if self.drain_at is not None else EXIT_OK
            self.poller.settings = _replace(self.poller.settings, max_seconds=left)
        code = self.poller.run()
        self.exit_reason = self.poller.exit_reason
        return code

    def _bootstrap(self) -> int | None:
        """Run the copy in a thread while this one watches the deadlines; an exit code if the
        process ends here, None when live apply may start."""
        from replicator.runners.poller import EXIT_NOT_DRAINED, EXIT_OK

        failure: list[BaseException] = []

        def work() -> None:
            try:
                self.result = self.bootstrap.run()
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                failure.append(exc)

        thread = threading.Thread(target=work, name="bootstrap", daemon=True)
        thread.start()
        code: int | None = None
        try:
            while thread.is_alive():
                thread.join(0.2)
                now = time.time()
                if (
                    code is None
                    and self.drain_at is not None
                    and now - self.drain_at > self.drain_timeout_s
                ):
                    self.exit_reason = "drain timeout (bootstrap copy not complete)"
                    code = EXIT_NOT_DRAINED
                    self.bootstrap.request_stop()
                if (
                    code is None
                    and self.max_seconds is not None
                    and now - self.started > self.max_seconds
                ):
                    self.exit_reason = "max seconds (bootstrap copy not complete)"
                    code = EXIT_NOT_DRAINED if self.drain_at is not None else EXIT_OK
                    self.bootstrap.request_stop()
        finally:
            if self.view is not None:
                self.view.close()
        if failure:
            raise failure[0]
        result = self.result
        for warning in result.warnings:
            print(f"WARNING: {warning}", file=sys.stderr)
        if code is not None:
            return code
        if not result.open_gate:
            self.exit_reason = "stop requested (bootstrap copy not complete)"
            return EXIT_OK
        return None

    def _final_metrics(self) -> None:
        try:
            self.poller.on_tick()
        except Exception as exc:  # noqa: BLE001 - best effort on the way out
            self.files.log("metrics_failed", error=str(exc))


def _replace(settings: Any, **changes: Any) -> Any:
    import dataclasses

    return dataclasses.replace(settings, **changes)


def _check_source(scanner: Any, source_region: str) -> None:
    """--bootstrap never: live apply needs the stream of new images as much as the copy does."""
    from replicator.core.bootstrap import NEW_IMAGE_VIEWS, BootstrapPreconditionError

    info = scanner.describe()
    if info.stream_view_type not in NEW_IMAGE_VIEWS:
        raise BootstrapPreconditionError(
            f"table {info.name} in {source_region} has "
            + (
                "no stream"
                if info.stream_view_type is None
                else f"a {info.stream_view_type} stream"
            )
            + f": live apply needs a stream with new images ({' or '.join(NEW_IMAGE_VIEWS)})"
        )


def build(args: argparse.Namespace, config: Any, run_dir: Path, worker_id: str) -> TableReplicator:
    """Wire the dynamodb pipeline's replicator from boto3 adapters (also used by the tests)."""
    from replicator.adapters.dynamodb import DynamoCheckpointStore
    from replicator.adapters.dynamodb_bootstrap import DynamoBootstrapStore, DynamoTableScanner
    from replicator.adapters.leases import LeaseTable
    from replicator.adapters.s3 import S3DeadLetterSink
    from replicator.adapters.streams import DynamoStreamReader
    from replicator.adapters.table import DynamoTableWriter
    from replicator.core.bootstrap import Bootstrap, BootstrapSettings
    from replicator.core.metrics import emf_line
    from replicator.core.putrecords import Backoff
    from replicator.core.table_apply import TableApplier
    from replicator.core.table_writes import BatchWriter
    from replicator.core.watermark import WatermarkSettings
    from replicator.runners.poller import NoClaims, Poller
    from replicator.runners.run_files import RunFiles
    from replicator.runners.table_progress import ProgressView, bootstrap_figures
    from xrh.aws import AwsClients
    from xrh.contracts import checkpoint_scope
    from xrh.resources import ResourceNames

    side = Side(args.side)
    target = side.other
    names = ResourceNames(config.prefix)
    source_region, target_region = config.region(side), config.region(target)
    segments = options.scan_segments(args)
    copy_in_flight = segments  # one request per segment in flight: more only contends
    apply_in_flight = 4
    clients = AwsClients(
        config, max_attempts=1, read_timeout=10.0, max_pool_connections=max(10, segments + 4)
    )
    write_timeout = options.write_timeout(args)
    writes = AwsClients(
        config, max_attempts=1, max_pool_connections=copy_in_flight + apply_in_flight + 4,
        **options.write_timeouts(args),
    )  # fmt: skip
    files = RunFiles(run_dir, worker_id)
    scope = checkpoint_scope("dynamodb", names.items_table, source_region)
    target_ddb = writes.client("dynamodb", target)
    checkpoints = DynamoCheckpointStore(target_ddb, names.checkpoint_table, scope, owner=worker_id)
    sink = DynamoTableWriter(target_ddb)
    dead = S3DeadLetterSink(clients.client("s3", side), names.dead_letter_bucket(source_region))
    backoff = Backoff(max_attempts=args.max_attempts)
    mode = getattr(args, "bootstrap", "auto") or "auto"

    bootstrap = None
    view = None
    store = None
    scanner = DynamoTableScanner(
        clients.client("dynamodb", side), names.items_table,
        page_limit=args.scan_page_size or 1000,
    )  # fmt: skip
    if mode == "auto":
        view = ProgressView(files)
        store = DynamoBootstrapStore(target_ddb, names.checkpoint_table, scope)
        bootstrap = Bootstrap(
            scanner=scanner,
            writer=BatchWriter(
                sink, names.items_table, backoff=backoff, max_in_flight=copy_in_flight
            ),  # fmt: skip
            store=store,
            live_checkpoints=lambda: bool(checkpoints.load()),
            dead_letters=dead,
            owner=worker_id,
            source_region=source_region,
            target_region=target_region,
            settings=BootstrapSettings(
                segments=segments,
                lease_ms=int(args.lease_seconds * 1000),
                renew_interval_s=max(0.2, args.lease_seconds / 4),
                guard_ms=int((write_timeout + args.max_clock_skew_ms / 1000) * 1000),
                wait_interval_s=min(1.0, args.lease_seconds / 4),
            ),
            on_progress=view,
            log=files.log,
        )

    reader = DynamoStreamReader(
        clients.client("dynamodbstreams", side), clients.client("dynamodb", side),
        names.items_table,
    )  # fmt: skip
    leases = LeaseTable(
        clients.client("dynamodb", side), names.lease_table, names.items_table, worker_id
    )
    holder: dict[str, TableReplicator] = {}
    applier = TableApplier(
        table=names.items_table,
        source_region=source_region,
        target_region=target_region,
        writer=BatchWriter(
            sink, names.items_table, backoff=backoff, max_in_flight=apply_in_flight
        ),  # fmt: skip
        checkpoints=checkpoints,
        dead_letters=dead,
        clock_ms=lambda: int(time.time() * 1000),
        gate=lambda: holder["run"].gate(),
        covered_before=lambda: holder["run"].covered_before(),
        watermark=WatermarkSettings(args.max_commit_delay_ms, args.watermark_margin_ms),
        log=files.log,
    )
    batch_limit = options.dynamodb_batch_limit(args.batch_size)
    if batch_limit < args.batch_size:
        files.log("batch_size_capped", requested=args.batch_size, batch_limit=batch_limit)
    settings = options.poller_settings(args, batch_limit=batch_limit, start_at_latest=False)
    metrics = applier.metrics
    dimensions = {"Table": names.items_table, "Worker": worker_id}

    def on_tick() -> None:
        snap = metrics.snapshot()
        snap["pipeline"] = "dynamodb"
        snap["bootstrap"] = bootstrap_figures(bootstrap, mode)
        if bootstrap is not None:
            snap["counters"]["bootstrap_items_copied"] = bootstrap.copied_here
            snap["counters"]["bootstrap_dead_lettered"] = bootstrap.dead_here
        snap["aws_calls"] = {
            "source_reads": reader.calls,
            "target_writes": sink.calls,
            "checkpoint": checkpoints.calls + (store.calls if store is not None else 0),
            "leases": leases.calls,
            "bootstrap_scans": scanner.calls,
        }
        files.write_metrics(snap)
        now = int(time.time() * 1000)
        files.emf(emf_line(dict(snap["counters"]), dimensions, now))

    poller = Poller(
        reader=reader, leases=leases, replicator=applier, checkpoints=checkpoints,  # type: ignore[arg-type]
        publisher=NoClaims(), settings=settings, log=files.log, on_tick=on_tick,
    )  # fmt: skip
    if bootstrap is not None:
        # The metrics file also follows the copy (the poller's tick starts after it).
        last_tick = [0.0]

        def on_progress(p: Any) -> None:
            assert view is not None
            view(p)
            if time.monotonic() - last_tick[0] >= 1.0:
                last_tick[0] = time.monotonic()
                try:
                    on_tick()
                except OSError as exc:
                    files.log("metrics_failed", error=str(exc))

        bootstrap.on_progress = on_progress
    run = TableReplicator(
        poller=poller,
        applier=applier,
        bootstrap=bootstrap,
        files=files,
        view=view,
        drain_timeout_s=args.drain_timeout,
        max_seconds=args.max_seconds,
        precheck=None if bootstrap is not None else lambda: _check_source(scanner, source_region),
        max_clock_skew_ms=args.max_clock_skew_ms,
    )
    holder["run"] = run  # --until-drained: the poller's drain timeout starts after the copy
    return run


def run(args: argparse.Namespace, config: Any, run_dir: Path, worker_id: str) -> int:
    """``xrh replicate --pipeline dynamodb`` once the configuration is resolved."""
    from replicator.core.bootstrap import BootstrapPreconditionError
    from xrh.errors import UsageError

    table = build(args, config, run_dir, worker_id)
    early_signals.handle(stop=table.request_stop, drain=table.request_drain)
    files = table.files
    print(f"replicating table {config.prefix}-items from side {args.side} as {worker_id} "
          f"(bootstrap {getattr(args, 'bootstrap', 'auto')}); log {files.log_path}",
          file=sys.stderr)  # fmt: skip
    try:
        code = table.run()
    except BootstrapPreconditionError as exc:
        files.log("bootstrap_refused", error=str(exc))
        raise UsageError(str(exc)) from None
    finally:
        table.applier.close()
        if table.bootstrap is not None:
            table.bootstrap.writer.close()
        files.close()
    counters = table.applier.metrics.counters
    copied = ""
    result = table.result
    if result is not None:
        copied = f"bootstrap {result.outcome.value}"
        if result.copy_seconds:
            copied += (
                f" ({result.items_copied} items in {result.copy_seconds:.1f} s, "
                f"{result.items_per_s:,.0f} items/s; {result.copied_here} copied here, "
                f"{result.dead} dead-lettered)"
            )
        copied += "; "
    print(f"replicator {worker_id}: {table.exit_reason}; {copied}applied "
          f"{counters.get('changes_applied', 0)} changes, {counters.get('dead_lettered', 0)} "
          "dead-lettered", file=sys.stderr)  # fmt: skip
    for shard_id, error in sorted(table.poller.lost_shards.items()):
        print(f"ERROR: {shard_id}: {error}; live apply cannot recover it: bootstrap the target "
              "again", file=sys.stderr)  # fmt: skip
    return code
