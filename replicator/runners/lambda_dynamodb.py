"""Lambda handler of the ``dynamodb`` pipeline: a table's stream event in, the same table in the
target region written, ``{"batchItemFailures": [...]}`` out.

Needs only the ``replicator`` package and boto3 (no ``xrh``). Configured by environment:
``TABLE_NAME`` (the same name in both regions), ``TARGET_REGION``, ``CHECKPOINT_TABLE`` (in the
target region: it holds the bootstrap copy's state row), ``DEAD_LETTER_BUCKET``; optional
``SOURCE_REGION`` (default ``AWS_REGION``), ``MAX_ATTEMPTS`` (8), ``MAX_IN_FLIGHT`` (4),
``BOOTSTRAP_TTL_S`` (5: how long a read of the bootstrap state is trusted),
``REQUIRE_BOOTSTRAP`` (``true``: no bootstrap row means wait; ``false`` when the source
table started empty and no copy runs). Clients are built on the first invocation and reused
by the warm container (nothing happens at import time).

A batch is one shard's changes in order (ParallelizationFactor 1). It is applied by
:class:`replicator.core.table_apply.TableApplier`: squashed to the last change per key, written
with BatchWriteItem, all or nothing. On failure the first change of the batch is reported as
the batch item failure and Lambda retries from it, in order.

The bootstrap copy. While the state row says ``copying`` (or, with ``REQUIRE_BOOTSTRAP``, while
there is no row yet), every batch fails whole without writing anything: Lambda retries it later
and the changes wait in the stream. The event source mapping starts at TRIM_HORIZON, so once
the copy is complete the changes made during it are applied over the copied values in order.
The copy must finish within the stream's 24-hour retention.

Poison and transient. A change whose item can never be written (over 400 KB, rejected by
validation, bisected down to the one item) goes to the dead-letter bucket with its keys and
both images and the batch moves on. Anything else (throttling past the attempt bound, 5xx,
timeouts, a missing table or permission, a dead-letter bucket that cannot be written) fails
the batch to be retried.

No checkpoint rows: a DynamoDB stream event does not say which shard it came from, and Lambda
keeps the position itself; so this handler publishes no watermark. Run the poller
(``xrh replicate``) for checkpoints and claims.
"""

from __future__ import annotations

import os
import time
from typing import Any

from replicator.core.changes import ChangeRecord
from replicator.core.metrics import emf_line
from replicator.core.putrecords import Backoff
from replicator.core.table_apply import BootstrapGate, TableApplier, always_open
from replicator.core.table_writes import BatchWriter
from replicator.errors import ReplicatorUsageError
from replicator.runners.lambda_env import batch_item_failures, boto_clients, positive, require

REQUIRED = ("TABLE_NAME", "TARGET_REGION", "CHECKPOINT_TABLE", "DEAD_LETTER_BUCKET")
REPORTED = ("changes_applied", "squashed", "write_calls", "dead_lettered", "gated_batches",
            "failed_batches")  # fmt: skip
_state: dict[str, Any] = {}


def _flag(environ: dict[str, str], name: str, default: bool) -> bool:
    value = environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise ReplicatorUsageError(f"{name}={value!r}: expected true or false")


def build(environ: dict[str, str], clients: Any = None) -> TableApplier:
    """The applier from environment; ``clients(service, region)`` builds boto3 clients."""
    require(environ, REQUIRED)
    source_region = environ.get("SOURCE_REGION") or environ.get("AWS_REGION")
    if not source_region:
        raise ReplicatorUsageError("missing environment variables: SOURCE_REGION or AWS_REGION")
    max_in_flight = positive(environ, "MAX_IN_FLIGHT", "4")
    attempts = positive(environ, "MAX_ATTEMPTS", "8")
    ttl = positive(environ, "BOOTSTRAP_TTL_S", "5", float)
    require_copy = _flag(environ, "REQUIRE_BOOTSTRAP", True)
    from replicator.adapters.dynamodb_bootstrap import DynamoBootstrapStore
    from replicator.adapters.s3 import S3DeadLetterSink
    from replicator.adapters.table import DynamoTableWriter

    if clients is None:
        clients = boto_clients(max_in_flight + 2)

    table = environ["TABLE_NAME"]
    target = environ["TARGET_REGION"]
    target_dynamodb = clients("dynamodb", target)
    scope = f"dynamodb:{table}:{source_region}"  # xrh.contracts.checkpoint_scope
    state = DynamoBootstrapStore(target_dynamodb, environ["CHECKPOINT_TABLE"], scope).state
    return TableApplier(
        table=table,
        source_region=source_region,
        target_region=target,
        writer=BatchWriter(
            DynamoTableWriter(target_dynamodb),
            table,
            backoff=Backoff(max_attempts=attempts),
            max_in_flight=max_in_flight,
        ),
        checkpoints=None,
        dead_letters=S3DeadLetterSink(clients("s3", source_region), environ["DEAD_LETTER_BUCKET"]),
        clock_ms=lambda: int(time.time() * 1000),
        gate=BootstrapGate(state, time.monotonic, ttl_s=ttl) if require_copy else always_open,
        log=lambda event, **f: print(emf_line({}, {"Event": event}, int(time.time() * 1000), **f)),
    )


def changes_of(event: dict[str, Any]) -> list[ChangeRecord]:
    return [ChangeRecord.from_lambda_record(r) for r in event.get("Records", [])]


def handle(event: dict[str, Any], applier: TableApplier) -> dict[str, Any]:
    """Apply one event's batch; report the first change not acknowledged (all of them when
    the batch failed, since acknowledgement is all or nothing)."""
    changes = changes_of(event)
    if not changes:
        return {"batchItemFailures": []}
    result = applier.process(changes[0].shard_id, changes)
    now = int(time.time() * 1000)
    counters = applier.metrics.counters
    lag = applier.metrics.histogram("apply_lag_ms")
    metrics: dict[str, int | float] = {k: counters.get(k, 0) for k in REPORTED}
    if lag.max is not None:
        metrics["apply_lag_max_ms"] = lag.max
    print(emf_line(metrics, {"Table": applier.table}, now))
    return batch_item_failures(result.failed_from)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if "applier" not in _state:
        _state["applier"] = build(dict(os.environ))
    return handle(event, _state["applier"])
