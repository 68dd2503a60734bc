"""The run's own evidence beside the tables: the ledger, the bootstrap copy's state row in
B's checkpoint table, and the replicator's apply lag (its metrics file).

None of it comes from the replicator's code: the ledger and the row layouts are contracts
(:mod:`xrh.contracts`), so verify judges any replicator that keeps them.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from verify.errors import EndpointUnreachable
from verify.kinesis_reader import error_code, is_connection_error
from verify.ledger_file import load_ledger_file
from verify.table_reader import key_json
from verify.tables.store import TableStore
from xrh.config import HarnessConfig, Side
from xrh.contracts import (
    BOOTSTRAP_SHARD_ID,
    ITEM_KEY,
    BootstrapRow,
    checkpoint_scope,
)
from xrh.resources import ResourceNames

LAG_KEYS = ("p50", "p90", "p99", "max")


def import_ledger(
    store: TableStore, path: Path, table: str, notes: list[str], key_name: str = ITEM_KEY
) -> str | None:
    """The ledger's attempts at ``table`` into the store; a reason when the ledger is
    incomplete or unreadable (verdict unknown), else None."""

    def copy_rows(ledger: sqlite3.Connection) -> int:
        cursor = ledger.execute(
            "SELECT trace, partition_key, op, status, commit_ts FROM ledger "
            "WHERE pipeline = 'dynamodb' AND (target = ? OR target LIKE ?)",
            (table, f"%/{table}"),
        )
        return store.add_ledger_rows(
            (trace, key_json({key_name: {"S": str(pk)}}, (key_name,)), op, status, commit)
            for trace, pk, op, status, commit in cursor
        )

    return load_ledger_file(path, notes, copy_rows, target=f"table {table}",
                            absent="the tables compared without a ledger")  # fmt: skip


def ledger_counts(store: TableStore) -> dict[str, int]:
    """acknowledged / failed / unknown writes (one per trace, however many attempts)."""
    counts = {"acknowledged": 0, "failed": 0, "unknown": 0}
    names = {"ok": "acknowledged", "fail": "failed", "unknown": "unknown"}
    for status, n in store.db.execute("SELECT status, COUNT(*) FROM ledger GROUP BY status"):
        counts[names.get(status, "unknown")] += n
    return counts


def ledger_by_op(store: TableStore) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for op, status, n in store.db.execute(
        "SELECT op, status, COUNT(*) FROM ledger GROUP BY op, status"
    ):
        out.setdefault(op, {})[status] = n
    return out


def read_bootstrap(clients: Any, config: HarnessConfig, table: str) -> dict[str, Any] | str:
    """The bootstrap copy's state row in B's checkpoint table, as the report shows it, or
    ``"no bootstrap"`` when there is none."""
    names = ResourceNames(config.prefix)
    key = {
        "scope": {"S": checkpoint_scope("dynamodb", table, config.region_a)},
        "shardId": {"S": BOOTSTRAP_SHARD_ID},
    }
    try:
        answer = clients.client("dynamodb", Side.B).get_item(
            TableName=names.checkpoint_table, Key=key, ConsistentRead=True
        )
    except Exception as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return "no bootstrap"
        if is_connection_error(exc):
            raise EndpointUnreachable(f"region B endpoint not reachable: {exc}") from exc
        raise
    item = answer.get("Item")
    if not item:
        return "no bootstrap"
    from boto3.dynamodb.types import TypeDeserializer

    plain = {k: TypeDeserializer().deserialize(v) for k, v in item.items()}
    try:
        row = BootstrapRow.from_item(plain)
    except (KeyError, ValueError, TypeError) as exc:
        return f"unreadable bootstrap row ({exc})"
    rate = None
    if row.copy_seconds:
        rate = round(row.items_copied / row.copy_seconds, 1)
    return {
        "state": row.state.value,
        "items_copied": row.items_copied,
        "copy_seconds": row.copy_seconds,
        "items_per_s": rate,
        "segments": row.segments,
        "owner": row.owner,
        "started_at_ms": row.started_at_ms,
        "completed_at_ms": row.completed_at_ms,
    }


def apply_lag(metrics: Any) -> tuple[dict[str, Any], str]:
    """``lag_ms`` from the replicator's metrics: the worst worker's ``apply_lag_ms`` (by p99,
    then max), and where it came from."""
    empty = {k: None for k in LAG_KEYS}
    workers = metrics.get("workers") if isinstance(metrics, dict) else None
    if not isinstance(workers, dict):
        return empty, "no replicator metrics (replicator-metrics.json absent or without workers)"
    candidates = []
    for worker, snapshot in workers.items():
        lag = snapshot.get("apply_lag_ms") if isinstance(snapshot, dict) else None
        if isinstance(lag, dict) and lag.get("count"):
            candidates.append(((lag.get("p99") or 0, lag.get("max") or 0), worker, lag))
    if not candidates:
        return empty, "the replicator's metrics carry no apply_lag_ms"
    _, worker, lag = max(candidates, key=lambda c: c[0])
    return (
        {k: lag.get(k) for k in LAG_KEYS},
        f"replicator-metrics.json, workers.{worker}.apply_lag_ms (the worst of "
        f"{len(candidates)} worker(s) by p99; {lag.get('count')} changes; from each item's "
        "commitTimestamp to its apply in B)",
    )
