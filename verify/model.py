"""Record identity and the small value types shared by readers, store and checks.

A record is identified by the ``trace`` field of its JSON payload (DESIGN.md, "Records and
identity"); a record written by someone else (no trace, or data that is not JSON) by a hash of
its partition key and data. Identities are stored as signed 64-bit integers (BLAKE2b) so the
store joins on integer keys; the trace text is kept beside them for examples. A collision needs
about 2**32 records, far beyond any run.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass

from xrh.contracts import parse_iso_ms


class Verdict(enum.Enum):
    VALID = "valid"
    INVALID = "invalid"
    UNKNOWN = "unknown"


class StoreSide(enum.Enum):
    """Which stream a stored record was read from."""

    SOURCE = "src"
    TARGET = "tgt"


ANOMALY_KINDS = (
    "lost",
    "duplicated",
    "reordered",
    "phantom",
    "stale",
    "diverged",
    "checkpoint_ahead",
    "looped",
)


def hash64(text: bytes) -> int:
    """Signed 64-bit BLAKE2b digest (SQLite INTEGER range)."""
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big", signed=True)


def trace_ident(trace: str) -> int:
    return hash64(b"t:" + trace.encode())


@dataclass(frozen=True, slots=True)
class Identity:
    ident: int
    trace: str | None
    key: str | None
    commit_ts: int | None
    data_hash: int


def identify(partition_key: str, data: bytes) -> Identity:
    """Identity, key and commit timestamp of one record's payload."""
    data_hash = hash64(data)
    trace = key = None
    commit_ts = None
    try:
        payload = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        payload = None
    if isinstance(payload, dict):
        raw_trace = payload.get("trace")
        if isinstance(raw_trace, str) and raw_trace:
            trace = raw_trace
        raw_key = payload.get("key")
        if raw_key is not None:
            key = str(raw_key)
        raw_ts = payload.get("commitTimestamp")
        if isinstance(raw_ts, str):
            try:
                commit_ts = parse_iso_ms(raw_ts)
            except ValueError:
                commit_ts = None
    if trace is not None:
        ident = trace_ident(trace)
    else:
        ident = hash64(b"h:" + partition_key.encode() + b"\0" + data)
    return Identity(ident, trace, key, commit_ts, data_hash)


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """One Kinesis record as read (wire conversion happens in the reader)."""

    shard_id: str
    generation: int
    sequence_number: str
    partition_key: str
    data: bytes
    arrival_ms: int
