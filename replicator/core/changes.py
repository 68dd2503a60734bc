"""DynamoDB stream records as the table pipelines see them (pure).

One :class:`ChangeRecord` per item change, built from either form the service hands out:

- GetRecords (boto3 ``dynamodbstreams`` client, :meth:`ChangeRecord.from_stream_record`):
  ``ApproximateCreationDateTime`` is a datetime (or epoch seconds from raw JSON), binary values
  are ``bytes``;
- a Lambda event record (:meth:`ChangeRecord.from_lambda_record`): the same ``dynamodb`` block
  as JSON, ``ApproximateCreationDateTime`` in epoch seconds, binary values base64 text (decoded
  here to ``bytes``, so images go to a boto3 DynamoDB client as they are). A Lambda event
  record does not name its stream shard: such records carry :data:`LAMBDA_SHARD`.

Images and keys stay in DynamoDB's wire form (``{"pk": {"S": "42"}}``): they go back to
BatchWriteItem unchanged, so no value is ever reinterpreted (numbers stay decimal text).

Sequence numbers are decimal strings, compared as integers (:attr:`ChangeRecord.sequence_int`).
``ApproximateCreationDateTime`` is rounded (REFERENCE.md): it is used for lag only, never to
order changes. ``commit_ms`` is the new image's ``commitTimestamp`` (ISO-8601 text, or a number
of epoch milliseconds) when it has a parseable one: the writer's clock, for apply lag.
"""

from __future__ import annotations

import base64
import enum
from dataclasses import dataclass
from typing import Any

from replicator.core.records import parse_iso_ms

#: The ``shard_id`` of changes that came in a Lambda event (DynamoDB stream events do not say
#: which shard a record came from; Lambda keeps the position itself).
LAMBDA_SHARD = "lambda"
#: The item attribute that holds the writer's commit time (``xrh.contracts.ITEM_COMMIT_TS``).
COMMIT_ATTRIBUTE = "commitTimestamp"


class ChangeEvent(enum.Enum):
    INSERT = "INSERT"
    MODIFY = "MODIFY"
    REMOVE = "REMOVE"


@dataclass(frozen=True, slots=True)
class ChangeRecord:
    """One change of one item, in stream order within its shard."""

    shard_id: str
    sequence_number: str
    event: ChangeEvent
    keys: dict[str, Any]
    new_image: dict[str, Any] | None
    old_image: dict[str, Any] | None
    approximate_ms: int | None = None  # ApproximateCreationDateTime (rounded)
    commit_ms: int | None = None  # the new image's commitTimestamp, when parseable
    event_id: str | None = None

    @property
    def sequence_int(self) -> int:
        return int(self.sequence_number)

    @property
    def is_remove(self) -> bool:
        return self.event is ChangeEvent.REMOVE

    @classmethod
    def from_stream_record(cls, shard_id: str, record: dict[str, Any]) -> ChangeRecord:
        """From one element of GetRecords' ``Records`` (boto3 ``dynamodbstreams``)."""
        return cls._of(shard_id, record, decode_binary=False)

    @classmethod
    def from_lambda_record(
        cls, record: dict[str, Any], shard_id: str = LAMBDA_SHARD
    ) -> ChangeRecord:
        """From one element of a Lambda DynamoDB stream event's ``Records``."""
        return cls._of(shard_id, record, decode_binary=True)

    @classmethod
    def _of(cls, shard_id: str, record: dict[str, Any], *, decode_binary: bool) -> ChangeRecord:
        try:
            body = record["dynamodb"]
            event = ChangeEvent(record["eventName"])
            sequence = str(body["SequenceNumber"])
            keys = body["Keys"]
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(
                f"not a DynamoDB stream record (missing or bad {exc}): {str(record)[:200]}"
            ) from None
        new, old = body.get("NewImage"), body.get("OldImage")
        if decode_binary:
            keys = _decoded(keys)
            new = None if new is None else _decoded(new)
            old = None if old is None else _decoded(old)
        return cls(
            shard_id=shard_id,
            sequence_number=sequence,
            event=event,
            keys=keys,
            new_image=new,
            old_image=old,
            approximate_ms=_epoch_ms(body.get("ApproximateCreationDateTime")),
            commit_ms=commit_ms_of_image(new),
            event_id=record.get("eventID"),
        )


def commit_ms_of_image(image: dict[str, Any] | None) -> int | None:
    """The image's commitTimestamp in epoch ms (ISO text or epoch-ms number), else None."""
    if not image:
        return None
    value = image.get(COMMIT_ATTRIBUTE)
    if not isinstance(value, dict):
        return None
    try:
        if "S" in value:
            return parse_iso_ms(str(value["S"]))
        if "N" in value:
            return int(float(value["N"]))
    except (ValueError, OverflowError):
        return None
    return None


def _epoch_ms(value: Any) -> int | None:
    if value is None:
        return None
    if hasattr(value, "timestamp"):
        return int(value.timestamp() * 1000)
    try:
        return int(float(value) * 1000)
    except (TypeError, ValueError):
        return None


def _decoded(image: dict[str, Any]) -> dict[str, Any]:
    """Binary values of a JSON (Lambda) image as bytes, as boto3 gives and takes them."""
    return {name: _decode_value(v) for name, v in image.items()}


def _decode_value(value: Any) -> Any:
    if not isinstance(value, dict) or len(value) != 1:
        return value
    ((kind, v),) = value.items()
    if kind == "B" and isinstance(v, str):
        return {"B": base64.b64decode(v)}
    if kind == "BS":
        return {"BS": [base64.b64decode(x) if isinstance(x, str) else x for x in v]}
    if kind == "L":
        return {"L": [_decode_value(x) for x in v]}
    if kind == "M":
        return {"M": {k: _decode_value(x) for k, x in v.items()}}
    return value
