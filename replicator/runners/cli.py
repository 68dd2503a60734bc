"""``xrh replicate``: the reference replicators as standalone pollers.

``--pipeline kinesis`` (the default, this module) reads the stream of ``--side`` (its own
region) and writes the same-named stream in the other region. ``--pipeline dynamodb``
(:mod:`replicator.runners.table_cli`) copies the items table of ``--side`` into the other
region's (bootstrap copy, ``--scan-segments`` and ``--bootstrap``), then applies its stream.

Kinesis: Leases, checkpoints, claims and metrics as described in :mod:`replicator.runners.poller`
and :mod:`replicator.core.watermark`. Exit codes: 0 stopped or drained, 2 could not drain
(``--drain-timeout``), 3 bad usage. SIGTERM: graceful stop; SIGUSR1: drain and exit.

``--behaviour sample`` runs the published sample's copy logic instead
(:mod:`replicator.core.sample`) under the same poller, leases and shard walk, so that only the
copy logic differs; its log lines, metrics file and summary say "sample behaviour", and it
publishes no stream watermark of its own (its per-record checkpoint writes are its claims).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from replicator.runners import options
from replicator.runners.run_files import RunFiles
from xrh import early_signals
from xrh.config import Side

__all__ = ["RunFiles", "add_arguments", "build", "main", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options shared by every pipeline, and the action-log consumers' own."""
    from replicator.runners import action_cli, active_cli

    options.add_arguments(parser)
    action_cli.add_arguments(parser)
    active_cli.add_arguments(parser)


def _run_dir(args: argparse.Namespace, runs_dir: Path) -> Path:
    from xrh import runs

    if args.run_dir:
        path = Path(args.run_dir)
        path.mkdir(parents=True, exist_ok=True)
        return path.resolve()
    latest = runs_dir / runs.LATEST
    if latest.exists():
        return latest.resolve()
    return runs.create_run(runs_dir).path


def build(args: argparse.Namespace, config: Any, run_dir: Path, worker_id: str):
    """Wire the poller from boto3 adapters (also used by the functional tests)."""
    from replicator.adapters.dynamodb import DynamoCheckpointStore
    from replicator.adapters.kinesis import KinesisReader
    from replicator.adapters.leases import LeaseTable
    from replicator.core.metrics import emf_line
    from replicator.core.sample import SAMPLE_LABEL, SAMPLE_NOTE
    from replicator.core.watermark import WatermarkPublisher
    from replicator.runners.poller import NoClaims, Poller
    from xrh.aws import AwsClients
    from xrh.contracts import WatermarkClaim, checkpoint_scope
    from xrh.resources import replicated_names

    sample = getattr(args, "behaviour", "reference") == "sample"
    side = Side(args.side)
    target = side.other
    names = replicated_names(config)
    source_region, target_region = config.region(side), config.region(target)
    clients = AwsClients(config, max_attempts=1, read_timeout=10.0)
    writes = AwsClients(config, max_attempts=1, **options.write_timeouts(args))
    files = RunFiles(run_dir, worker_id, SAMPLE_LABEL if sample else None)
    reader = KinesisReader(clients.client("kinesis", side), names.stream)
    scope = checkpoint_scope("kinesis", names.stream, source_region)
    checkpoints = DynamoCheckpointStore(
        writes.client("dynamodb", target), names.checkpoint_table, scope, owner=worker_id
    )
    if sample:
        replicator, sink, lookup, calls = _sample_replicator(
            config, names, side, source_region, target_region, scope, checkpoints, files,
            worker_id, options.write_timeouts(args),
        )  # fmt: skip
        publisher: Any = NoClaims()
        files.log("start", note=SAMPLE_NOTE)
    else:
        replicator, sink, lookup, calls = _reference_replicator(
            args, clients, writes, names, side, source_region, target_region, checkpoints, files
        )

        def on_claim(claim: Any) -> None:
            files.append_claim(
                WatermarkClaim(
                    claim.claimed_at_ms, claim.watermark_ms, names.stream,
                    source_region, target_region, worker_id,
                ).to_line()
            )  # fmt: skip

        publisher = WatermarkPublisher(
            checkpoints, reader.list_shards, lambda: int(time.time() * 1000), on_claim
        )
    leases = LeaseTable(
        clients.client("dynamodb", side), names.lease_table, names.stream, worker_id
    )
    settings = options.poller_settings(
        args, batch_limit=args.batch_size, start_at_latest=args.start_at_latest
    )
    metrics = replicator.metrics
    dimensions = {"Stream": names.stream, "Worker": worker_id}
    extra = {"Behaviour": SAMPLE_LABEL} if sample else {}

    def on_tick() -> None:
        snap = metrics.snapshot()
        if sample:
            snap["behaviour"] = SAMPLE_NOTE
        snap["aws_calls"] = {
            "source_reads": reader.calls,
            "target_puts": sink.calls,
            "checkpoint": checkpoints.calls + calls(),
            "active_region": lookup.calls,
            "leases": leases.calls,
        }
        files.write_metrics(snap)
        now = int(time.time() * 1000)
        files.emf(emf_line(dict(metrics.counters), dimensions, now, **extra))
        for shard_id, lag in metrics.shards.items():
            values = {k: v for k, v in (("millis_behind_latest", lag.millis_behind_latest), ("commit_lag_ms", lag.commit_lag_ms)) if v is not None}  # fmt: skip
            if values:
                files.emf(emf_line(values, {"Stream": names.stream, "ShardId": shard_id}, now, **extra))  # fmt: skip

    poller = Poller(
        reader=reader, leases=leases, replicator=replicator, checkpoints=checkpoints,
        publisher=publisher, settings=settings, log=files.log, on_tick=on_tick,
    )  # fmt: skip
    return poller, files


def _reference_replicator(args, clients, writes, names, side, source_region, target_region, checkpoints, files):  # fmt: skip
    from replicator.adapters.dynamodb import DynamoActiveRegion, DynamoHandoverStore
    from replicator.adapters.kinesis import KinesisSink
    from replicator.adapters.s3 import S3DeadLetterSink
    from replicator.core.active import CachedActiveRegion
    from replicator.core.batch import ShardReplicator
    from replicator.core.handover import Handover, HandoverSettings
    from replicator.core.putrecords import Backoff, Limits, PutRecordsSender
    from replicator.core.watermark import WatermarkSettings

    sink = KinesisSink(writes.client("kinesis", side.other))
    sender = PutRecordsSender(
        sink,
        names.stream,
        limits=Limits(500, args.max_record_bytes, args.max_request_bytes),
        backoff=Backoff(max_attempts=args.max_attempts),
    )
    lookup = DynamoActiveRegion(clients.client("dynamodb", side), names.active_region_table)
    active = CachedActiveRegion(
        lookup, args.active_region_ttl, time.monotonic, lambda: int(time.time() * 1000)
    )
    dead = S3DeadLetterSink(clients.client("s3", side), names.dead_letter_bucket(source_region))
    in_flight_ms = int((options.write_timeout(args) + args.max_clock_skew_ms / 1000 + 1) * 1000)
    handover = Handover(
        this_region=source_region,
        outbound=DynamoHandoverStore(writes.client("dynamodb", side.other), names.checkpoint_table),
        inbound=DynamoHandoverStore(clients.client("dynamodb", side), names.checkpoint_table),
        clock_ms=lambda: int(time.time() * 1000),
        settings=HandoverSettings(
            dead_after_ms=int(args.handover_timeout * 1000),
            grace_ms=int(args.handover_grace * 1000),
            in_flight_ms=in_flight_ms,
            remember_ms=max(10_000, int(args.active_region_ttl * 1000) + in_flight_ms + 5_000),
            margin_ms=args.watermark_margin_ms,
        ),
        log=files.log,
    )
    replicator = ShardReplicator(
        stream=names.stream,
        source_region=source_region,
        target_region=target_region,
        sender=sender,
        active=active,
        checkpoints=checkpoints,
        dead_letters=dead,
        clock_ms=lambda: int(time.time() * 1000),
        watermark=WatermarkSettings(args.max_commit_delay_ms, args.watermark_margin_ms),
        log=files.log,
        handover=handover,
    )
    stores = (handover.outbound, handover.inbound)
    return replicator, sink, lookup, lambda: sum(s.calls for s in stores)  # type: ignore[attr-defined]


#: The AWS SDK for Java 2.x retries 3 times by default (4 sends), DynamoDB 8 times (9 sends);
#: the sample relies on that, so its reproduction does too.
SAMPLE_KINESIS_ATTEMPTS, SAMPLE_DYNAMODB_ATTEMPTS = 4, 9


def _sample_replicator(config, names, side, source_region, target_region, scope, positions, files, worker_id, timeouts):  # fmt: skip
    from replicator.adapters.dynamodb import DynamoActiveRegion, DynamoSampleWatermark
    from replicator.adapters.kinesis import KinesisSink
    from replicator.core.sample import SampleReplicator
    from xrh.aws import AwsClients

    # Each attempt is bounded like the reference's writes; the SDK's retries multiply the bound
    # (the poller's lease fence is looser for the sample than for the reference).
    kinesis = AwsClients(config, max_attempts=SAMPLE_KINESIS_ATTEMPTS, **timeouts)
    dynamodb = AwsClients(config, max_attempts=SAMPLE_DYNAMODB_ATTEMPTS, **timeouts)
    sink = KinesisSink(kinesis.client("kinesis", side.other))
    lookup = DynamoActiveRegion(
        dynamodb.client("dynamodb", side), names.active_region_table, consistent_read=False
    )
    row = DynamoSampleWatermark(
        dynamodb.client("dynamodb", side.other), names.checkpoint_table, scope, owner=worker_id
    )
    replicator = SampleReplicator(
        stream=names.stream,
        source_region=source_region,
        target_region=target_region,
        sink=sink,
        active=lookup,
        watermark_row=row,
        positions=positions,
        clock_ms=lambda: int(time.time() * 1000),
        log=files.log,
    )
    return replicator, sink, lookup, lambda: row.calls


REPLICATED_PIPELINES = ("kinesis", "dynamodb", "action-log", "active-active", "postgres-cdc")


def run(args: argparse.Namespace) -> int:
    from xrh.config import config_from_options
    from xrh.endpoint import resolve_config
    from xrh.resources import replicated_names

    options.check(args)
    config = config_from_options(args)
    if config.pipeline not in REPLICATED_PIPELINES:
        from xrh.errors import UsageError

        raise UsageError(
            f"--pipeline {config.pipeline}: xrh replicate has no replicator for this pipeline "
            f"yet (available: {', '.join(REPLICATED_PIPELINES)})"
        )
    if config.pipeline == "dynamodb":
        from replicator.runners import table_cli

        options.check_dynamodb(args)
    if config.pipeline == "action-log":
        from replicator.runners import action_cli

        action_cli.check(args)
    if config.pipeline == "active-active":
        from replicator.runners import active_cli

        active_cli.check(args)
    run_dir = _run_dir(args, config.runs_dir)
    config = resolve_config(config, run_dir)
    worker_id = args.worker_id or f"{socket.gethostname()}-{os.getpid()}"
    if config.pipeline == "dynamodb":
        return table_cli.run(args, config, run_dir, worker_id)
    if config.pipeline == "action-log":
        return action_cli.run(args, config, run_dir, worker_id)
    if config.pipeline == "active-active":
        return active_cli.run(args, config, run_dir, worker_id)
    poller, files = build(args, config, run_dir, worker_id)
    early_signals.handle(stop=poller.request_stop, drain=poller.request_drain)
    label = f" ({files.behaviour})" if files.behaviour else ""
    print(f"replicating {replicated_names(config).stream} from side {args.side} as {worker_id}{label}; "
          f"log {files.log_path}", file=sys.stderr)  # fmt: skip
    try:
        code = poller.run()
    finally:
        files.close()
    counters = poller.replicator.metrics.counters
    print(f"replicator {worker_id}{label}: {poller.exit_reason}; copied {counters['records_copied']} "
          f"records, {counters['dead_lettered']} dead-lettered, {counters['claims']} claims",
          file=sys.stderr)  # fmt: skip
    return code


def main(argv: list[str] | None = None) -> int:
    """``python -m replicator.runners.cli`` (tests start poller processes this way)."""
    from xrh.config import add_common_options
    from xrh.errors import HarnessError

    parser = argparse.ArgumentParser(prog="xrh replicate")
    add_common_options(parser)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except HarnessError as exc:
        print(f"xrh replicate: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
