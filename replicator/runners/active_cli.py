"""``xrh replicate --pipeline active-active --side S``: region S's forwarder and applier.

The same code runs in both regions (:mod:`xrh.active_active`); ``--side`` says which it is.

- forwarder (``--role forward``): S's ``{prefix}-items`` stream (DynamoDB Streams, leases
  keyed by the items table) to the other region's ``{prefix}-staging`` stream
  (:class:`~replicator.core.lww_forward.Forwarder`); repairs and tombstones written to S's
  table; checkpoints in the *other* region's checkpoint table under ``FORWARD_SCOPE``;
- applier (``--role apply``): S's ``{prefix}-staging`` stream (Kinesis, leases keyed by the
  staging stream) to S's table (:class:`~replicator.core.lww_apply.Applier`); checkpoints in
  S's checkpoint table under ``APPLY_SCOPE``; a line of ``replication-lag.jsonl`` per batch;
- ``--role both`` (the default): both pollers, in two threads of this process.

Leases are in S's lease table; the two pollers' rows never collide (the lease key starts with
the stream: the items table for one, the staging stream for the other). Dead letters go to S's
bucket. Worker ids get ``-forward`` / ``-apply`` appended: each role has its own log
(``replicator-<id>-<role>.log``) and its own entry in the run's metrics file.

Drain (SIGUSR1, ``--until-drained``): the forwarder drains first (everything written to S's
table is in the other staging stream, repairs and tombstones written); then the applier drains
(nothing left in S's staging stream, quiet for ``--quiet-seconds``). ``--drain-timeout`` counts
from the request for both. Drain both regions' processes together: an applier can only drain
what the other region's forwarder has sent, so the orchestrator drains after the load stopped,
and may run ``--role forward`` and ``--role apply`` as separate processes to drain all
forwarders before any applier. SIGTERM stops both after their batches in flight. Exit codes:
0 stopped or drained, 2 a poller could not drain, 3 bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from replicator.runners import options
from xrh import early_signals
from xrh.config import Side

ROLES = ("both", "forward", "apply")
WRITES_IN_FLIGHT = 8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("--pipeline active-active")
    group.add_argument(
        "--role", choices=ROLES, default="both",
        help="forward: this side's table stream to the other side's staging stream; apply: this "
        "side's staging stream to its table; both (default): the two, in one process",
    )  # fmt: skip


def check(args: argparse.Namespace) -> None:
    from xrh.errors import UsageError

    if getattr(args, "start_at_latest", False):
        raise UsageError(
            "--start-at-latest cannot be used with --pipeline active-active: a skipped change "
            "of either table would leave the regions apart for good"
        )


def _now_ms() -> int:
    return int(time.time() * 1000)


def _appender(path: Path):
    def append(line: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    return append


def build(args: argparse.Namespace, config: Any, run_dir: Path, worker_id: str) -> dict[str, Any]:
    """Wire the pollers of the asked roles from boto3 adapters: ``{role: (poller, replicator,
    files)}``."""
    from replicator.adapters.dynamodb import DynamoCheckpointStore
    from replicator.adapters.kinesis import KinesisReader, KinesisSink
    from replicator.adapters.leases import LeaseTable
    from replicator.adapters.lww_table import DynamoLwwTable
    from replicator.adapters.s3 import S3DeadLetterSink
    from replicator.adapters.streams import DynamoStreamReader
    from replicator.core import lww_sample
    from replicator.core.lww_apply import Applier
    from replicator.core.lww_forward import Forwarder
    from replicator.core.lww_writes import ConditionalWriter
    from replicator.core.putrecords import Backoff, Limits, PutRecordsSender
    from replicator.runners.poller import NoClaims, Poller
    from replicator.runners.run_files import RunFiles
    from xrh.active_active import APPLY_SCOPE, FORWARD_SCOPE, LAG_FILE
    from xrh.aws import AwsClients
    from xrh.resources import ResourceNames

    sample = getattr(args, "behaviour", "reference") == "sample"
    role = getattr(args, "role", "both") or "both"
    side = Side(args.side)
    other = side.other
    names = ResourceNames(config.prefix)
    region, other_region = config.region(side), config.region(other)
    reads = AwsClients(config, max_attempts=1, read_timeout=10.0)
    writes = AwsClients(config, max_attempts=1, max_pool_connections=2 * WRITES_IN_FLIGHT + 4,
                        **options.write_timeouts(args))  # fmt: skip
    table = DynamoLwwTable(writes.client("dynamodb", side))
    dead = S3DeadLetterSink(reads.client("s3", side), names.dead_letter_bucket(region))
    backoff = Backoff(max_attempts=args.max_attempts)
    label = lww_sample.SAMPLE_LABEL if sample else None
    built: dict[str, Any] = {}

    def poller(name, reader, stream, replicator, checkpoints, files, limit, calls):
        leases = LeaseTable(reads.client("dynamodb", side), names.lease_table, stream,
                            files.worker_id)  # fmt: skip
        settings = options.poller_settings(args, batch_limit=limit, start_at_latest=False)
        settings = _replace(settings, until_drained=False)  # drained in order by ActiveActive

        def on_tick() -> None:
            snap = replicator.metrics.snapshot()
            snap.update(pipeline="active-active", role=name, side=side.value, region=region)
            if sample:
                snap["behaviour"] = lww_sample.SAMPLE_NOTE
            snap["aws_calls"] = {"source_reads": reader.calls, "checkpoint": checkpoints.calls,
                                 "leases": leases.calls, **calls()}  # fmt: skip
            try:
                files.write_metrics(snap)
            except OSError as exc:
                files.log("metrics_failed", error=str(exc))

        built[name] = (
            Poller(reader=reader, leases=leases, replicator=replicator, checkpoints=checkpoints,
                   publisher=NoClaims(), settings=settings, log=files.log, on_tick=on_tick),
            replicator, files,
        )  # fmt: skip
        files.log("start", role=name, side=side.value, region=region, other_region=other_region,
                  note=lww_sample.SAMPLE_NOTE if sample else "reference")  # fmt: skip

    if role in ("both", "forward"):
        files = RunFiles(run_dir, f"{worker_id}-forward", label)
        scope = FORWARD_SCOPE.format(table=names.items_table, region=region)
        checkpoints = DynamoCheckpointStore(writes.client("dynamodb", other),
                                            names.checkpoint_table, scope, owner=files.worker_id)  # fmt: skip
        sink = KinesisSink(writes.client("kinesis", other))
        if sample:
            fwd: Any = lww_sample.SampleForwarder(
                table=names.items_table, region=region, staging_stream=names.staging_stream,
                sink=sink, checkpoints=checkpoints, log=files.log,
            )  # fmt: skip
        else:
            fwd = Forwarder(
                table=names.items_table, region=region, other_region=other_region,
                sender=PutRecordsSender(
                    sink, names.staging_stream, backoff=backoff,
                    limits=Limits(500, args.max_record_bytes, args.max_request_bytes),
                ),
                writer=ConditionalWriter(table, names.items_table, backoff=backoff,
                                         max_in_flight=WRITES_IN_FLIGHT),
                checkpoints=checkpoints, dead_letters=dead, log=files.log,
            )  # fmt: skip
        reader = DynamoStreamReader(reads.client("dynamodbstreams", side),
                                    reads.client("dynamodb", side), names.items_table)  # fmt: skip
        poller("forward", reader, names.items_table, fwd, checkpoints, files,
               options.dynamodb_batch_limit(args.batch_size),
               lambda: {"staging_puts": sink.calls, "table_writes": table.calls})  # fmt: skip
        marker = DrainMarker(writes.client("dynamodb", other), names.checkpoint_table, scope)
        built["forward"] = (*built["forward"], marker.mark)
    if role in ("both", "apply"):
        files = RunFiles(run_dir, f"{worker_id}-apply", label)
        scope = APPLY_SCOPE.format(stream=names.staging_stream, region=region)
        checkpoints = DynamoCheckpointStore(writes.client("dynamodb", side),
                                            names.checkpoint_table, scope, owner=files.worker_id)  # fmt: skip
        direction = f"{other.value}->{side.value}"
        lag = _appender(run_dir / LAG_FILE)
        if sample:
            app: Any = lww_sample.SampleApplier(
                stream=names.staging_stream, table=names.items_table, direction=direction,
                sink=table, checkpoints=checkpoints, clock_ms=_now_ms, lag_sink=lag,
                log=files.log,
            )  # fmt: skip
        else:
            app = Applier(
                stream=names.staging_stream, table=names.items_table, region=region,
                other_region=other_region, direction=direction,
                writer=ConditionalWriter(table, names.items_table, backoff=backoff,
                                         max_in_flight=WRITES_IN_FLIGHT),
                checkpoints=checkpoints, dead_letters=dead, clock_ms=_now_ms, lag_sink=lag,
                log=files.log,
            )  # fmt: skip
        reader = KinesisReader(reads.client("kinesis", side), names.staging_stream)
        poller("apply", reader, names.staging_stream, app, checkpoints, files, args.batch_size,
               lambda: {"table_writes": table.calls})  # fmt: skip
        # The other region's forwarder says in this region's table when it has drained: only
        # then is all it will send in this staging stream.
        peer = FORWARD_SCOPE.format(table=names.items_table, region=other_region)
        built["apply"][0].drain_barrier = DrainMarker(
            reads.client("dynamodb", side), names.checkpoint_table, peer
        ).barrier
    return built


def _replace(settings: Any, **changes: Any) -> Any:
    import dataclasses

    return dataclasses.replace(settings, **changes)


class DrainMarker:
    """A forwarder's "drained" row (``#drained``, ``drainedAtMs``) under its checkpoint scope in
    the other region's checkpoint table: written when its drain completes, read by the other
    region's applier, whose drain counts only reads made after it."""

    ROW = "#drained"

    def __init__(self, client: Any, table: str, scope: str, cache_s: float = 1.0) -> None:
        self.client, self.table, self.scope, self.cache_s = client, table, scope, cache_s
        self._read: tuple[float, float | None] | None = None

    def _key(self) -> dict[str, Any]:
        return {"scope": {"S": self.scope}, "shardId": {"S": self.ROW}}

    def mark(self, attempts: int = 6) -> bool:
        """Write the row (idempotent: a lost answer is simply written again), a few times with
        backoff; False if it never got through (the other applier then times out its drain)."""
        item = {**self._key(), "drainedAtMs": {"N": str(int(time.time() * 1000))}}
        for attempt in range(attempts):
            try:
                self.client.put_item(TableName=self.table, Item=item)
                return True
            except Exception:  # noqa: BLE001 - retried, then reported by the caller
                time.sleep(min(2.0, 0.1 * 2**attempt))
        return False

    def barrier(self, since: float) -> float | None:
        """The time the other region's forwarder drained, if after ``since`` (else None: wait)."""
        now = time.time()
        if self._read is None or now - self._read[0] >= self.cache_s:
            try:
                item = self.client.get_item(
                    TableName=self.table, Key=self._key(), ConsistentRead=True
                ).get("Item")
            except Exception:  # noqa: BLE001 - unreadable: keep waiting, ask again
                item = None
            at = int(item["drainedAtMs"]["N"]) / 1000 if item else None
            self._read = (now, at)
        at = self._read[1]
        return at if at is not None and at >= since else None


class ActiveActive:
    """The process: one thread per poller; a drain goes to the forwarder, then the applier."""

    def __init__(self, built: dict[str, Any]) -> None:
        self.built = built
        self.drain_at: float | None = None
        self.codes: dict[str, int] = {}
        self.errors: dict[str, BaseException] = {}
        self._applier_draining = False

    def request_stop(self) -> None:
        for entry in self.built.values():
            entry[0].request_stop()

    def request_drain(self) -> None:
        if self.drain_at is None:
            self.drain_at = time.time()
            if "forward" in self.built:
                self.built["forward"][0].request_drain(since=self.drain_at)

    def _work(self, name: str) -> None:
        try:
            poller = self.built[name][0]
            self.codes[name] = poller.run()
            drained = name == "forward" and poller.exit_reason == "drained"
            if drained and not self.built[name][3]():  # the other region's applier may drain
                self.built[name][2].log("drain_mark_failed", note="the other region's "
                                        "applier cannot see this drain")  # fmt: skip
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self.errors[name] = exc

    def run(self, until_drained: bool = False) -> int:
        if until_drained:
            self.request_drain()
        threads = {
            name: threading.Thread(
                target=self._work, args=(name,), name=f"poller-{name}", daemon=True
            )  # fmt: skip
            for name in self.built
        }
        for thread in threads.values():
            thread.start()
        while any(t.is_alive() for t in threads.values()):
            for t in threads.values():
                t.join(0.1)
            forward = threads.get("forward")
            if (self.drain_at is not None and not self._applier_draining and "apply" in self.built
                    and (forward is None or not forward.is_alive())):  # fmt: skip
                self._applier_draining = True
                self.built["apply"][0].request_drain(since=self.drain_at)
            if self.errors:
                self.request_stop()
        if self.errors:
            raise next(iter(self.errors.values()))
        return max(self.codes.values(), default=0)


def run(args: argparse.Namespace, config: Any, run_dir: Path, worker_id: str) -> int:
    """``xrh replicate --pipeline active-active`` once the configuration is resolved."""
    built = build(args, config, run_dir, worker_id)
    process = ActiveActive(built)
    early_signals.handle(stop=process.request_stop, drain=process.request_drain)
    sample = getattr(args, "behaviour", "reference") == "sample"
    label = " (sample behaviour)" if sample else ""
    print(f"active-active side {args.side} ({', '.join(built)}) as {worker_id}{label}; logs "
          f"{', '.join(str(entry[2].log_path) for entry in built.values())}", file=sys.stderr,
          flush=True)  # fmt: skip
    try:
        code = process.run(until_drained=args.until_drained)
    finally:
        for entry in built.values():
            entry[1].close()
            entry[2].close()
    for name, (poller, replicator, *_) in built.items():
        c = replicator.metrics.counters
        figures = ", ".join(f"{k} {v}" for k, v in sorted(c.items()) if v and k in SUMMARY)
        print(f"{name} {worker_id}{label}: {poller.exit_reason}; {figures or 'nothing to do'}",
              file=sys.stderr)  # fmt: skip
    return code


SUMMARY = frozenset({
    "forwarded", "tombstones", "repairs", "repairs_written", "skipped_not_local", "applied",
    "superseded", "came_back", "dead_lettered", "deleted", "deletes_forwarded", "failed_batches",
})  # fmt: skip
