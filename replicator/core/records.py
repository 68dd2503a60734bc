"""Source records and their commit timestamps (pure).

The payload is the seed's JSON ``{"key": ..., "commitTimestamp": "2021-11-10T00:48:30.123Z", ...}``.
A record whose commitTimestamp is missing or unparseable is still replicated byte-identical; it
just does not constrain or move the watermark, and it is counted.

:func:`parse_iso_ms` is the same function as ``xrh.contracts.parse_iso_ms`` (a unit test holds
them equal): it is repeated here because the Lambda package carries only ``replicator``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime


def parse_iso_ms(text: str) -> int:
    """Epoch ms from ISO-8601 (``Z`` or an offset; whole seconds or fractions); ValueError else."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(round(parsed.timestamp() * 1000))


def iso_ms_of(epoch_ms: int) -> str:
    """ISO-8601 UTC with milliseconds (the same form as ``xrh.contracts.iso_ms``)."""
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def commit_ms_of(data: bytes) -> int | None:
    """The payload's commit time in epoch ms, or None when absent or unparseable: the seed's
    top-level ``commitTimestamp``, or in a change record of AWS DMS's shape (``postgres-cdc``)
    ``metadata.timestamp``, the transaction's commit time."""
    if data.find(b'"commitTimestamp"') >= 0:
        try:
            value = json.loads(data).get("commitTimestamp")
            return parse_iso_ms(value) if isinstance(value, str) else None
        except (ValueError, AttributeError, TypeError, OverflowError):
            return None
    if data.find(b'"metadata"') < 0:
        return None
    try:
        meta = json.loads(data).get("metadata")
        value = meta.get("timestamp") if isinstance(meta, dict) else None
        return parse_iso_ms(value) if isinstance(value, str) else None
    except (ValueError, AttributeError, TypeError, OverflowError):
        return None


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One record read from the source stream (GetRecords or a Lambda event).

    Kinesis does not give a record's explicit hash key back to readers: neither GetRecords nor
    Lambda's Kinesis events carry it. So a copy is routed in the target by its partition key
    (MD5), whatever hash key the producer chose: a record written with an explicit hash key may
    sit in a different shard of the target than of the source. Partition key and data are
    copied byte-identical.
    """

    shard_id: str
    sequence_number: str
    partition_key: str
    data: bytes
    arrival_ms: int | None = None  # ApproximateArrivalTimestamp

    @property
    def sequence_int(self) -> int:
        return int(self.sequence_number)
