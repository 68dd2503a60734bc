"""boto3 DynamoDB for the active-active pipeline: conditional single-item writes.

:class:`DynamoLwwTable` is the reference's :class:`~replicator.core.lww_writes.LwwTableSink`
(``put_if_newer``: PutItem under the (timestamp, region) condition) and the sample's sink
(``put_if_ts_newer``: the bare-timestamp condition; ``delete``: a real DeleteItem). A
``ConditionalCheckFailedException`` is an answer (False: the table holds a newer version);
every other botocore error becomes the replicator's exception as for BatchWriteItem
(:func:`replicator.adapters.table.translate`: throttling and 5xx retryable, validation invalid,
timeouts unknown). A lease fence's ``guard`` runs once more in botocore's ``before-send``
event (:class:`~replicator.adapters.send_guard.SendGuard`). Build the client with botocore
retries off: the conditional writer's backoff is the only one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from replicator.adapters.send_guard import SendGuard
from replicator.adapters.table import translate
from xrh.active_active import SOURCE_SEQ, STAMP_REGION, STAMP_TS, Stamp

#: The contract's last-writer-wins order as a condition: over no item, an older timestamp, or the
#: same timestamp from a region that sorts before or equal (the same origin's later record wins).
LWW_CONDITION = "attribute_not_exists(pk) OR #ts < :ts OR (#ts = :ts AND #r <= :r)"
#: The same order, strictly older only: a repair never replaces a version of equal stamp.
STRICT_CONDITION = "attribute_not_exists(pk) OR #ts < :ts OR (#ts = :ts AND #r < :r)"
#: Strict, but over an equal stamp of one region held at an earlier origin stream position.
ORDERED_CONDITION = STRICT_CONDITION + " OR (#ts = :ts AND #r = :r AND #seq < :seq)"
#: The sample's condition: the bare timestamp, strictly older.
SAMPLE_CONDITION = "attribute_not_exists(pk) OR #ts < :ts"


def _failed_condition(exc: BaseException) -> bool:
    return (
        isinstance(exc, ClientError)
        and exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"
    )


class DynamoLwwTable:
    """Conditional PutItem / DeleteItem on one region's items table (thread-safe)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls = 0
        self._lock = threading.Lock()
        self._put_guard = SendGuard(client, "before-send.dynamodb.PutItem")

    def _count(self) -> None:
        with self._lock:
            self.calls += 1

    def _put(self, guard: Callable[[], object] | None, **request: Any) -> bool:
        self._count()

        def send() -> bool:
            try:
                self.client.put_item(**request)
            except ClientError as exc:
                if _failed_condition(exc):
                    return False
                raise
            return True

        return self._put_guard.call(guard, send, translate)

    def put_if_newer(
        self,
        table: str,
        item: dict[str, Any],
        stamp: Stamp,
        guard: Callable[[], object] | None = None,
        strict: bool = False,
        order: int | None = None,
    ) -> bool:
        """PutItem of ``item`` unless the table holds a version with a larger stamp (with
        ``strict``, or an equal one, unless held at an earlier origin position than
        ``order``)."""
        names = {"#ts": STAMP_TS, "#r": STAMP_REGION}
        values = {":ts": {"N": str(stamp.ts)}, ":r": {"S": stamp.region}}
        condition = STRICT_CONDITION if strict else LWW_CONDITION
        if strict and order is not None:
            condition = ORDERED_CONDITION
            names["#seq"] = SOURCE_SEQ
            values[":seq"] = {"N": str(order)}
        return self._put(
            guard, TableName=table, Item=item, ConditionExpression=condition,
            ExpressionAttributeNames=names, ExpressionAttributeValues=values,
        )  # fmt: skip

    def put_if_ts_newer(self, table: str, item: dict[str, Any], ts: int) -> bool:
        """The sample's PutItem: only over an item with a strictly smaller bare timestamp."""
        return self._put(
            None, TableName=table, Item=item, ConditionExpression=SAMPLE_CONDITION,
            ExpressionAttributeNames={"#ts": STAMP_TS},
            ExpressionAttributeValues={":ts": {"N": str(ts)}},
        )  # fmt: skip

    def delete(self, table: str, key: dict[str, Any]) -> None:
        """The sample's real DeleteItem (no tombstone)."""
        self._count()
        try:
            self.client.delete_item(TableName=table, Key=key)
        except Exception as exc:  # noqa: BLE001 - every failure is classified
            raise translate(exc) from exc
