"""Lambda handler: Kinesis event in, ``{"batchItemFailures": [...]}`` out.

Needs only the ``replicator`` package and boto3 (no ``xrh``). Configured by environment:
``STREAM_NAME``, ``TARGET_REGION``, ``ACTIVE_REGION_TABLE``, ``CHECKPOINT_TABLE``,
``DEAD_LETTER_BUCKET``; optional ``ACTIVE_REGION_TTL_S`` (default 1), ``MAX_COMMIT_DELAY_MS``
(default 10000), ``WATERMARK_MARGIN_MS`` (1000), ``MAX_ATTEMPTS`` (6), ``WATERMARK_INTERVAL_S``
(1), ``SHARD_LIST_TTL_S`` (60). Clients are built on the first invocation and reused by the warm
container (nothing happens at import time).

A batch is one shard's records in order (ParallelizationFactor 1). The first record not
acknowledged is reported as the batch item failure; Lambda retries from it.

Poison and transient. A record is *poison* when the target can never accept it: larger than
the record limit, a partition key outside 1..256 characters, or rejected by Kinesis validation
(``ValidationException``/``InvalidArgumentException`` for that entry, or a request validation
rejects, bisected down to the one record). Poison goes to the dead-letter bucket with its full
data, source shard, sequence number and reason, and the batch moves on past it. Everything
else is *transient* and is reported as the batch item failure, to be retried: throttling,
5xx, timeouts and lost answers, a missing stream or a denied permission (an operator fixes
those; the data waits in the source), a failed active-region lookup, a dead-letter bucket that
cannot be written (the poison record then stays in the batch). ``deploy/template.yaml`` retries
without a bound (``MaximumRetryAttempts`` and ``MaximumRecordAgeInSeconds`` -1), so a transient
failure makes a shard wait, never drop: the on-failure destination would only ever receive
metadata, and a later batch's checkpoint would move the watermark past the dropped one. The
limit of waiting is the stream's retention; the template's IteratorAge alarm says a shard waits.

The stream watermark. After each batch (at most once per ``WATERMARK_INTERVAL_S`` per warm
container) the handler reads every shard's checkpoint row (one Query), lists the shards
(cached for ``SHARD_LIST_TTL_S``) and publishes W = min over shards of W_s in the ``#watermark``
row, conditionally, so it only rises (:class:`replicator.core.watermark.WatermarkPublisher`;
concurrent invocations of other shards race harmlessly). What it can claim is less than the
poller: Lambda is not invoked for a shard without new records, so an idle shard's W_s stays
at its last record's arrival minus the delay bound and margin (true, but it holds W back), a
shard that never received a record has no row and blocks any claim, and Lambda never says a
shard is closed, so after a reshard the parents' rows hold W back until the stream trims them.
Claims are logged as EMF lines (``Event: claim``).

Not wired here: the failover bookkeeping of :mod:`replicator.core.handover` (it needs a periodic
tick and the function's own region's checkpoint table), so after a failover with a handover
time the previous region's late copies come back to it once each; run ``xrh replicate`` for
loop-free failovers.
"""

from __future__ import annotations

import base64
import os
import time
from typing import Any

from replicator.core.active import CachedActiveRegion
from replicator.core.batch import ShardReplicator
from replicator.core.metrics import emf_line
from replicator.core.putrecords import Backoff, PutRecordsSender
from replicator.core.records import SourceRecord
from replicator.core.watermark import (
    CachedShardList,
    Claim,
    PeriodicPublisher,
    WatermarkPublisher,
    WatermarkSettings,
)
from replicator.errors import ReplicatorUsageError
from replicator.runners.lambda_env import batch_item_failures

REQUIRED = ("STREAM_NAME", "TARGET_REGION", "ACTIVE_REGION_TABLE", "CHECKPOINT_TABLE", "DEAD_LETTER_BUCKET")  # fmt: skip
_state: dict[str, Any] = {}


def build(environ: dict[str, str], clients: Any = None) -> ShardReplicator:
    """The replicator from environment; ``clients(service, region)`` builds boto3 clients.
    Its stream-watermark publisher is :func:`build_publisher`."""
    missing = [n for n in REQUIRED if not environ.get(n)]
    if missing:
        raise ReplicatorUsageError(f"missing environment variables: {', '.join(missing)}")
    from replicator.adapters.dynamodb import DynamoActiveRegion, DynamoCheckpointStore
    from replicator.adapters.kinesis import KinesisSink
    from replicator.adapters.s3 import S3DeadLetterSink

    if clients is None:
        import boto3
        from botocore.config import Config

        # total_max_attempts: botocore's max_attempts counts retries (1 would send twice).
        cfg = Config(retries={"total_max_attempts": 1}, read_timeout=10)

        def clients(service: str, region: str | None) -> Any:
            return boto3.client(service, region_name=region, config=cfg)

    source_region = environ.get("AWS_REGION") or environ["SOURCE_REGION"]
    target = environ["TARGET_REGION"]
    stream = environ["STREAM_NAME"]
    return ShardReplicator(
        stream=stream,
        source_region=source_region,
        target_region=target,
        sender=PutRecordsSender(
            KinesisSink(clients("kinesis", target)),
            stream,
            backoff=Backoff(max_attempts=int(environ.get("MAX_ATTEMPTS", "6"))),
        ),  # fmt: skip
        active=CachedActiveRegion(
            DynamoActiveRegion(clients("dynamodb", source_region), environ["ACTIVE_REGION_TABLE"]),
            float(environ.get("ACTIVE_REGION_TTL_S", "1")),
            time.monotonic,
            lambda: int(time.time() * 1000),
        ),
        checkpoints=DynamoCheckpointStore(
            clients("dynamodb", target),
            environ["CHECKPOINT_TABLE"],
            f"kinesis:{stream}:{source_region}",
            owner="lambda",
        ),  # fmt: skip
        dead_letters=S3DeadLetterSink(clients("s3", source_region), environ["DEAD_LETTER_BUCKET"]),
        clock_ms=lambda: int(time.time() * 1000),
        watermark=WatermarkSettings(
            int(environ.get("MAX_COMMIT_DELAY_MS", "10000")),
            int(environ.get("WATERMARK_MARGIN_MS", "1000")),
        ),
        log=lambda event, **f: print(emf_line({}, {"Event": event}, int(time.time() * 1000), **f)),
    )


def build_publisher(
    environ: dict[str, str], replicator: ShardReplicator, clients: Any = None
) -> PeriodicPublisher:
    """Publishes the stream watermark from the replicator's checkpoint rows (see the module doc)."""
    from replicator.adapters.kinesis import KinesisReader

    if clients is None:
        import boto3
        from botocore.config import Config

        cfg = Config(retries={"total_max_attempts": 3}, read_timeout=10)

        def clients(service: str, region: str | None) -> Any:
            return boto3.client(service, region_name=region, config=cfg)

    source_region = environ.get("AWS_REGION") or environ["SOURCE_REGION"]
    reader = KinesisReader(clients("kinesis", source_region), replicator.stream)
    shards = CachedShardList(
        reader.list_shards, float(environ.get("SHARD_LIST_TTL_S", "60")), time.monotonic
    )

    def on_claim(claim: Claim) -> None:
        replicator.metrics.add("claims")
        replicator.metrics.watermark_ms = claim.watermark_ms
        print(emf_line({"watermark_ms": claim.watermark_ms}, {"Stream": replicator.stream},
                       claim.claimed_at_ms, Event="claim", claimed_at_ms=claim.claimed_at_ms))  # fmt: skip

    publisher = WatermarkPublisher(
        replicator.checkpoints, shards, lambda: int(time.time() * 1000), on_claim
    )
    return PeriodicPublisher(
        publisher,
        float(environ.get("WATERMARK_INTERVAL_S", "1")),
        time.monotonic,
        on_error=lambda exc: replicator.log("claim_failed", error=f"{type(exc).__name__}: {exc}"),
    )


def records_of(event: dict[str, Any]) -> list[SourceRecord]:
    out = []
    for r in event.get("Records", []):
        k = r["kinesis"]
        shard_id = r["eventID"].split(":", 1)[0]
        arrival = k.get("approximateArrivalTimestamp")
        out.append(
            SourceRecord(
                shard_id,
                k["sequenceNumber"],
                k["partitionKey"],
                base64.b64decode(k["data"]),
                None if arrival is None else int(float(arrival) * 1000),
            )
        )
    return out


def handle(
    event: dict[str, Any],
    replicator: ShardReplicator,
    publisher: PeriodicPublisher | None = None,
) -> dict[str, Any]:
    records = records_of(event)
    if not records:
        return {"batchItemFailures": []}
    result = replicator.process(records[0].shard_id, records)
    if publisher is not None:
        publisher.maybe_publish()  # never raises: a claim never fails the batch
    counters = replicator.metrics.counters
    print(emf_line({k: counters[k] for k in ("records_copied", "dead_lettered", "failed_batches")},
                   {"Stream": replicator.stream}, int(time.time() * 1000)))  # fmt: skip
    return batch_item_failures(result.failed_from)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if "replicator" not in _state:
        environ = dict(os.environ)
        _state["replicator"] = build(environ)
        _state["publisher"] = build_publisher(environ, _state["replicator"])
    return handle(event, _state["replicator"], _state["publisher"])
