"""Lambda handler: Kinesis event in, ``{"batchItemFailures": [...]}`` out.

Needs only the ``replicator`` package and boto3 (no ``xrh``). Configured by environment:
``STREAM_NAME``, ``TARGET_REGION``, ``ACTIVE_REGION_TABLE``, ``CHECKPOINT_TABLE``,
``DEAD_LETTER_BUCKET``; optional ``ACTIVE_REGION_TTL_S`` (default 1), ``MAX_COMMIT_DELAY_MS``
(default 10000), ``WATERMARK_MARGIN_MS`` (1000), ``MAX_ATTEMPTS`` (6). Clients are built on the
first invocation and reused by the warm container (nothing happens at import time).

A batch is one shard's records in order (ParallelizationFactor 1). The first record not
acknowledged is reported as the batch item failure; Lambda retries from it. The stream-level
watermark needs every shard's row: the poller (or a scheduled publisher) publishes it.
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
from replicator.core.watermark import WatermarkSettings
from replicator.errors import ReplicatorUsageError

REQUIRED = ("STREAM_NAME", "TARGET_REGION", "ACTIVE_REGION_TABLE", "CHECKPOINT_TABLE", "DEAD_LETTER_BUCKET")  # fmt: skip
_state: dict[str, Any] = {}


def build(environ: dict[str, str], clients: Any = None) -> ShardReplicator:
    """The replicator from environment; ``clients(service, region)`` builds boto3 clients."""
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


def handle(event: dict[str, Any], replicator: ShardReplicator) -> dict[str, Any]:
    records = records_of(event)
    if not records:
        return {"batchItemFailures": []}
    result = replicator.process(records[0].shard_id, records)
    counters = replicator.metrics.counters
    print(emf_line({k: counters[k] for k in ("records_copied", "dead_lettered", "failed_batches")},
                   {"Stream": replicator.stream}, int(time.time() * 1000)))  # fmt: skip
    if result.failed_from is None:
        return {"batchItemFailures": []}
    return {"batchItemFailures": [{"itemIdentifier": result.failed_from}]}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if "replicator" not in _state:
        _state["replicator"] = build(dict(os.environ))
    return handle(event, _state["replicator"])
