"""Lambda handler of the ``action-log`` pipeline's fast path: a Kinesis event of the actions
stream in, the items table of the function's own region written, ``{"batchItemFailures":
[...]}`` out.

Deployed by ``deploy/action-log-template.yaml`` in region A, it is the fast consumer
(``xrh replicate --pipeline action-log --consumer fast``) as a function: it applies
``{prefix}-actions`` to ``{prefix}-items`` in the same region, with its checkpoint rows in the
same region's checkpoint table under the poller's scope. Run one fast consumer, this function or
the poller, not both: Lambda keeps no lease, and the two would write the same rows.

Configured by environment: ``STREAM_NAME`` (the actions stream), ``TABLE_NAME`` (the items
table, in ``AWS_REGION``: Lambda sets it), ``CHECKPOINT_TABLE``, ``DEAD_LETTER_BUCKET``;
optional ``MAX_ATTEMPTS`` (8: sends per write before the batch fails and Lambda retries it) and
``MAX_IN_FLIGHT`` (4: concurrent BatchWriteItem calls, and as many concurrent UpdateItem
chains). No rate limit: that is the lazy consumer's, which is not this one. Clients are built
on the first invocation and reused by the warm container (nothing happens at import time).

A batch is one shard's records in order (ParallelizationFactor 1: per-key order is the shard's
order, and a batch's writes are planned per key). It is applied by
:class:`replicator.core.action_apply.ActionApplier` exactly as the poller's consumer applies a
GetRecords batch: malformed actions to the dead-letter bucket with their data, each key's ops
as at most one write, the conditional ``xrh_seq`` update so that a replay never counts an ADD
twice, and the checkpoint written only after every write was acknowledged. Acknowledgement is
all or nothing: on failure the batch's first record is reported as the batch item failure and
Lambda delivers the batch again from it (a re-delivery is a replay, applied once in effect).
A checkpoint write that fails never fails the batch (the row only lags); the event source
mapping keeps the position Lambda reads from, the rows are what verify and the operator read.

Not needed by the handler itself: ``xrh``. The checkpoint scope is computed here; the applier
still imports the wire format (:mod:`xrh.action_log`, and :mod:`xrh.contracts` for the key
attribute, both standard library only), so the deployed package carries those two modules.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

from replicator.core.action_apply import ActionApplier
from replicator.core.action_update import ChainUpdater
from replicator.core.metrics import emf_line
from replicator.core.putrecords import Backoff
from replicator.core.records import SourceRecord
from replicator.core.table_writes import BatchWriter
from replicator.runners.lambda_env import batch_item_failures, boto_clients, positive, require
from replicator.runners.lambda_handler import records_of

REQUIRED = ("STREAM_NAME", "TABLE_NAME", "CHECKPOINT_TABLE", "DEAD_LETTER_BUCKET", "AWS_REGION")
REPORTED = ("actions_applied", "malformed", "dead_lettered", "write_calls", "update_calls",
            "condition_retries", "ops_already_applied", "throttled_requests", "failed_batches",
            "checkpoint_errors")  # fmt: skip
_state: dict[str, Any] = {}


def scope_of(stream: str, region: str) -> str:
    """The checkpoint rows' partition key, the poller's consumer's
    (``xrh.contracts.checkpoint_scope("action-log", stream, source region)``)."""
    return f"action-log:{stream}:{region}"


def build(environ: dict[str, str], clients: Any = None) -> ActionApplier:
    """The applier from environment; ``clients(service, region)`` builds boto3 clients."""
    require(environ, REQUIRED)
    attempts = positive(environ, "MAX_ATTEMPTS", "8")
    max_in_flight = positive(environ, "MAX_IN_FLIGHT", "4")
    from replicator.adapters.action_table import DynamoActionTable
    from replicator.adapters.dynamodb import DynamoCheckpointStore
    from replicator.adapters.s3 import S3DeadLetterSink

    if clients is None:
        clients = boto_clients(2 * max_in_flight + 2)

    region = environ["AWS_REGION"]  # the stream's, the table's and the checkpoints' region
    stream, table = environ["STREAM_NAME"], environ["TABLE_NAME"]
    dynamodb = clients("dynamodb", region)
    target = DynamoActionTable(dynamodb)
    backoff = Backoff(max_attempts=attempts)
    return ActionApplier(
        stream=stream,
        table=table,
        source_region=region,
        target_region=region,
        updater=ChainUpdater(target, table, backoff=backoff, random=random.random),
        writer=BatchWriter(target, table, backoff=backoff, max_in_flight=max_in_flight),
        checkpoints=DynamoCheckpointStore(
            dynamodb, environ["CHECKPOINT_TABLE"], scope_of(stream, region), owner="lambda"
        ),
        dead_letters=S3DeadLetterSink(clients("s3", region), environ["DEAD_LETTER_BUCKET"]),
        clock_ms=lambda: int(time.time() * 1000),
        max_in_flight=max_in_flight,
        log=lambda event, **f: print(emf_line({}, {"Event": event}, int(time.time() * 1000), **f)),
    )


def handle(event: dict[str, Any], applier: ActionApplier) -> dict[str, Any]:
    """Apply one event's batch; on failure report its first record (acknowledgement is all
    or nothing), so that Lambda delivers the whole batch again."""
    records: list[SourceRecord] = records_of(event)  # shard id from eventID, data decoded
    if not records:
        return {"batchItemFailures": []}
    result = applier.process(records[0].shard_id, records)
    counters = applier.metrics.counters
    lag = applier.metrics.histogram("apply_lag_ms")
    metrics: dict[str, int | float] = {k: counters.get(k, 0) for k in REPORTED}
    if lag.max is not None:
        metrics["apply_lag_max_ms"] = lag.max
    print(emf_line(metrics, {"Stream": applier.stream, "Consumer": "fast"},
                   int(time.time() * 1000)))  # fmt: skip
    return batch_item_failures(result.failed_from)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if "applier" not in _state:
        _state["applier"] = build(dict(os.environ))
    return handle(event, _state["applier"])
