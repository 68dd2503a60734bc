"""boto3 DynamoDB and Kinesis for the ``action-log`` consumers.

:class:`DynamoActionTable` is the target table of both behaviours: BatchWriteItem through
:class:`~replicator.adapters.table.DynamoTableWriter`, and the single-item calls. The reference
consumer's UpdateItem is conditional on the item's position (:func:`update_kwargs`) and asks
for ``ReturnValuesOnConditionCheckFailure=ALL_OLD``, so a failed condition brings the item's
position back without a second call (moto 5.x supports it as AWS does); without it the consumer
reads the position with a consistent GetItem (:meth:`DynamoActionTable.read_seq`).
``ConditionalCheckFailedException`` becomes :class:`~replicator.core.action_update.
ConditionFailed`; every other error is translated as for BatchWriteItem
(:func:`replicator.adapters.table.translate`: throttling and 5xx retryable, validation invalid,
missing table terminal, a timeout an unknown outcome). Build the client with botocore retries
off so that the consumer's backoff is the only one.

:func:`stream_retention_hours` reads the actions stream's retention, which bounds how far
behind the lazy consumer may fall (:mod:`replicator.core.action_pace`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from botocore.exceptions import ClientError

from replicator.adapters.send_guard import SendGuard
from replicator.adapters.table import DynamoTableWriter, translate
from replicator.core.action_plan import SEQ_ATTR, UpdateRequest
from replicator.core.action_update import ConditionFailed
from replicator.core.table_writes import WriteRequest

CONDITION_FAILED = "ConditionalCheckFailedException"


def update_kwargs(table: str, request: UpdateRequest) -> dict[str, Any]:
    """UpdateItem's arguments for ``request``: attribute names and values as placeholders
    (any attribute name is safe: reserved words, dots, spaces)."""
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    sets, adds = [], []
    for i, (name, value) in enumerate(request.set.items()):
        names[f"#s{i}"], values[f":s{i}"] = name, value
        sets.append(f"#s{i} = :s{i}")
    for i, (name, number) in enumerate(request.add.items()):
        names[f"#a{i}"], values[f":a{i}"] = name, {"N": number}
        adds.append(f"#a{i} :a{i}")
    kwargs: dict[str, Any] = {"TableName": table, "Key": request.key}
    if request.new_seq is not None:
        names["#seq"], values[":seq"] = SEQ_ATTR, {"S": request.new_seq}
        sets.append("#seq = :seq")
        if request.below is not None:
            values[":below"] = {"S": request.below}
            kwargs["ConditionExpression"] = "attribute_not_exists(#seq) OR #seq < :below"
            kwargs["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
    expression = " ".join(
        part for part in (
            "SET " + ", ".join(sets) if sets else "",
            "ADD " + ", ".join(adds) if adds else "",
        ) if part
    )  # fmt: skip
    kwargs["UpdateExpression"] = expression
    kwargs["ExpressionAttributeNames"] = names
    kwargs["ExpressionAttributeValues"] = values
    return kwargs


class DynamoActionTable:
    """The target table over a boto3 DynamoDB client (module doc). ``calls`` counts every
    call made, BatchWriteItem included; safe to call from several threads."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.writer = DynamoTableWriter(client)
        self._calls = 0
        self._lock = threading.Lock()
        self._update_guard = SendGuard(client, "before-send.dynamodb.UpdateItem")

    @property
    def calls(self) -> int:
        return self._calls + self.writer.calls

    def _count(self) -> None:
        with self._lock:
            self._calls += 1

    def batch_write(
        self,
        table: str,
        requests: Sequence[WriteRequest],
        guard: Callable[[], object] | None = None,
    ) -> list[WriteRequest]:
        return self.writer.batch_write(table, requests, guard)

    def update(
        self, table: str, request: UpdateRequest, guard: Callable[[], object] | None = None
    ) -> None:
        kwargs = update_kwargs(table, request)
        self._count()

        def send() -> Any:
            try:
                return self.client.update_item(**kwargs)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == CONDITION_FAILED:
                    raise ConditionFailed(exc.response.get("Item")) from exc
                raise

        self._update_guard.call(guard, send, translate)

    def read_seq(self, table: str, key: dict[str, Any]) -> str | None:
        self._count()
        try:
            response = self.client.get_item(
                TableName=table, Key=key, ConsistentRead=True,
                ProjectionExpression="#seq", ExpressionAttributeNames={"#seq": SEQ_ATTR},
            )  # fmt: skip
        except Exception as exc:
            raise translate(exc) from exc
        return (response.get("Item") or {}).get(SEQ_ATTR, {}).get("S")

    def put(self, table: str, key: dict[str, Any], item: dict[str, Any]) -> None:
        self._count()
        try:
            self.client.put_item(TableName=table, Item=item)
        except Exception as exc:
            raise translate(exc) from exc

    def delete(self, table: str, key: dict[str, Any]) -> None:
        self._count()
        try:
            self.client.delete_item(TableName=table, Key=key)
        except Exception as exc:
            raise translate(exc) from exc


def stream_retention_hours(client: Any, stream: str, default: float = 24.0) -> float:
    """The stream's retention period in hours (DescribeStreamSummary); ``default`` when it
    cannot be read (the lag warning then assumes Kinesis's default of 24 hours)."""
    try:
        summary = client.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
        return float(summary.get("RetentionPeriodHours") or default)
    except Exception:  # noqa: BLE001 - only the lag warning's threshold depends on it
        return default
