"""KCL-style leases in the source region's ``{prefix}-leases`` table (boto3).

Rows: ``leaseKey`` = ``<stream>:<shardId>``, ``leaseOwner``, ``leaseCounter`` N (bumped by every
take and renew), ``expiresAtMs`` N, ``checkpoint`` S (``SHARD_END`` once a closed shard is fully
replicated: its children may then start), ``parentShardIds`` SS. Worker rows
``worker#<stream>#<id>`` with ``expiresAtMs`` let workers count each other to share shards.

- take: conditional on the lease being free, released, or expired (the last is a steal);
- renew: conditional on still owning it and, given the counter we last saw, on nobody having
  touched it since (so a lease lost and taken back in between is not silently "renewed");
- release: conditional on owning it.
take and renew return the new ``leaseCounter``: the fencing token the poller writes into the
target's checkpoint rows (:mod:`replicator.core.fence`); None when the condition failed.
Clocks: expiry uses each worker's wall clock; keep lease durations well above clock skew.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

SHARD_END = "SHARD_END"


@dataclass(frozen=True, slots=True)
class Lease:
    shard_id: str
    owner: str | None
    counter: int
    expires_at_ms: int
    checkpoint: str | None

    def held(self, now_ms: int) -> bool:
        return self.owner is not None and self.expires_at_ms > now_ms


def _conditional_failed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class LeaseTable:
    def __init__(self, client: Any, table: str, stream: str, worker_id: str) -> None:
        self.client = client
        self.table = table
        self.stream = stream
        self.worker_id = worker_id
        self.calls = 0

    def _key(self, shard_id: str) -> dict[str, Any]:
        return {"leaseKey": {"S": f"{self.stream}:{shard_id}"}}

    def list(self) -> tuple[dict[str, Lease], dict[str, int]]:
        """(leases by shard, live-worker expiry by worker id) of this stream."""
        leases: dict[str, Lease] = {}
        workers: dict[str, int] = {}
        kwargs: dict[str, Any] = {"TableName": self.table, "ConsistentRead": True}
        prefix, wprefix = f"{self.stream}:", f"worker#{self.stream}#"
        while True:
            self.calls += 1
            page = self.client.scan(**kwargs)
            for item in page.get("Items", []):
                key = item["leaseKey"]["S"]
                expires = int(item.get("expiresAtMs", {}).get("N", "0"))
                if key.startswith(wprefix):
                    workers[key[len(wprefix) :]] = expires
                elif key.startswith(prefix):
                    shard = key[len(prefix) :]
                    leases[shard] = Lease(
                        shard,
                        item.get("leaseOwner", {}).get("S"),
                        int(item.get("leaseCounter", {}).get("N", "0")),
                        expires,
                        item.get("checkpoint", {}).get("S"),
                    )
            if "LastEvaluatedKey" not in page:
                return leases, workers
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def heartbeat(self, now_ms: int, duration_ms: int) -> None:
        self.calls += 1
        self.client.put_item(
            TableName=self.table,
            Item={
                "leaseKey": {"S": f"worker#{self.stream}#{self.worker_id}"},
                "expiresAtMs": {"N": str(now_ms + duration_ms)},
            },
        )

    def leave(self) -> None:
        self.calls += 1
        self.client.delete_item(
            TableName=self.table,
            Key={"leaseKey": {"S": f"worker#{self.stream}#{self.worker_id}"}},
        )

    def take(self, shard_id: str, now_ms: int, duration_ms: int) -> int | None:
        """Take a free, released or expired lease (the last is a steal): the new counter."""
        return self._counted(
            shard_id,
            "SET leaseOwner = :me, expiresAtMs = :exp ADD leaseCounter :one",
            "attribute_not_exists(leaseKey) OR attribute_not_exists(leaseOwner) "
            "OR expiresAtMs < :now",
            {
                ":me": {"S": self.worker_id},
                ":exp": {"N": str(now_ms + duration_ms)},
                ":one": {"N": "1"},
                ":now": {"N": str(now_ms)},
            },
        )

    def renew(
        self,
        shard_id: str,
        now_ms: int,
        duration_ms: int,
        checkpoint: str | None,
        counter: int | None = None,
    ) -> int | None:
        """Extend our lease to ``now_ms + duration_ms``: the new counter, or None if it is not
        ours any more (or, with ``counter``, was touched by anyone since we saw ``counter``)."""
        values = {
            ":me": {"S": self.worker_id},
            ":exp": {"N": str(now_ms + duration_ms)},
            ":one": {"N": "1"},
        }
        expr = "SET expiresAtMs = :exp"
        if checkpoint is not None:
            expr += ", checkpoint = :cp"
            values[":cp"] = {"S": checkpoint}
        condition = "leaseOwner = :me"
        if counter is not None:
            condition += " AND leaseCounter = :c"
            values[":c"] = {"N": str(counter)}
        renewed = self._counted(shard_id, expr + " ADD leaseCounter :one", condition, values)
        if renewed is not None or counter is None:
            return renewed
        # A renewal whose answer was lost still counted: if the row is still ours, only we
        # moved its counter (a steal changes the owner), so renew on what it holds now.
        held = self._our_counter(shard_id)
        if held is None or held == counter:
            return None
        values[":c"] = {"N": str(held)}
        return self._counted(shard_id, expr + " ADD leaseCounter :one", condition, values)

    def _our_counter(self, shard_id: str) -> int | None:
        """The lease's counter if this worker owns it (a consistent read), else None."""
        self.calls += 1
        item = self.client.get_item(
            TableName=self.table, Key=self._key(shard_id), ConsistentRead=True
        ).get("Item")
        if not item or item.get("leaseOwner", {}).get("S") != self.worker_id:
            return None
        return int(item["leaseCounter"]["N"])

    def finish(self, shard_id: str) -> bool:
        """Mark a closed shard done (children may start) and release it."""
        return self._update(
            shard_id,
            "SET checkpoint = :end REMOVE leaseOwner",
            "leaseOwner = :me",
            {":me": {"S": self.worker_id}, ":end": {"S": SHARD_END}},
        )

    def release(self, shard_id: str, checkpoint: str | None) -> bool:
        values = {":me": {"S": self.worker_id}}
        expr = "REMOVE leaseOwner"
        if checkpoint is not None:
            expr = "SET checkpoint = :cp REMOVE leaseOwner"
            values[":cp"] = {"S": checkpoint}
        return self._update(shard_id, expr, "leaseOwner = :me", values)

    def _counted(self, shard_id: str, expr: str, condition: str, values: dict) -> int | None:
        self.calls += 1
        try:
            answer = self.client.update_item(
                TableName=self.table,
                Key=self._key(shard_id),
                UpdateExpression=expr,
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
                ReturnValues="UPDATED_NEW",
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return None
            raise
        return int(answer["Attributes"]["leaseCounter"]["N"])

    def _update(self, shard_id: str, expr: str, condition: str, values: dict) -> bool:
        self.calls += 1
        try:
            self.client.update_item(
                TableName=self.table,
                Key=self._key(shard_id),
                UpdateExpression=expr,
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
            )
            return True
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
