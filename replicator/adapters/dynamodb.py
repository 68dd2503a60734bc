"""boto3 DynamoDB: checkpoint rows (target region), active-region lookup (own region), and
the ``dynamodb`` pipeline's bootstrap copy: its state and segment rows (target region) and the
parallel scan of the source table.

Row layout and conditions: :mod:`replicator.core.checkpoint` and
:mod:`replicator.core.bootstrap`. Every write is one conditional UpdateItem;
``ConditionalCheckFailedException`` means another writer is at or past us.
"""

from __future__ import annotations

import base64
import json
import random as _random
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from replicator.core.active import Assignment
from replicator.core.bootstrap import (
    BOOTSTRAP_SEGMENT_PREFIX,
    BOOTSTRAP_SHARD_ID,
    BootstrapError,
    BootstrapPreconditionError,
    BootstrapRow,
    BootstrapState,
    ScanPage,
    SegmentProgress,
    TableInfo,
    Taken,
    segment_row_id,
)
from replicator.core.checkpoint import (
    WATERMARK_SHARD_ID,
    ShardCheckpoint,
    sequence_key,
)
from replicator.core.handover import HandoverKey, HandoverState
from replicator.core.putrecords import Backoff
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
        region = item.get("activeRegion", {}).get("S")
        if not region:
            raise ActiveRegionLookupError(f"{self.table}: no activeRegion for stream {stream!r}")
        since = item.get("activeSinceMs", {}).get("N")
        previous = item.get("previousRegion", {}).get("S")
        return Assignment(region, int(since) if since else None, previous)

    def active_region(self, stream: str) -> str:
        return self.assignment(stream).region


def set_active_region(
    client: Any,
    table: str,
    stream: str,
    region: str,
    *,
    since_ms: int | None = None,
    previous_region: str | None = None,
) -> None:
    """Switch the active region (failover). With ``since_ms`` and ``previous_region`` the
    handover is lossless (see :mod:`replicator.core.active`); without, it is the seed's switch."""
    item = {"streamName": {"S": stream}, "activeRegion": {"S": region}}
    if since_ms is not None:
        item["activeSinceMs"] = {"N": str(since_ms)}
    if previous_region is not None:
        item["previousRegion"] = {"S": previous_region}
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


# --------------------------------------------------------------------------- bootstrap copy

#: Codes that mean "nothing done, ask again later" for a Scan or a bootstrap row write.
_THROTTLED = frozenset({
    "ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
    "InternalServerError", "ServiceUnavailable", "InternalFailure", "LimitExceededException",
})  # fmt: skip


def encode_key(key: dict[str, Any] | None) -> str | None:
    """A wire-form key (a scan's LastEvaluatedKey) as JSON text; binary values base64."""
    if key is None:
        return None
    out = {
        name: {"B": base64.b64encode(v["B"]).decode()} if "B" in v else v for name, v in key.items()
    }
    return json.dumps(out, sort_keys=True, separators=(",", ":"))


def decode_key(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    key = json.loads(text)
    return {n: {"B": base64.b64decode(v["B"])} if "B" in v else v for n, v in key.items()}


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    """A wire-form row of scalars as plain values (numbers as text, as from_item accepts)."""
    out: dict[str, Any] = {}
    for name, value in item.items():
        ((kind, v),) = value.items()
        out[name] = v if kind in ("S", "N", "BOOL") else value
    return out


class DynamoBootstrapStore:
    """:class:`~replicator.core.bootstrap.BootstrapStore` over the target's checkpoint table.

    State row ``shardId`` = ``#bootstrap`` (``xrh.contracts.BootstrapRow``'s attributes plus
    ``leaseCounter`` N, the fencing token bumped by every take and renew); segment rows
    ``#bootstrap/segment-NNNN`` with ``lastKey`` S (JSON), ``done`` BOOL, ``items`` N and
    ``deadLettered`` N. Every write is one conditional UpdateItem (conditions in the core's
    protocol); reads are consistent."""

    def __init__(self, client: Any, table: str, scope: str) -> None:
        self.client = client
        self.table = table
        self.scope = scope
        self.calls = 0

    def _key(self, row: str) -> dict[str, Any]:
        return {"scope": {"S": self.scope}, "shardId": {"S": row}}

    def _call(self, operation: str, **kwargs: Any) -> Any:
        self.calls += 1
        try:
            return getattr(self.client, operation)(TableName=self.table, **kwargs)
        except _FAILURES as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return None
            raise BootstrapError(f"{self.table}: bootstrap {operation} failed: {exc}") from exc

    def read(self) -> BootstrapRow | None:
        got = self._call("get_item", Key=self._key(BOOTSTRAP_SHARD_ID), ConsistentRead=True)
        item = (got or {}).get("Item")
        return None if not item or "state" not in item else BootstrapRow.from_item(_plain(item))

    def segments(self) -> dict[int, SegmentProgress]:
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": "#s = :s AND begins_with(shardId, :p)",
            "ExpressionAttributeNames": {"#s": "scope"},
            "ExpressionAttributeValues": {
                ":s": {"S": self.scope}, ":p": {"S": BOOTSTRAP_SEGMENT_PREFIX},
            },
            "ConsistentRead": True,
        }  # fmt: skip
        out: dict[int, SegmentProgress] = {}
        while True:
            page = self._call("query", **kwargs) or {}
            for item in page.get("Items", []):
                segment = int(item["shardId"]["S"][len(BOOTSTRAP_SEGMENT_PREFIX) :])
                out[segment] = SegmentProgress(
                    segment,
                    decode_key(item.get("lastKey", {}).get("S")),
                    item.get("done", {}).get("BOOL", False),
                    _num(item, "items") or 0,
                    _num(item, "deadLettered") or 0,
                )
            if "LastEvaluatedKey" not in page:
                return out
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    _NAMES = {"#st": "state", "#o": "owner", "#seg": "segments", "#n": "itemsCopied",
              "#c": "leaseCounter"}  # fmt: skip

    def take(self, owner: str, now_ms: int, lease_ms: int, segments: int) -> Taken | None:
        got = self._call(
            "update_item",
            Key=self._key(BOOTSTRAP_SHARD_ID),
            UpdateExpression=(
                "SET #st = :copying, #o = :me, heartbeatMs = :now, "
                "startedAtMs = if_not_exists(startedAtMs, :now), "
                "#seg = if_not_exists(#seg, :seg), #n = if_not_exists(#n, :zero) "
                "ADD #c :one"
            ),
            ConditionExpression=(
                "attribute_not_exists(#st) OR (#st = :copying AND (#o = :me OR heartbeatMs < :stale))"
            ),
            ExpressionAttributeNames=self._NAMES,
            ExpressionAttributeValues={
                ":copying": {"S": BootstrapState.COPYING.value}, ":me": {"S": owner},
                ":now": {"N": str(now_ms)}, ":seg": {"N": str(segments)}, ":zero": {"N": "0"},
                ":one": {"N": "1"}, ":stale": {"N": str(now_ms - lease_ms)},
            },
            ReturnValues="ALL_NEW",
        )  # fmt: skip
        if got is None:
            return None
        item = got["Attributes"]
        return Taken(BootstrapRow.from_item(_plain(item)), int(item["leaseCounter"]["N"]))

    def _mine(self, owner: str, counter: int) -> dict[str, Any]:
        return {
            "ConditionExpression": "#o = :me AND #c = :c AND #st = :copying",
            "ExpressionAttributeNames": self._NAMES,
            "values": {
                ":me": {"S": owner}, ":c": {"N": str(counter)},
                ":copying": {"S": BootstrapState.COPYING.value},
            },
        }  # fmt: skip

    def _update_mine(
        self, owner: str, counter: int, expression: str, values: dict[str, Any], **kwargs: Any
    ) -> Any:
        cond = self._mine(owner, counter)
        names = {k: v for k, v in cond["ExpressionAttributeNames"].items()
                 if k in expression or k in cond["ConditionExpression"]}  # fmt: skip
        return self._call(
            "update_item",
            Key=self._key(BOOTSTRAP_SHARD_ID),
            UpdateExpression=expression,
            ConditionExpression=cond["ConditionExpression"],
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={**cond["values"], **values},
            **kwargs,
        )

    def renew(self, owner: str, now_ms: int, counter: int, items_copied: int) -> int | None:
        got = self._update_mine(
            owner, counter, "SET heartbeatMs = :now, #n = :n ADD #c :one",
            {":now": {"N": str(now_ms)}, ":n": {"N": str(items_copied)}, ":one": {"N": "1"}},
            ReturnValues="UPDATED_NEW",
        )  # fmt: skip
        return None if got is None else int(got["Attributes"]["leaseCounter"]["N"])

    def complete(
        self, owner: str, counter: int, now_ms: int, items_copied: int, copy_seconds: float
    ) -> bool:
        got = self._update_mine(
            owner, counter,
            "SET #st = :complete, heartbeatMs = :now, completedAtMs = :now, #n = :n, "
            "copySeconds = :secs",
            {":complete": {"S": BootstrapState.COMPLETE.value}, ":now": {"N": str(now_ms)},
             ":n": {"N": str(items_copied)}, ":secs": {"N": repr(float(copy_seconds))}},
        )  # fmt: skip
        return got is not None

    def release(self, owner: str, counter: int) -> bool:
        got = self._update_mine(owner, counter, "SET heartbeatMs = :zero", {":zero": {"N": "0"}})
        return got is not None

    def save_segment(self, progress: SegmentProgress) -> bool:
        sets = ["#d = :d", "#i = :i", "deadLettered = :x"]
        values: dict[str, Any] = {
            ":d": {"BOOL": progress.done}, ":i": {"N": str(progress.items)},
            ":x": {"N": str(progress.dead)}, ":false": {"BOOL": False},
        }  # fmt: skip
        if progress.last_key is not None:
            sets.append("lastKey = :k")
            values[":k"] = {"S": encode_key(progress.last_key)}
        got = self._call(
            "update_item",
            Key=self._key(segment_row_id(progress.segment)),
            UpdateExpression="SET " + ", ".join(sets),
            ConditionExpression=(
                "attribute_not_exists(#i) OR (#i <= :i AND (attribute_not_exists(#d) OR #d = :false))"
            ),
            ExpressionAttributeNames={"#d": "done", "#i": "items"},
            ExpressionAttributeValues=values,
        )  # fmt: skip
        return got is not None


class DynamoTableScanner:
    """:class:`~replicator.core.bootstrap.TableScanner` over the source table: Scan with
    ``Segment``/``TotalSegments`` and ``ExclusiveStartKey``, ``Limit`` items a page (the unit of
    progress). Throttling, 5xx and dropped connections are retried with exponential backoff
    and full jitter (``backoff.max_attempts`` calls a page), then raised as BootstrapError.
    Build the client with botocore retries off, so this backoff is the only one."""

    def __init__(
        self,
        client: Any,
        table: str,
        *,
        page_limit: int = 1000,
        backoff: Backoff | None = None,
        sleep: Callable[[float], object] = time.sleep,
        random: Callable[[], float] = _random.random,
    ) -> None:
        self.client = client
        self.table = table
        self.page_limit = page_limit
        self.backoff = backoff or Backoff(base=0.1, cap=5.0, max_attempts=8)
        self.sleep = sleep
        self.random = random
        self.calls = 0
        self.throttled = 0

    def describe(self) -> TableInfo:
        try:
            self.calls += 1
            table = self.client.describe_table(TableName=self.table)["Table"]
        except _FAILURES as exc:
            if _code(exc) == "ResourceNotFoundException":
                raise BootstrapPreconditionError(
                    f"table {self.table} does not exist in the source region: provision the "
                    "pipeline first (xrh provision --pipeline dynamodb)"
                ) from exc
            raise BootstrapError(f"{self.table}: DescribeTable failed: {exc}") from exc
        schema = sorted(table.get("KeySchema", []), key=lambda k: k["KeyType"] != "HASH")
        spec = table.get("StreamSpecification") or {}
        count = table.get("ItemCount")
        return TableInfo(
            self.table,
            tuple(k["AttributeName"] for k in schema),
            None if count is None else int(count),
            spec.get("StreamViewType") if spec.get("StreamEnabled") else None,
        )

    def scan(self, segment: int, total_segments: int, start_key: dict[str, Any] | None) -> ScanPage:
        kwargs: dict[str, Any] = {
            "TableName": self.table, "Segment": segment, "TotalSegments": total_segments,
            "Limit": self.page_limit,
        }  # fmt: skip
        if start_key is not None:
            kwargs["ExclusiveStartKey"] = start_key
        failures = 0
        while True:
            try:
                self.calls += 1
                page = self.client.scan(**kwargs)
                return ScanPage(page.get("Items", []), page.get("LastEvaluatedKey"))
            except _FAILURES as exc:
                status = (
                    exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                    if isinstance(exc, ClientError)
                    else 0
                )
                transient = (
                    not isinstance(exc, ClientError) or _code(exc) in _THROTTLED or status >= 500
                )
                failures += 1
                if not transient or failures >= self.backoff.max_attempts:
                    raise BootstrapError(
                        f"{self.table}: Scan of segment {segment}/{total_segments} failed "
                        f"after {failures} attempt(s): {exc}"
                    ) from exc
                self.throttled += 1
                self.sleep(self.backoff.delay(failures, self.random()))
