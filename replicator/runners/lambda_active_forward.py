"""Lambda handler of the ``active-active`` pipeline's forwarder: a DynamoDB stream event of the
function's own region's items table in, the other region's staging stream written,
``{"batchItemFailures": [...]}`` out.

Deployed by ``deploy/active-active-template.yaml`` in each region S, it is the poller's forwarder
(``xrh replicate --pipeline active-active --side S --role forward``) as a function: S's
``{prefix}-items`` stream to the other region's ``{prefix}-staging`` stream
(:class:`replicator.core.lww_forward.Forwarder`: local changes only, repairs of regressed local
writes and tombstones for deletes written to S's table under the last-writer-wins condition).
Run one forwarder per region, this function or the poller, not both: Lambda keeps no lease.

Configured by environment: ``TABLE_NAME`` (the items table, in ``AWS_REGION``: Lambda sets it),
``STAGING_STREAM`` (the staging stream's name in the other region), ``TARGET_REGION`` (the other
region), ``CHECKPOINT_TABLE`` (in ``TARGET_REGION``, as the poller's), ``DEAD_LETTER_BUCKET``
(in ``AWS_REGION``); optional ``MAX_ATTEMPTS`` (8: sends per staging record and per repair or
tombstone before the batch fails and Lambda retries it) and ``MAX_IN_FLIGHT`` (8: concurrent
conditional PutItem calls, the poller's). Clients are built on the first invocation and reused by
the warm container (nothing happens at import time).

A batch is one shard's changes in order (ParallelizationFactor 1). Acknowledgement is all or
nothing, as in the poller: the repairs and tombstones written (or superseded), every staging
record acknowledged by PutRecords, dead letters stored; then the checkpoint. On failure the
batch's first change is reported as the batch item failure and Lambda delivers the batch again
from it; every decision is a function of the change and every write is conditional, so the
replay writes nothing new and forwards duplicates at worst (no-ops under the applier's condition).

What differs from the poller, because a DynamoDB stream event does not say which shard it came
from (:data:`replicator.core.changes.LAMBDA_SHARD`):

- the checkpoint is one row, shard ``lambda``, under the poller's scope: the largest sequence
  number forwarded by any shard (its condition only moves it forward; a concurrent shard's lower
  position counts as ``checkpoint_conflicts``). Lambda keeps each shard's position itself; the
  row says how far forwarding got, it is never read back;
- the staging records' ``source.shard`` is ``lambda`` (``source.seq`` is the change's sequence
  number, as in the poller);
- the restore memory (the repairs whose echoes are not forwarded) lives in the warm container:
  an echo delivered to another container is forwarded once more, a duplicate of a version
  already sent (a no-op in the other table; verify may count it as a change sent twice);
- no drain: the ``#drained`` row the poller's forwarder writes for the other region's poller
  applier is never written; with these functions, drained is both mappings' IteratorAge at 0.

``xrh.active_active`` travels in the package: the forwarder imports it (standard library only);
the checkpoint scope is its ``FORWARD_SCOPE``.
"""

from __future__ import annotations

import os
import time
from typing import Any

from replicator.core.changes import ChangeRecord
from replicator.core.lww_forward import Forwarder
from replicator.core.lww_writes import ConditionalWriter
from replicator.core.metrics import emf_line
from replicator.core.putrecords import Backoff, PutRecordsSender
from replicator.errors import ReplicatorUsageError
from replicator.runners.lambda_env import batch_item_failures, boto_clients, positive, require
from xrh.active_active import FORWARD_SCOPE  # imported by the forwarder anyway

REQUIRED = ("TABLE_NAME", "STAGING_STREAM", "TARGET_REGION", "CHECKPOINT_TABLE",
            "DEAD_LETTER_BUCKET", "AWS_REGION")  # fmt: skip
REPORTED = ("changes_in", "forwarded", "repairs", "repairs_written", "tombstones",
            "tombstones_written", "skipped_not_local", "unstamped", "dead_lettered",
            "put_records_calls", "retried_entries", "local_write_calls", "failed_batches",
            "checkpoint_errors")  # fmt: skip
_state: dict[str, Any] = {}


def build(environ: dict[str, str], clients: Any = None) -> Forwarder:
    """The forwarder from environment; ``clients(service, region)`` builds boto3 clients."""
    require(environ, REQUIRED)
    attempts = positive(environ, "MAX_ATTEMPTS", "8")
    max_in_flight = positive(environ, "MAX_IN_FLIGHT", "8")
    region, other = environ["AWS_REGION"], environ["TARGET_REGION"]
    if region == other:
        raise ReplicatorUsageError(f"TARGET_REGION={other!r}: must be the other region")
    from replicator.adapters.dynamodb import DynamoCheckpointStore
    from replicator.adapters.kinesis import KinesisSink
    from replicator.adapters.lww_table import DynamoLwwTable
    from replicator.adapters.s3 import S3DeadLetterSink

    if clients is None:
        clients = boto_clients(max_in_flight + 2)

    table = environ["TABLE_NAME"]
    backoff = Backoff(max_attempts=attempts)
    # The poller's scope (xrh.active_active.FORWARD_SCOPE: the region the forwarder reads).
    scope = FORWARD_SCOPE.format(table=table, region=region)
    return Forwarder(
        table=table,
        region=region,
        other_region=other,
        sender=PutRecordsSender(
            KinesisSink(clients("kinesis", other)), environ["STAGING_STREAM"], backoff=backoff
        ),
        writer=ConditionalWriter(
            DynamoLwwTable(clients("dynamodb", region)),
            table,
            backoff=backoff,
            max_in_flight=max_in_flight,
        ),  # fmt: skip
        checkpoints=DynamoCheckpointStore(
            clients("dynamodb", other), environ["CHECKPOINT_TABLE"], scope, owner="lambda"
        ),
        dead_letters=S3DeadLetterSink(clients("s3", region), environ["DEAD_LETTER_BUCKET"]),
        log=lambda event, **f: print(emf_line({}, {"Event": event}, int(time.time() * 1000), **f)),
    )


def changes_of(event: dict[str, Any]) -> list[ChangeRecord]:
    return [ChangeRecord.from_lambda_record(r) for r in event.get("Records", [])]


def handle(event: dict[str, Any], forwarder: Forwarder) -> dict[str, Any]:
    """Forward one event's batch; on failure report its first change (acknowledgement is all
    or nothing), so that Lambda delivers the whole batch again."""
    changes = changes_of(event)
    if not changes:
        return {"batchItemFailures": []}
    result = forwarder.process(changes[0].shard_id, changes)
    counters = forwarder.metrics.counters
    metrics: dict[str, int | float] = {k: counters.get(k, 0) for k in REPORTED}
    print(emf_line(metrics, {"Table": forwarder.table, "Role": "forward"},
                   int(time.time() * 1000)))  # fmt: skip
    return batch_item_failures(result.failed_from)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if "forwarder" not in _state:
        _state["forwarder"] = build(dict(os.environ))
    return handle(event, _state["forwarder"])
