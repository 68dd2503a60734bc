"""Dead letters in S3: one JSON object per batch's dead letters, each with its full data.

Object key ``dead-letter/<stream>/<source shard>/<first sequence number>-<count>.json``; body a
JSON list of ``{"partitionKey", "data" (base64), "dataEncoding": "base64",
"sourceStream", "sourceRegion", "targetRegion", "sourceShardId", "sequenceNumber",
"approximateArrivalMs", "reason", "detail"}``. Writing the same batch again overwrites the same
key, so retries do not multiply dead letters.

A table change (:class:`~replicator.core.changes.ChangeRecord`, the ``dynamodb`` pipeline) is
stored under ``dead-letter/<table>/<source shard>/...`` as ``{"kind": "table-change",
"eventName", "keys", "newImage", "oldImage" (DynamoDB JSON, binary values base64 like the
service's own JSON), "sourceTable", "sourceRegion", "targetRegion", "sourceShardId",
"sequenceNumber", "approximateCreationMs", "commitMs", "reason", "detail"}``: everything needed
to write the item by hand.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from replicator.core.batch import DeadLetterRecord
from replicator.core.changes import ChangeRecord
from replicator.errors import DeadLetterError


def to_json(letter: DeadLetterRecord) -> dict[str, Any]:
    r = letter.record
    if isinstance(r, ChangeRecord):
        return change_to_json(letter, r)
    return {
        "partitionKey": r.partition_key,
        "data": base64.b64encode(r.data).decode(),
        "dataEncoding": "base64",
        "sourceStream": letter.source_stream,
        "sourceRegion": letter.source_region,
        "targetRegion": letter.target_region,
        "sourceShardId": r.shard_id,
        "sequenceNumber": r.sequence_number,
        "approximateArrivalMs": r.arrival_ms,
        "reason": letter.reason,
        "detail": letter.detail,
    }


def change_to_json(letter: DeadLetterRecord, r: ChangeRecord) -> dict[str, Any]:
    return {
        "kind": "table-change",
        "eventName": r.event.value,
        "keys": _wire_json(r.keys),
        "newImage": None if r.new_image is None else _wire_json(r.new_image),
        "oldImage": None if r.old_image is None else _wire_json(r.old_image),
        "sourceTable": letter.source_stream,
        "sourceRegion": letter.source_region,
        "targetRegion": letter.target_region,
        "sourceShardId": r.shard_id,
        "sequenceNumber": r.sequence_number,
        "approximateCreationMs": r.approximate_ms,
        "commitMs": r.commit_ms,
        "reason": letter.reason,
        "detail": letter.detail,
    }


def _wire_json(value: Any) -> Any:
    """DynamoDB wire form as JSON: bytes as base64 text (as the service's JSON has them)."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {k: _wire_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_wire_json(v) for v in value]
    return value


class S3DeadLetterSink:
    def __init__(self, client: Any, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

    def put(self, letters: Sequence[DeadLetterRecord]) -> None:
        if not letters:
            return
        first = letters[0]
        key = (
            f"dead-letter/{first.source_stream}/{first.record.shard_id}/"
            f"{first.record.sequence_number}-{len(letters)}.json"
        )
        body = json.dumps([to_json(x) for x in letters], sort_keys=True).encode()
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentType="application/json"
            )
        except (ClientError, BotoCoreError, OSError) as exc:
            raise DeadLetterError(f"s3://{self.bucket}/{key}: {exc}") from exc
