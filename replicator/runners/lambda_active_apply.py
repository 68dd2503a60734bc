"""Lambda handler of the ``active-active`` pipeline's applier: a Kinesis event of the function's
own region's staging stream in, the same region's items table written, ``{"batchItemFailures":
[...]}`` out.

Deployed by ``deploy/active-active-template.yaml`` in each region S, it is the poller's applier
(``xrh replicate --pipeline active-active --side S --role apply``) as a function: S's
``{prefix}-staging`` stream (what the other region's forwarder sent) to S's ``{prefix}-items``
(:class:`replicator.core.lww_apply.Applier`: each key squashed to its largest stamp, written with
the last-writer-wins condition, so an older version is superseded and a re-delivery changes
nothing), with its checkpoint rows in S's checkpoint table under the poller's scope. Run one
applier per region, this function or the poller, not both: Lambda keeps no lease.

Configured by environment: ``TABLE_NAME`` (the items table, in ``AWS_REGION``: Lambda sets it),
``STAGING_STREAM`` (the staging stream, in ``AWS_REGION``), ``SOURCE_REGION`` (the other region:
where the changes were made; named in dead letters and in the lag's direction),
``CHECKPOINT_TABLE`` (in ``AWS_REGION``), ``DEAD_LETTER_BUCKET`` (in ``AWS_REGION``); optional
``MAX_ATTEMPTS`` (8: sends per write before the batch fails and Lambda retries it) and
``MAX_IN_FLIGHT`` (8: concurrent conditional PutItem calls, the poller's). Clients are built on
the first invocation and reused by the warm container (nothing happens at import time).

A batch is one shard's records in order (ParallelizationFactor 1: a key's records are in one
shard, and the squash keeps the later of two records with equal stamps). Acknowledgement is all
or nothing: on failure (a write left unwritten, dead letters that cannot be stored) the batch's
first record is reported as the batch item failure and Lambda delivers the batch again from it;
writing it again is harmless (the condition accepts the same version and refuses older ones).
Records that are not the contract's JSON go to the dead-letter bucket with their data. A
checkpoint write that fails never fails the batch (the row only lags).

Replication lag: the poller appends a line to ``replication-lag.jsonl`` per batch; here each line
becomes an EMF metric ``replication_lag_ms`` with the dimension ``Direction``
(``SOURCE_REGION->AWS_REGION``: regions, not the poller's sides ``a->b``).

``xrh.active_active`` travels in the package: the applier's record format imports it (standard
library only); the checkpoint scope is its ``APPLY_SCOPE``.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from replicator.core.lww_apply import Applier
from replicator.core.lww_writes import ConditionalWriter
from replicator.core.metrics import emf_line
from replicator.core.putrecords import Backoff
from replicator.core.records import SourceRecord
from replicator.errors import ReplicatorUsageError
from replicator.runners.lambda_env import batch_item_failures, boto_clients, positive, require
from replicator.runners.lambda_handler import records_of
from xrh.active_active import APPLY_SCOPE  # imported by the applier's record format anyway

REQUIRED = ("TABLE_NAME", "STAGING_STREAM", "SOURCE_REGION", "CHECKPOINT_TABLE",
            "DEAD_LETTER_BUCKET", "AWS_REGION")  # fmt: skip
REPORTED = ("records_in", "applied", "superseded", "squashed", "came_back", "malformed",
            "dead_lettered", "write_calls", "write_retries", "failed_batches",
            "checkpoint_errors")  # fmt: skip
_state: dict[str, Any] = {}


def lag_metric(line: str) -> None:
    """The applier's lag line (``replication-lag.jsonl`` in the poller) as an EMF line."""
    lag = json.loads(line)
    print(emf_line({"replication_lag_ms": lag["lag_ms"]}, {"Direction": lag["direction"]},
                   lag["ts_ms"]))  # fmt: skip


def build(environ: dict[str, str], clients: Any = None) -> Applier:
    """The applier from environment; ``clients(service, region)`` builds boto3 clients."""
    require(environ, REQUIRED)
    attempts = positive(environ, "MAX_ATTEMPTS", "8")
    max_in_flight = positive(environ, "MAX_IN_FLIGHT", "8")
    region, source = environ["AWS_REGION"], environ["SOURCE_REGION"]
    if region == source:
        raise ReplicatorUsageError(f"SOURCE_REGION={source!r}: must be the other region")
    from replicator.adapters.dynamodb import DynamoCheckpointStore
    from replicator.adapters.lww_table import DynamoLwwTable
    from replicator.adapters.s3 import S3DeadLetterSink

    if clients is None:
        clients = boto_clients(max_in_flight + 2)

    table, stream = environ["TABLE_NAME"], environ["STAGING_STREAM"]
    dynamodb = clients("dynamodb", region)  # the stream's, the table's and the checkpoints'
    # The poller's scope (xrh.active_active.APPLY_SCOPE: the region the applier writes).
    scope = APPLY_SCOPE.format(stream=stream, region=region)
    return Applier(
        stream=stream,
        table=table,
        region=region,
        other_region=source,
        direction=f"{source}->{region}",
        writer=ConditionalWriter(
            DynamoLwwTable(dynamodb),
            table,
            backoff=Backoff(max_attempts=attempts),
            max_in_flight=max_in_flight,
        ),  # fmt: skip
        checkpoints=DynamoCheckpointStore(
            dynamodb, environ["CHECKPOINT_TABLE"], scope, owner="lambda"
        ),
        dead_letters=S3DeadLetterSink(clients("s3", region), environ["DEAD_LETTER_BUCKET"]),
        clock_ms=lambda: int(time.time() * 1000),
        lag_sink=lag_metric,
        log=lambda event, **f: print(emf_line({}, {"Event": event}, int(time.time() * 1000), **f)),
    )


def handle(event: dict[str, Any], applier: Applier) -> dict[str, Any]:
    """Apply one event's batch; on failure report its first record (acknowledgement is all
    or nothing), so that Lambda delivers the whole batch again."""
    records: list[SourceRecord] = records_of(event)  # shard id from eventID, data decoded
    if not records:
        return {"batchItemFailures": []}
    result = applier.process(records[0].shard_id, records)
    counters = applier.metrics.counters
    metrics: dict[str, int | float] = {k: counters.get(k, 0) for k in REPORTED}
    print(emf_line(metrics, {"Stream": applier.stream, "Role": "apply"},
                   int(time.time() * 1000)))  # fmt: skip
    return batch_item_failures(result.failed_from)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if "applier" not in _state:
        _state["applier"] = build(dict(os.environ))
    return handle(event, _state["applier"])
