"""boto3 DynamoDB for the ``dynamodb`` pipeline's bootstrap copy: its state and segment rows
in the target's checkpoint table, and the parallel scan of the source table.

Row layout and conditions: :mod:`replicator.core.bootstrap_ownership`. Every row write is one
conditional UpdateItem; ``ConditionalCheckFailedException`` means another owner is at or past
us.
"""

from __future__ import annotations

import base64
import json
import random as _random
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from replicator.adapters.dynamodb import _FAILURES, _code, _num
from replicator.core.bootstrap import BootstrapError, BootstrapPreconditionError
from replicator.core.bootstrap_ownership import (
    BOOTSTRAP_SEGMENT_PREFIX,
    BOOTSTRAP_SHARD_ID,
    BootstrapRow,
    BootstrapState,
    SegmentProgress,
    Taken,
    segment_row_id,
)
from replicator.core.bootstrap_segments import ScanPage, TableInfo
from replicator.core.putrecords import Backoff

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
    """:class:`~replicator.core.bootstrap_ownership.BootstrapStore` over the target's checkpoint table.

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

    def state(self) -> str | None:
        """The row's ``state`` (``copying`` / ``complete``), None without a row: live apply's
        gate (:class:`~replicator.core.table_apply.BootstrapGate`), a consistent read so it
        sees the copy start as soon as it is recorded."""
        row = self.read()
        return None if row is None else row.state.value

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
    """:class:`~replicator.core.bootstrap_segments.TableScanner` over the source table: Scan with
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
            # strongly consistent: live apply skips changes older than the copy's start, so
            # every page must hold every write made before it was read (table_apply)
            "ConsistentRead": True,
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
