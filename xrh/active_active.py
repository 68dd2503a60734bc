"""The ``active-active`` pipeline's contracts: last-writer-wins stamps, tombstones, staging records.

Both regions' ``{prefix}-items`` tables take writes (plain PutItem, UpdateItem, DeleteItem, as
applications make them). Each table's stream is forwarded by a forwarder in that region to the
``{prefix}-staging`` Kinesis stream of the *other* region; an applier there applies it to its
table with a conditional write. Shared by the load generator, the replicator and verify; what
each does with it is implemented separately (verify imports nothing from the replicator).

Stamps. Every write carries :data:`STAMP_TS` (epoch milliseconds, N; whole seconds times 1000
with ``--timestamp-resolution s``) and :data:`STAMP_REGION` (the AWS region it was written in,
S): the seed's ``last_update_timestamp`` and ``last_updater_region``. Versions are ordered by
(timestamp, region) (:class:`Stamp`): never by the bare timestamp, so two regions writing one key
in the same millisecond still agree on a winner. Two writes of one key in one region with the same
stamp are ordered by that region's stream (the later one wins in both tables).

Deletes. A plain DeleteItem cannot carry a stamp, and a key that simply vanished would let a
late, older write from the other region bring it back. So a delete is kept as a *tombstone*:
an item holding only the key, the stamp and :data:`TOMBSTONE` = true; readers treat it as absent.
A DeleteItem of a version stamped (t, r) in region X is the write stamped (t + 1, X)
(:func:`delete_stamp`): it wins over the version it removed, and loses to any write with a
later stamp. A DeleteItem that found no item changes nothing. Applications clear
:data:`TOMBSTONE` in every UpdateItem (``REMOVE xrh_deleted``) so that an update brings a deleted
key back; a PutItem replaces the whole item anyway.

Staging records (one JSON object per Kinesis record, partition key = the item's key, so each
key's changes stay in order): ``{"pk": K, "image": <the item in DynamoDB JSON, stamp and
tombstone flag included>, "origin": <region the change was made in>, "stamp": [ts, region],
"source": {"shard": <shard of the origin table's stream>, "seq": <its sequence number>,
"created_ms": <its ApproximateCreationDateTime, epoch ms>}}``. A resend of one change (a
retried PutRecords) has the same ``source``; the same change forwarded again from another
source position went round a loop.
A change goes only to the other region, and only from the region it was made in (loop
prevention): a record in a region's staging stream whose ``origin`` is that region came back,
and so did a change (key and stamp) found in one direction from two source positions (verify:
ping-pong).

Processes: ``xrh replicate --pipeline active-active --side S`` runs region S's forwarder (S's
table stream to the other region's staging stream; its checkpoints in the other region's
checkpoint table, under :data:`FORWARD_SCOPE`) and its applier (S's staging stream to S's
table; checkpoints in S's table, under :data:`APPLY_SCOPE`); leases in S's lease table.

Ledger rows (one per write attempt): pipeline ``active-active``, region = the region written,
target = the items table, key = partition key = pk, op ``put`` | ``update`` | ``delete``,
``commit_ts`` = the stamp's timestamp (for a delete, :func:`delete_stamp`'s, from the item the
DeleteItem returned with ``ReturnValues=ALL_OLD``; NULL when it found none).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

STAMP_TS = "last_update_timestamp"
STAMP_REGION = "last_updater_region"
TOMBSTONE = "xrh_deleted"
#: Bookkeeping (``xrh_*``: verify leaves it out) on every version the applier writes: the origin
#: table stream's sequence number of the change (N). Two versions of one stamp from one region
#: are ordered by it, as in their origin table, so a repair that reads its stream late can put
#: back the later of them over the earlier (the table alone cannot tell them apart).
SOURCE_SEQ = "xrh_source_seq"
FORWARD_SCOPE = "active-active:forward:{table}:{region}"  # region: where the forwarder reads
APPLY_SCOPE = "active-active:apply:{stream}:{region}"  # region: where the applier writes
LAG_FILE = "replication-lag.jsonl"  # {"ts_ms", "direction": "a->b", "lag_ms"} per applied batch


@dataclass(frozen=True, slots=True, order=True)
class Stamp:
    """A version's last-writer-wins stamp; the larger one wins."""

    ts: int
    region: str

    def to_json(self) -> list[Any]:
        return [self.ts, self.region]


ZERO = Stamp(0, "")  # an item written without a stamp: older than any stamped version


def stamp_of(item: dict[str, Any] | None) -> Stamp | None:
    """The stamp of an item in DynamoDB JSON (``{"N": ...}``, ``{"S": ...}``) or in plain
    values; None for no item, :data:`ZERO` for an item without a stamp."""
    if item is None:
        return None
    ts, region = item.get(STAMP_TS), item.get(STAMP_REGION)
    if isinstance(ts, dict):
        ts = ts.get("N")
    if isinstance(region, dict):
        region = region.get("S")
    if ts is None or region is None:
        return ZERO
    return Stamp(int(ts), str(region))


def source_seq_of(item: dict[str, Any] | None) -> int | None:
    """:data:`SOURCE_SEQ` of an item in wire form, or None."""
    value = (item or {}).get(SOURCE_SEQ)
    text = value.get("N") if isinstance(value, dict) else None
    return int(text) if isinstance(text, str) and text.isdigit() else None


def is_tombstone(item: dict[str, Any] | None) -> bool:
    if item is None:
        return False
    flag = item.get(TOMBSTONE)
    if isinstance(flag, dict):
        flag = flag.get("BOOL")
    return flag is True


def delete_stamp(removed: Stamp, region: str) -> Stamp:
    """The stamp of a DeleteItem made in ``region`` that removed a version stamped ``removed``."""
    return Stamp(removed.ts + 1, region)


def timestamp_of(epoch_ms: int, resolution: str) -> int:
    """A writer's stamp timestamp at ``resolution`` ``ms`` or ``s`` (whole seconds, in ms)."""
    if resolution == "s":
        return epoch_ms - epoch_ms % 1000
    if resolution == "ms":
        return epoch_ms
    raise ValueError(f"timestamp resolution {resolution!r}: expected 's' or 'ms'")
