"""Data contracts between the load generator, the replicator and verify.

These shapes cross process and package boundaries (a ledger written by Locust workers, a claims
log written by the replicator, checkpoint rows in DynamoDB), so they are defined once here and
nowhere else. verify reads them without importing the replicator (DESIGN.md, "Rules").

Ledger (``ledger.sqlite``): one row per write attempt, DESIGN.md "Ledger". Times are epoch
milliseconds (UTC); ``sequence_number`` is text because Kinesis sequence numbers exceed 64 bits.
``ledger_meta`` holds ``complete = '1'`` once the single writer has every producer's final batch;
verify treats a ledger without it as incomplete (verdict ``unknown``).

Claims log (``claims.jsonl``): one JSON object per line, appended each time the replicator
publishes a stream-level watermark; see :class:`WatermarkClaim`.

Items (table pipelines, DESIGN.md "Table pipelines"): ``{prefix}-items`` has the string hash key
:data:`ITEM_KEY`; the load generator's items carry :data:`ITEM_TRACE` (the write that produced the
item's current version, the ledger's trace) and :data:`ITEM_COMMIT_TS` (ISO-8601, as the Kinesis
payload) besides the attributes the template renders.

Bootstrap copy (``dynamodb`` pipeline): rows in the target's checkpoint table under the
pipeline's checkpoint scope, see :class:`BootstrapRow`.

Checkpoint rows live in the *target* region's checkpoint table (what the target region has
received survives the loss of the source region): ``scope`` = :func:`checkpoint_scope`, one row per
source shard (``sequenceNumber`` S, ``commitTimestampMs`` N) and one watermark row with
``shardId`` = ``#watermark`` (``watermarkMs`` N, ``watermark`` S ISO-8601).
"""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS ledger (
    trace            TEXT    NOT NULL,  -- '<producer>-<seq>' (producer '<run id>/<node>u<n>'), unique across runs
    producer         TEXT    NOT NULL,
    seq              INTEGER NOT NULL,  -- gap-free per producer
    attempt          INTEGER NOT NULL DEFAULT 1,
    pipeline         TEXT    NOT NULL,
    region           TEXT    NOT NULL,
    target           TEXT    NOT NULL,  -- stream or table name
    partition_key    TEXT    NOT NULL,
    key              TEXT,
    commit_ts        INTEGER,           -- epoch ms of the payload's commitTimestamp
    op               TEXT    NOT NULL DEFAULT 'put',  -- put | update | delete
    status           TEXT    NOT NULL CHECK (status IN ('ok', 'fail', 'unknown')),
    shard_id         TEXT,
    sequence_number  TEXT,
    invoked_at       INTEGER NOT NULL,  -- epoch ms
    completed_at     INTEGER,           -- epoch ms
    error            TEXT,              -- error code or message for fail / unknown
    txn              TEXT,              -- postgres-cdc: the statement's transaction id (xid)
    rows             INTEGER            -- postgres-cdc: rows the statement changed (0 or 1)
);
CREATE INDEX IF NOT EXISTS ledger_trace ON ledger (trace);
CREATE TABLE IF NOT EXISTS ledger_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

LEDGER_COMPLETE_KEY = "complete"
WATERMARK_SHARD_ID = "#watermark"


ITEM_KEY = "pk"
ITEM_TRACE = "trace"
ITEM_COMMIT_TS = "commitTimestamp"

#: ``shardId`` of the bootstrap copy's state row, and the prefix of its per-segment rows
#: (``#bootstrap/segment-0003``) in the target's checkpoint table.
BOOTSTRAP_SHARD_ID = "#bootstrap"
BOOTSTRAP_SEGMENT_PREFIX = "#bootstrap/segment-"


class BootstrapState(enum.Enum):
    COPYING = "copying"  # a parallel scan copy is under way: live apply waits
    COMPLETE = "complete"  # every segment copied: live apply replays the stream from its start


@dataclass(frozen=True, slots=True)
class BootstrapRow:
    """The bootstrap copy's state row (``shardId`` = :data:`BOOTSTRAP_SHARD_ID`).

    Attribute names in DynamoDB: ``state`` S, ``owner`` S, ``heartbeatMs`` N, ``startedAtMs``
    N, ``completedAtMs`` N (complete only), ``segments`` N, ``itemsCopied`` N,
    ``copySeconds`` N (complete only). Each segment row (``#bootstrap/segment-NNNN``) holds
    ``lastKey`` S (JSON of the scan's LastEvaluatedKey, absent before the first page),
    ``done`` BOOL and ``items`` N. verify reads the state row for the report's bootstrap
    figures; the replicator writes it.
    """

    state: BootstrapState
    owner: str
    heartbeat_ms: int
    started_at_ms: int
    segments: int
    items_copied: int = 0
    completed_at_ms: int | None = None
    copy_seconds: float | None = None

    @classmethod
    def from_item(cls, item: dict) -> BootstrapRow:
        """From a deserialised DynamoDB item (plain values; numbers may be Decimal)."""

        def num(name: str) -> float | None:
            value = item.get(name)
            return None if value is None else float(value)

        return cls(
            state=BootstrapState(str(item["state"])),
            owner=str(item.get("owner", "")),
            heartbeat_ms=int(num("heartbeatMs") or 0),
            started_at_ms=int(num("startedAtMs") or 0),
            segments=int(num("segments") or 0),
            items_copied=int(num("itemsCopied") or 0),
            completed_at_ms=None if num("completedAtMs") is None else int(num("completedAtMs")),
            copy_seconds=num("copySeconds"),
        )


def bootstrap_segment_id(segment: int) -> str:
    return f"{BOOTSTRAP_SEGMENT_PREFIX}{segment:04d}"


class LedgerStatus(enum.Enum):
    OK = "ok"  # acknowledged by the service
    FAIL = "fail"  # definitely not written
    UNKNOWN = "unknown"  # timed out / connection lost: may or may not be written


class Op(enum.Enum):
    PUT = "put"
    UPDATE = "update"
    DELETE = "delete"


def checkpoint_scope(pipeline: str, stream: str, source_region: str) -> str:
    """Partition key of the checkpoint rows of one replication direction."""
    return f"{pipeline}:{stream}:{source_region}"


def iso_ms(epoch_ms: int) -> str:
    """ISO-8601 UTC with milliseconds, the seed's commitTimestamp form."""
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_iso_ms(text: str) -> int:
    """Epoch ms from an ISO-8601 timestamp (``Z`` or offset; whole seconds or fractions).

    Raises ``ValueError`` for anything else: callers count such records instead of guessing.
    """
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(round(parsed.timestamp() * 1000))


@dataclass(frozen=True, slots=True)
class WatermarkClaim:
    """One published watermark: at ``claimed_at_ms`` the replicator asserted that the target
    region held every source record with commit timestamp <= ``watermark_ms``."""

    claimed_at_ms: int
    watermark_ms: int
    stream: str
    source_region: str
    target_region: str
    replicator_id: str

    def to_line(self) -> str:
        payload = asdict(self)
        payload["claimed_at"] = iso_ms(self.claimed_at_ms)
        payload["watermark"] = iso_ms(self.watermark_ms)
        return json.dumps(payload, sort_keys=True) + "\n"

    @classmethod
    def from_line(cls, line: str) -> WatermarkClaim:
        payload = json.loads(line)
        return cls(
            claimed_at_ms=int(payload["claimed_at_ms"]),
            watermark_ms=int(payload["watermark_ms"]),
            stream=str(payload["stream"]),
            source_region=str(payload["source_region"]),
            target_region=str(payload["target_region"]),
            replicator_id=str(payload["replicator_id"]),
        )
