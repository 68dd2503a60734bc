"""The active-active pipeline's staging records and item helpers (pure).

A staging record is one JSON object per Kinesis record (the contract, :mod:`xrh.active_active`):
``{"pk", "image", "origin", "stamp": [ts, region], "source": {"shard", "seq", "created_ms"}}``.
Images stay in DynamoDB's wire form; only binary values change on the way: JSON cannot hold
``bytes``, so ``B`` and ``BS`` values travel as base64 text (as DynamoDB JSON writes them) and are
decoded back to ``bytes`` when parsed, so the applier hands boto3 exactly what the forwarder read.

The sample behaviour forwards a REMOVE as a delete: the same record with ``"delete": true`` and
the removed item's keys as ``image`` (it has no tombstones). The reference never sets it.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from replicator.core.changes import ChangeRecord
from xrh.active_active import STAMP_REGION, STAMP_TS, TOMBSTONE, Stamp, stamp_of

KEY = "pk"


class MalformedStagingRecord(ValueError):
    """A staging record that is not the contract's JSON object (dead-lettered, never applied)."""


@dataclass(frozen=True, slots=True)
class StagingRecord:
    """One parsed staging record; ``image`` in wire form with binary values as bytes."""

    pk: str
    image: dict[str, Any]
    origin: str
    stamp: Stamp
    source: dict[str, Any]
    delete: bool = False

    @property
    def created_ms(self) -> int | None:
        value = self.source.get("created_ms")
        return int(value) if isinstance(value, int | float) else None


def pk_of(keys: dict[str, Any]) -> str:
    """The partition key value of an item or key map in wire form (``{"pk": {"S": "42"}}``)."""
    value = keys[KEY]
    if isinstance(value, dict) and len(value) == 1:
        return str(next(iter(value.values())))
    raise KeyError(f"{KEY} is not a scalar attribute: {value!r}")


def source_of(change: ChangeRecord) -> dict[str, Any]:
    return {"shard": change.shard_id, "seq": change.sequence_number,
            "created_ms": change.approximate_ms}  # fmt: skip


def encode(
    image: dict[str, Any], origin: str, stamp: Stamp, change: ChangeRecord, *, delete: bool = False
) -> bytes:
    """The staging record of ``image`` (a version made in ``origin``) read from ``change``."""
    body: dict[str, Any] = {
        "pk": pk_of(image), "image": {k: _to_json(v) for k, v in image.items()},
        "origin": origin, "stamp": stamp.to_json(), "source": source_of(change),
    }  # fmt: skip
    if delete:
        body["delete"] = True
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def parse(data: bytes) -> StagingRecord:
    """A staging record from a Kinesis record's data; MalformedStagingRecord says what is wrong.
    The image must hold the key and, unless it is a sample delete, the stamp it claims."""
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedStagingRecord(f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise MalformedStagingRecord("not a JSON object")
    try:
        pk, raw, origin, stamp, source = (
            body["pk"],
            body["image"],
            body["origin"],
            body["stamp"],
            body["source"],
        )
    except KeyError as exc:
        raise MalformedStagingRecord(f"missing field {exc}") from None
    if not isinstance(raw, dict) or not isinstance(source, dict) or not isinstance(origin, str):
        raise MalformedStagingRecord("image and source must be objects, origin a string")
    if not (isinstance(stamp, list) and len(stamp) == 2 and isinstance(stamp[0], int)
            and isinstance(stamp[1], str)):  # fmt: skip
        raise MalformedStagingRecord(f"stamp must be [ts, region], got {stamp!r}")
    try:
        image = {k: _from_json(v) for k, v in raw.items()}
        image_pk = pk_of(image)
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise MalformedStagingRecord(f"image is not an item with a {KEY}: {exc}") from None
    if image_pk != str(pk):
        raise MalformedStagingRecord(f"pk {pk!r} differs from the image's {image_pk!r}")
    delete = body.get("delete") is True
    claimed = Stamp(stamp[0], stamp[1])
    if not delete and stamp_of(image) != claimed:
        raise MalformedStagingRecord(f"stamp {stamp!r} differs from the image's")
    return StagingRecord(str(pk), image, origin, claimed, source, delete)


def tombstone(keys: dict[str, Any], stamp: Stamp) -> dict[str, Any]:
    """The item that keeps a delete (the contract): the key, the stamp and the flag."""
    return {**keys, STAMP_TS: {"N": str(stamp.ts)}, STAMP_REGION: {"S": stamp.region},
            TOMBSTONE: {"BOOL": True}}  # fmt: skip


def _to_json(value: Any) -> Any:
    if not isinstance(value, dict) or len(value) != 1:
        return value
    ((kind, v),) = value.items()
    if kind == "B" and isinstance(v, bytes | bytearray):
        return {"B": base64.b64encode(bytes(v)).decode()}
    if kind == "BS":
        return {"BS": [base64.b64encode(bytes(x)).decode() if isinstance(x, bytes | bytearray)
                       else x for x in v]}  # fmt: skip
    if kind == "L":
        return {"L": [_to_json(x) for x in v]}
    if kind == "M":
        return {"M": {k: _to_json(x) for k, x in v.items()}}
    return value


def _from_json(value: Any) -> Any:
    if not isinstance(value, dict) or len(value) != 1:
        raise ValueError(f"not an attribute value: {value!r}")
    ((kind, v),) = value.items()
    if kind == "B":
        return {"B": base64.b64decode(v, validate=True)}
    if kind == "BS":
        return {"BS": [base64.b64decode(x, validate=True) for x in v]}
    if kind == "L":
        return {"L": [_from_json(x) for x in v]}
    if kind == "M":
        return {"M": {k: _from_json(x) for k, x in v.items()}}
    return value
