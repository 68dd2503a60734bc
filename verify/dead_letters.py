"""Dead-letter objects (S3 ``{prefix}-dead-letter-{region}``): count and identify them.

The replicator writes each record it can never deliver as JSON with its full data and the
reason. The shape is read tolerantly: an object holds one record, a JSON list of records, or one
record per line; a record names its data ``data`` / ``Data`` (text, base64, or a JSON object),
its partition key ``partitionKey`` / ``partition_key`` / ``PartitionKey`` and its ``reason`` /
``error``. Anything unreadable is still counted, with the reason "unparseable".
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    partition_key: str | None
    data: bytes | None
    reason: str
    location: str


class S3Api(Protocol):
    def list_objects_v2(self, **kwargs: Any) -> dict[str, Any]: ...
    def get_object(self, **kwargs: Any) -> dict[str, Any]: ...


def _first(record: dict[str, Any], *names: str) -> Any:
    return next((record[n] for n in names if n in record), None)


def _data_bytes(value: Any, encoding: Any = None) -> bytes | None:
    """The record's data; ``encoding`` ("base64", as the reference replicator writes) is
    trusted when given, otherwise JSON text, then base64, then plain text is guessed."""
    if value is None:
        return None
    if encoding == "base64":
        try:
            return base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError):
            return str(value).encode()
    if isinstance(value, dict | list):
        return json.dumps(value).encode()
    text = str(value)
    try:
        json.loads(text)
        return text.encode()
    except ValueError:
        pass
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return text.encode()


def parse_object(body: bytes, location: str) -> Iterator[DeadLetterRecord]:
    try:
        text = body.decode()
        try:
            parsed: Any = json.loads(text)
            records = parsed if isinstance(parsed, list) else [parsed]
        except ValueError:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
    except (ValueError, UnicodeDecodeError):
        yield DeadLetterRecord(None, None, "unparseable dead-letter object", location)
        return
    for record in records:
        if not isinstance(record, dict):
            yield DeadLetterRecord(None, None, "unparseable dead-letter record", location)
            continue
        pk = _first(record, "partitionKey", "partition_key", "PartitionKey")
        yield DeadLetterRecord(
            None if pk is None else str(pk),
            _data_bytes(_first(record, "data", "Data"), record.get("dataEncoding")),
            str(_first(record, "reason", "error", "Reason") or "no reason given"),
            location,
        )


def read_bucket(s3: S3Api, bucket: str) -> Iterator[DeadLetterRecord]:
    """Every record in ``bucket``; a missing bucket yields nothing (raises nothing)."""
    kwargs: dict[str, Any] = {"Bucket": bucket}
    while True:
        try:
            page = s3.list_objects_v2(**kwargs)
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code in ("NoSuchBucket", "404", "AccessDenied"):
                return
            raise
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            yield from parse_object(body, f"s3://{bucket}/{obj['Key']}")
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            return
        kwargs["ContinuationToken"] = token
