"""``xrh replicate --pipeline action-log``: a consumer of the actions stream, as a shard poller.

Both consumers read ``{prefix}-actions`` in region A (the log, :mod:`xrh.action_log`):

- ``--consumer fast`` applies it to ``{prefix}-items`` in A, with its checkpoints, leases and
  dead letters in A's tables and bucket; no rate limit unless ``--max-rate`` is given;
- ``--consumer lazy`` applies it to ``{prefix}-items`` in B, with its checkpoints, leases and
  dead letters in B, at most ``--max-rate`` actions per second (default
  :data:`DEFAULT_LAZY_RATE`; a lazy consumer without a bound is a second fast one, so 0 is
  refused). Its GetRecords limit is capped at one second's worth of actions, so that a batch
  waits at most about a second for its tokens and leases are renewed in between.

Without ``--consumer``, ``--side a`` (the default) is the fast consumer and ``--side b`` the
lazy one (the orchestrator passes ``--side``). Checkpoint rows are under
``checkpoint_scope("action-log", actions stream, region A)`` in the consumer's own region.

The poller, leases, fencing, drain (``--until-drained``, SIGUSR1, ``--drain-timeout``: exit 2)
and stop (SIGTERM) are the kinesis runner's (:mod:`replicator.runners.poller`). The copy logic
is :class:`~replicator.core.action_apply.ActionApplier` (``--behaviour reference``, the
default) or the proof of concept's, :class:`~replicator.core.action_sample.
SampleActionConsumer` (``--behaviour sample``, labelled in every log line and the metrics).
Files in the run directory: the JSON log ``replicator-<worker>.log`` (the worker id defaults to
``<consumer>-<host>-<pid>``), the metrics file shared with other workers, and about once a
second per shard a line of ``consumer-lag.jsonl``; a shard more than 80 % of the stream's
retention behind is a warning on stderr and in the log (:mod:`replicator.core.action_pace`).
Exit codes: 0 stopped or drained, 2 could not drain, 3 bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from replicator.runners import options
from xrh import early_signals

DEFAULT_LAZY_RATE = 1000.0
#: The AWS SDK for JavaScript v2 retries DynamoDB calls 10 times by default (11 sends); the
#: proof of concept relied on that, so its reproduction does too.
SAMPLE_DYNAMODB_ATTEMPTS = 11
UPDATES_IN_FLIGHT = 4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("--pipeline action-log")
    group.add_argument(
        "--consumer", choices=["fast", "lazy"], default=None,
        help="fast: apply A's actions stream to A's items table; lazy: to B's, rate limited "
        "(default: fast with --side a, lazy with --side b)",
    )  # fmt: skip
    group.add_argument(
        "--max-rate", type=float, default=None,
        help="actions applied per second at most, across shards (fast: unlimited by default, "
        f"0 unlimited; lazy: default {DEFAULT_LAZY_RATE:g}, must be > 0)",
    )  # fmt: skip


def consumer_of(args: argparse.Namespace) -> str:
    consumer = getattr(args, "consumer", None)
    if consumer is not None:
        return consumer
    return "fast" if args.side == "a" else "lazy"


def rate_of(args: argparse.Namespace, consumer: str) -> float | None:
    """Actions per second, or None for no limit."""
    rate = getattr(args, "max_rate", None)
    if rate is None:
        return DEFAULT_LAZY_RATE if consumer == "lazy" else None
    return rate or None


def check(args: argparse.Namespace) -> None:
    """Refusals of the action-log pipeline (UsageError, exit 3)."""
    from xrh.errors import UsageError

    consumer = consumer_of(args)
    rate = getattr(args, "max_rate", None)
    if rate is not None and (rate < 0 or rate != rate or rate == float("inf")):
        raise UsageError(f"--max-rate must be a finite number >= 0, got {rate}")
    if consumer == "lazy" and rate == 0:
        raise UsageError(
            "--max-rate 0 (unlimited) cannot be used with --consumer lazy: the lazy consumer is "
            "the rate-limited one; give a positive rate (actions per second) or use --consumer fast"
        )
    if getattr(args, "start_at_latest", False):
        raise UsageError(
            "--start-at-latest cannot be used with --pipeline action-log: the table is the fold "
            "of the whole log, and skipping its older actions would leave it wrong for good"
        )


def _batch_limit(args: argparse.Namespace, rate: float | None) -> int:
    if rate is None:
        return args.batch_size
    return max(1, min(args.batch_size, int(rate)))


def build(args: argparse.Namespace, config: Any, run_dir: Path, worker_id: str):
    """Wire the consumer from boto3 adapters: (poller, consumer, files, lag recorder)."""
    from replicator.adapters.action_table import DynamoActionTable, stream_retention_hours
    from replicator.adapters.dynamodb import DynamoCheckpointStore
    from replicator.adapters.kinesis import KinesisReader
    from replicator.adapters.leases import LeaseTable
    from replicator.adapters.s3 import S3DeadLetterSink
    from replicator.core.action_pace import LagRecorder, TokenBucket, unlimited
    from replicator.core.metrics import emf_line
    from replicator.runners.poller import NoClaims, Poller
    from replicator.runners.run_files import RunFiles
    from xrh.action_log import CONSUMERS, LAG_FILE
    from xrh.aws import AwsClients
    from xrh.config import Side
    from xrh.contracts import checkpoint_scope
    from xrh.resources import ResourceNames

    consumer = consumer_of(args)
    sample = getattr(args, "behaviour", "reference") == "sample"
    rate = rate_of(args, consumer)
    source, target = Side.A, Side(CONSUMERS[consumer])
    names = ResourceNames(config.prefix)
    source_region, target_region = config.region(source), config.region(target)
    reads = AwsClients(config, max_attempts=1, read_timeout=10.0)
    writes = AwsClients(
        config, max_attempts=1, max_pool_connections=2 * UPDATES_IN_FLIGHT + 8,
        **options.write_timeouts(args),
    )  # fmt: skip
    from replicator.core.action_sample import SAMPLE_LABEL, SAMPLE_NOTE

    files = RunFiles(run_dir, worker_id, SAMPLE_LABEL if sample else None)
    reader = KinesisReader(reads.client("kinesis", source), names.actions_stream)
    scope = checkpoint_scope("action-log", names.actions_stream, source_region)
    checkpoints = DynamoCheckpointStore(
        writes.client("dynamodb", target), names.checkpoint_table, scope, owner=worker_id
    )
    pace = TokenBucket(rate).acquire if rate is not None else unlimited
    if sample:
        sample_clients = AwsClients(
            config, max_attempts=SAMPLE_DYNAMODB_ATTEMPTS, **options.write_timeouts(args)
        )
        table = DynamoActionTable(sample_clients.client("dynamodb", target))
        applier: Any = _sample(names, table, checkpoints, pace, files)
        files.log("start", note=SAMPLE_NOTE)
    else:
        table = DynamoActionTable(writes.client("dynamodb", target))
        dead = S3DeadLetterSink(reads.client("s3", target), names.dead_letter_bucket(target_region))
        applier = _reference(args, names, table, checkpoints, dead, pace, files,
                             source_region, target_region)  # fmt: skip
    leases = LeaseTable(
        reads.client("dynamodb", target), names.lease_table, names.actions_stream, worker_id
    )
    settings = options.poller_settings(
        args, batch_limit=_batch_limit(args, rate), start_at_latest=False
    )
    retention = stream_retention_hours(reads.client("kinesis", source), names.actions_stream)
    lag_path = run_dir / LAG_FILE

    def append(line: str) -> None:
        fd = os.open(lag_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    lag = LagRecorder(
        consumer, retention_hours=retention, append=append,
        warn=lambda message: print(message, file=sys.stderr, flush=True), log=files.log,
        clock_ms=lambda: int(time.time() * 1000),
    )  # fmt: skip
    metrics = applier.metrics
    dimensions = {"Stream": names.actions_stream, "Consumer": consumer, "Worker": worker_id}
    extra = {"Behaviour": SAMPLE_LABEL} if sample else {}
    holder: dict[str, Any] = {}

    def on_tick() -> None:
        snap = metrics.snapshot()
        snap.update(pipeline="action-log", consumer=consumer, max_rate=rate)
        if sample:
            snap["behaviour"] = SAMPLE_NOTE
        snap["aws_calls"] = {
            "source_reads": reader.calls, "target_writes": table.calls,
            "checkpoint": checkpoints.calls, "leases": leases.calls,
        }  # fmt: skip
        try:
            files.write_metrics(snap)
            files.emf(
                emf_line(dict(metrics.counters), dimensions, int(time.time() * 1000), **extra)
            )
            poller = holder.get("poller")
            for shard_id in sorted(poller.owned) if poller is not None else []:
                shard = metrics.shards.get(shard_id)
                behind = shard.millis_behind_latest if shard is not None else None
                lag.sample(shard_id, behind, applier.applied_arrival_ms.get(shard_id))
        except OSError as exc:
            files.log("metrics_failed", error=str(exc))

    poller = Poller(
        reader=reader, leases=leases, replicator=applier, checkpoints=checkpoints,
        publisher=NoClaims(), settings=settings, log=files.log, on_tick=on_tick,
    )  # fmt: skip
    holder["poller"] = poller
    files.log("consumer", consumer=consumer, source_region=source_region,
              target_region=target_region, max_rate=rate, batch_limit=settings.batch_limit,
              retention_hours=retention)  # fmt: skip
    return poller, applier, files, consumer


def _reference(args, names, table, checkpoints, dead, pace, files, source_region, target_region):  # fmt: skip
    import random

    from replicator.core.action_apply import ActionApplier
    from replicator.core.action_update import ChainUpdater
    from replicator.core.putrecords import Backoff
    from replicator.core.table_writes import BatchWriter

    backoff = Backoff(max_attempts=args.max_attempts)
    return ActionApplier(
        stream=names.actions_stream,
        table=names.items_table,
        source_region=source_region,
        target_region=target_region,
        updater=ChainUpdater(table, names.items_table, backoff=backoff, random=random.random),
        writer=BatchWriter(table, names.items_table, backoff=backoff, max_in_flight=4),
        checkpoints=checkpoints,
        dead_letters=dead,
        clock_ms=lambda: int(time.time() * 1000),
        pace=pace,
        max_in_flight=UPDATES_IN_FLIGHT,
        log=files.log,
    )


def _sample(names, table, checkpoints, pace, files):
    from replicator.core.action_sample import SampleActionConsumer

    return SampleActionConsumer(
        stream=names.actions_stream, table=names.items_table, sink=table,
        checkpoints=checkpoints, pace=pace, log=files.log,
    )  # fmt: skip


def run(args: argparse.Namespace, config: Any, run_dir: Path, worker_id: str) -> int:
    """``xrh replicate --pipeline action-log`` once the configuration is resolved."""
    consumer = consumer_of(args)
    if args.worker_id is None:
        worker_id = f"{consumer}-{worker_id}"
    poller, applier, files, consumer = build(args, config, run_dir, worker_id)
    early_signals.handle(stop=poller.request_stop, drain=poller.request_drain)
    label = f" ({files.behaviour})" if files.behaviour else ""
    print(f"consuming {config.prefix}-actions as the {consumer} consumer ({worker_id}){label}; "
          f"log {files.log_path}", file=sys.stderr, flush=True)  # fmt: skip
    try:
        code = poller.run()
    finally:
        applier.close()
        files.close()
    c = applier.metrics.counters
    lost = c.get("actions_lost", 0) + c.get("malformed_lost", 0) + c.get("unprocessed_lost", 0)
    tail = (
        f"{lost} lost (logged only)"
        if files.behaviour
        else f"{c.get('dead_lettered', 0)} dead-lettered"
    )
    print(f"{consumer} consumer {worker_id}{label}: {poller.exit_reason}; applied "
          f"{c.get('actions_applied', 0)} actions, {tail}", file=sys.stderr)  # fmt: skip
    return code
