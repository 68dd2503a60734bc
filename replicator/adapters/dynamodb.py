"""boto3 DynamoDB: checkpoint rows (target region), active-region lookup (own region) and
handover rows. The ``dynamodb`` pipeline's bootstrap copy has its own adapters
(:mod:`replicator.adapters.dynamodb_bootstrap`).

Row layout and conditions: :mod:`replicator.core.checkpoint`. Every write is one conditional
UpdateItem; ``ConditionalCheckFailedException`` means another writer is at or past us.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from replicator.core.active import MAX_EARLIER_SWITCHES, Assignment, Switch
from replicator.core.bootstrap_ownership import BOOTSTRAP_SHARD_ID
from replicator.core.checkpoint import (
    WATERMARK_SHARD_ID,
    ShardCheckpoint,
    sequence_key,
)
from replicator.core.handover import HandoverKey, HandoverState
from replicator.core.records import iso_ms_of
from replicator.errors import ActiveRegionLookupError, CheckpointError, HandoverError

_FAILURES = (ClientError, BotoCoreError, OSError)


def _code(exc: Exception) -> str:
    return exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""


class DynamoCheckpointStore:
    """CheckpointStore over the target region's ``{prefix}-checkpoints`` table."""

    def __init__(self, client: Any, table: str, scope: str, owner: str = "") -> None:
        self.client = client
        self.table = table
        self.scope = scope
        self.owner = owner
        self.calls = 0

    def load(self) -> dict[str, ShardCheckpoint]:
        rows: dict[str, ShardCheckpoint] = {}
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "#s = :s",
            "ExpressionAttributeNames": {"#s": "scope"},
            "ExpressionAttributeValues": {":s": {"S": self.scope}},
            "ConsistentRead": True,
        }
        try:
            while True:
                self.calls += 1
                page = self.client.query(**kwargs)
                for item in page.get("Items", []):
                    shard = item["shardId"]["S"]
                    if shard == WATERMARK_SHARD_ID or shard.startswith(BOOTSTRAP_SHARD_ID):
                        continue  # the watermark row, the bootstrap copy's rows
                    rows[shard] = ShardCheckpoint(
                        shard,
                        item.get("sequenceNumber", {}).get("S"),
                        _num(item, "commitTimestampMs"),
                        _num(item, "shardWatermarkMs"),
                        item.get("closed", {}).get("BOOL", False),
                        _num(item, "leaseCounter"),
                        item.get("startedAtLatest", {}).get("BOOL", False),
                    )
                if "LastEvaluatedKey" not in page:
                    return rows
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        except _FAILURES as exc:
            raise CheckpointError(f"{self.table}: reading checkpoints failed: {exc}") from exc

    def advance(self, cp: ShardCheckpoint) -> bool:
        names = {"#q": "sequenceKey", "#w": "shardWatermarkMs", "#c": "closed"}
        values: dict[str, Any] = {
            ":q": {"S": sequence_key(cp.sequence_number) if cp.sequence_number else ""},
            ":c": {"BOOL": cp.closed},
            ":o": {"S": self.owner},
        }
        sets = ["#q = :q", "#c = :c", "updatedBy = :o"]
        if cp.sequence_number is not None:
            sets.append("sequenceNumber = :n")
            values[":n"] = {"S": cp.sequence_number}
        if cp.commit_ms is not None:
            sets += ["commitTimestampMs = :t", "commitTimestamp = :ts"]
            values[":t"] = {"N": str(cp.commit_ms)}
            values[":ts"] = {"S": iso_ms_of(cp.commit_ms)}
        if cp.skipped_history:  # set once, never cleared
            sets.append("startedAtLatest = :sk")
            values[":sk"] = {"BOOL": True}
        wm = -1 if cp.shard_watermark_ms is None else cp.shard_watermark_ms
        if cp.shard_watermark_ms is not None:
            sets.append("#w = :w")
        values[":w"] = {"N": str(wm)}
        # Forward only: a greater position; or the same one, newly closed or a higher watermark.
        same = "attribute_not_exists(#w) OR #w < :w"
        if cp.closed:
            same += " OR #c = :false"
            values[":false"] = {"BOOL": False}
        condition = f"attribute_not_exists(#q) OR #q < :q OR (#q = :q AND ({same}))"
        if cp.lease_counter is not None:  # fencing token: never under a newer lease's row
            names["#l"] = "leaseCounter"
            values[":l"] = {"N": str(cp.lease_counter)}
            sets.append("#l = :l")
            condition = f"({condition}) AND (attribute_not_exists(#l) OR #l <= :l)"
        return self._update(cp.shard_id, sets, names, values, condition)

    def publish_watermark(self, watermark_ms: int, claimed_at_ms: int) -> bool:
        values = {
            ":w": {"N": str(watermark_ms)},
            ":ws": {"S": iso_ms_of(watermark_ms)},
            ":t": {"N": str(claimed_at_ms)},
            ":o": {"S": self.owner},
        }
        return self._update(
            WATERMARK_SHARD_ID,
            ["watermarkMs = :w", "watermark = :ws", "claimedAtMs = :t", "updatedBy = :o"],
            {},
            values,
            "attribute_not_exists(watermarkMs) OR watermarkMs < :w",
        )

    def watermark(self) -> int | None:
        try:
            self.calls += 1
            item = self.client.get_item(
                TableName=self.table,
                Key={"scope": {"S": self.scope}, "shardId": {"S": WATERMARK_SHARD_ID}},
                ConsistentRead=True,
            ).get("Item")
        except _FAILURES as exc:
            raise CheckpointError(f"{self.table}: reading the watermark failed: {exc}") from exc
        return _num(item or {}, "watermarkMs")

    def _update(self, shard_id: str, sets, names, values, condition) -> bool:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "Key": {"scope": {"S": self.scope}, "shardId": {"S": shard_id}},
            "UpdateExpression": "SET " + ", ".join(sets),
            "ConditionExpression": condition,
            "ExpressionAttributeValues": values,
        }
        if names:
            kwargs["ExpressionAttributeNames"] = names
        try:
            self.calls += 1
            self.client.update_item(**kwargs)
            return True
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return False
            raise CheckpointError(f"{self.table}: checkpoint write failed: {exc}") from exc
        except (BotoCoreError, OSError) as exc:
            raise CheckpointError(f"{self.table}: checkpoint write failed: {exc}") from exc


class DynamoSampleWatermark:
    """The sample behaviour's checkpoint (:mod:`replicator.core.sample`): one unconditional
    PutItem per record of the whole ``#watermark`` row of the scope, the row the reference
    publishes its stream watermark in. ``watermarkMs`` is left out when the commit text does
    not parse (the sample stores whatever text it found)."""

    def __init__(self, client: Any, table: str, scope: str, owner: str = "") -> None:
        self.client = client
        self.table = table
        self.scope = scope
        self.owner = owner
        self.calls = 0

    def overwrite(self, commit_text: str, commit_ms: int | None, written_at_ms: int) -> None:
        item: dict[str, Any] = {
            "scope": {"S": self.scope},
            "shardId": {"S": WATERMARK_SHARD_ID},
            "watermark": {"S": commit_text},
            "claimedAtMs": {"N": str(written_at_ms)},
            "updatedBy": {"S": self.owner},
        }
        if commit_ms is not None:
            item["watermarkMs"] = {"N": str(commit_ms)}
        try:
            self.calls += 1
            self.client.put_item(TableName=self.table, Item=item)
        except _FAILURES as exc:
            raise CheckpointError(f"{self.table}: checkpoint write failed: {exc}") from exc


def _num(item: dict, name: str) -> int | None:
    value = item.get(name, {}).get("N")
    return None if value is None else int(value)


class DynamoActiveRegion:
    """ActiveRegionLookup over ``{prefix}-active-region`` in the replicator's own region."""

    def __init__(self, client: Any, table: str, *, consistent_read: bool = True) -> None:
        self.client = client
        self.table = table
        self.consistent_read = consistent_read  # False only for the sample behaviour
        self.calls = 0

    def assignment(self, stream: str, *, not_before_ms: int | None = None) -> Assignment:
        """Always a fresh read (consistent unless built otherwise), so any ``not_before_ms``
        is met."""
        try:
            self.calls += 1
            item = self.client.get_item(
                TableName=self.table,
                Key={"streamName": {"S": stream}},
                ConsistentRead=self.consistent_read,
            ).get("Item")
        except _FAILURES as exc:
            raise ActiveRegionLookupError(
                f"{self.table}: lookup of {stream!r} failed: {exc}"
            ) from exc
        item = item or {}
        if not item.get("activeRegion", {}).get("S"):
            raise ActiveRegionLookupError(f"{self.table}: no activeRegion for stream {stream!r}")
        return self.assignment_of(item)

    @staticmethod
    def assignment_of(item: dict[str, Any]) -> Assignment:
        """An item of the table (with its ``activeRegion``) as an Assignment."""
        since = item.get("activeSinceMs", {}).get("N")
        return Assignment(
            item["activeRegion"]["S"],
            int(since) if since else None,
            item.get("previousRegion", {}).get("S"),
            earlier=switch_history(item),
        )

    def active_region(self, stream: str) -> str:
        return self.assignment(stream).region


def switch_history(item: dict[str, Any]) -> tuple[Switch, ...]:
    """The earlier switches an active-region item keeps (``switchHistory``, newest first)."""
    out = []
    for entry in item.get("switchHistory", {}).get("L", []):
        m = entry.get("M", {})
        since, region = m.get("sinceMs", {}).get("N"), m.get("region", {}).get("S")
        if since and region:
            out.append(Switch(int(since), m.get("previousRegion", {}).get("S"), region))
    return tuple(out)


def set_active_region(
    client: Any,
    table: str,
    stream: str,
    region: str,
    *,
    since_ms: int | None = None,
    previous_region: str | None = None,
    earlier: Sequence[Switch] = (),
) -> None:
    """Switch the active region (failover). With ``since_ms`` and ``previous_region`` the
    handover is lossless (see :mod:`replicator.core.active`); without, it is the seed's switch.
    ``earlier``: the switches before this one, newest first (at most MAX_EARLIER_SWITCHES kept)."""
    item: dict[str, Any] = {"streamName": {"S": stream}, "activeRegion": {"S": region}}
    if since_ms is not None:
        item["activeSinceMs"] = {"N": str(since_ms)}
    if previous_region is not None:
        item["previousRegion"] = {"S": previous_region}
    history = []
    for switch in list(earlier)[:MAX_EARLIER_SWITCHES]:
        entry = {"sinceMs": {"N": str(switch.since_ms)}, "region": {"S": switch.region}}
        if switch.previous_region:
            entry["previousRegion"] = {"S": switch.previous_region}
        history.append({"M": entry})
    if history:
        item["switchHistory"] = {"L": history}
    client.put_item(TableName=table, Item=item)


class DynamoHandoverStore:
    """HandoverStore over a checkpoint table (:mod:`replicator.core.handover`). Rows of scope
    ``handover:kinesis:<stream>:<previous region>:<since ms>``: ``copies#<source shard>#<first
    sequence number>#<offset>`` (``copies`` SS of ``<target shard>:<sequence number>``),
    ``done#<source shard>``, and ``#state`` (``heartbeatMs`` N, ``complete`` BOOL)."""

    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table
        self.calls = 0

    def _key(self, key: HandoverKey, row: str) -> dict[str, Any]:
        return {"scope": {"S": key.scope}, "shardId": {"S": row}}

    def _call(self, operation: str, **kwargs: Any) -> Any:
        self.calls += 1
        try:
            return getattr(self.client, operation)(TableName=self.table, **kwargs)
        except _FAILURES as exc:
            raise HandoverError(f"{self.table}: handover {operation} failed: {exc}") from exc

    def record_copies(self, key: HandoverKey, part: str, copies: Sequence[str]) -> None:
        if copies:
            item = {**self._key(key, f"copies#{part}"), "copies": {"SS": sorted(set(copies))}}
            self._call("put_item", Item=item)

    def mark_done(self, key: HandoverKey, shard_ids: Iterable[str]) -> None:
        for shard_id in shard_ids:
            self._call("put_item", Item=self._key(key, f"done#{shard_id}"))

    def _rows(self, key: HandoverKey, prefix: str) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": "#s = :s AND begins_with(shardId, :p)",
            "ExpressionAttributeNames": {"#s": "scope"},
            "ExpressionAttributeValues": {":s": {"S": key.scope}, ":p": {"S": prefix}},
            "ConsistentRead": True,
        }
        items: list[dict[str, Any]] = []
        while True:
            page = self._call("query", **kwargs)
            items += page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def done_shards(self, key: HandoverKey) -> set[str]:
        return {i["shardId"]["S"][len("done#") :] for i in self._rows(key, "done#")}

    def copies(self, key: HandoverKey) -> set[str]:
        return {c for i in self._rows(key, "copies#") for c in i.get("copies", {}).get("SS", [])}

    def heartbeat(self, key: HandoverKey, at_ms: int) -> None:
        self._call(
            "update_item", Key=self._key(key, "#state"), UpdateExpression="SET heartbeatMs = :t",
            ExpressionAttributeValues={":t": {"N": str(at_ms)}},
        )  # fmt: skip

    def mark_complete(self, key: HandoverKey, at_ms: int) -> None:
        self._call(
            "update_item", Key=self._key(key, "#state"),
            UpdateExpression="SET complete = :c, heartbeatMs = :t",
            ExpressionAttributeValues={":c": {"BOOL": True}, ":t": {"N": str(at_ms)}},
        )  # fmt: skip

    def state(self, key: HandoverKey) -> HandoverState:
        item = self._call("get_item", Key=self._key(key, "#state"), ConsistentRead=True).get(
            "Item", {}
        )
        return HandoverState(item.get("complete", {}).get("BOOL", False), _num(item, "heartbeatMs"))
