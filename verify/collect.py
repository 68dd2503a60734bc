"""Collecting what verify judges into the store: the ledger, the claims log, both regions'
streams, the dead letters and the final checkpoint. Everything that talks to AWS is here;
:mod:`verify.runner` decides what to collect and reconciles afterwards.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from verify.dead_letters import read_bucket
from verify.errors import EndpointUnreachable
from verify.kinesis_reader import error_code, is_connection_error, read_stream
from verify.model import StoreSide
from verify.reconcile import FINAL_CHECKPOINT
from verify.store import Store
from xrh.config import HarnessConfig, Side
from xrh.contracts import (
    LEDGER_COMPLETE_KEY,
    WATERMARK_SHARD_ID,
    WatermarkClaim,
    checkpoint_scope,
)
from xrh.resources import ResourceNames


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[str], Callable[[int], None]]]:
    """Yields ``task(label) -> advance(n)``; a rich bar per stream when enabled."""
    if not enabled:
        yield lambda label: lambda n: None
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed} records"),
        TimeElapsedColumn(), transient=True,
    ) as bar:  # fmt: skip

        def task(label: str) -> Callable[[int], None]:
            task_id = bar.add_task(label, total=None)
            return lambda n: bar.advance(task_id, n)

        yield task


def load_ledger(store: Store, path: Path, stream: str, notes: list[str]) -> str | None:
    """Import the ledger; returns a reason when it is incomplete (verdict unknown)."""
    if not path.exists():
        notes.append("no ledger.sqlite: source and target compared without a ledger")
        return None
    try:
        rows = store.import_ledger(path, stream)
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            meta = db.execute(
                "SELECT value FROM ledger_meta WHERE name = ?", (LEDGER_COMPLETE_KEY,)
            ).fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        return f"ledger {path} could not be read ({exc}): verdict unknown"
    notes.append(f"ledger: {rows} write attempts at stream {stream}")
    if meta is None or meta[0] != "1":
        return f"ledger {path} is not marked complete (ledger_meta.complete != '1')"
    return None


def load_claims(store: Store, path: Path, stream: str, details: dict[str, Any]) -> None:
    if not path.exists():
        details["claims"] = {"file": False, "lines": 0}
        return
    good, bad, other = [], 0, 0
    with path.open() as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                claim = WatermarkClaim.from_line(line)
            except (ValueError, KeyError, TypeError):
                bad += 1
                continue
            if claim.stream != stream:
                other += 1
                continue
            good.append(claim)
            if len(good) >= 5000:
                store.add_claims(good)
                good.clear()
    store.add_claims(good)
    details["claims"] = {"file": True, "unparseable_lines": bad, "other_streams": other}


def read_final_checkpoint(clients: Any, config: HarnessConfig, stream: str) -> dict | None:
    names = ResourceNames(config.prefix)
    scope = checkpoint_scope("kinesis", stream, config.region_a)
    try:
        item = (
            clients.client("dynamodb", Side.B)
            .get_item(
                TableName=names.checkpoint_table,
                Key={"scope": {"S": scope}, "shardId": {"S": WATERMARK_SHARD_ID}},
                ConsistentRead=True,
            )
            .get("Item")
        )
    except Exception as exc:
        if is_connection_error(exc):
            raise EndpointUnreachable(
                f"region B ({config.region_b}) endpoint not reachable: {exc}"
            ) from exc
        if error_code(exc) == "ResourceNotFoundException":
            return None
        raise
    if not item or "watermarkMs" not in item:
        return None
    return {"scope": scope, "watermark_ms": int(item["watermarkMs"]["N"])}


def read_regions(
    store: Store,
    config: HarnessConfig,
    stream: str,
    details: dict[str, Any],
    clients: Any,
    timeout_s: float,
    progress: bool,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    wall_ms: Callable[[], int],
) -> list[str]:
    """Fill the store from both regions; returns reasons the evidence is incomplete."""
    if clients is None:
        from xrh.aws import AwsClients

        clients = AwsClients(config, max_attempts=2, connect_timeout=3.0, read_timeout=30.0)
    deadline = clock() + timeout_s
    reads: dict[str, Any] = {}
    details["reads"] = reads
    details["timings_s"] = {}
    reasons: list[str] = []
    t0 = time.perf_counter()
    with _progress(progress) as task:
        for label, side, store_side in (
            ("source", Side.A, StoreSide.SOURCE),
            ("target", Side.B, StoreSide.TARGET),
        ):
            region = config.region(side)

            def add(record: Any, _side: StoreSide = store_side) -> None:
                store.add(_side, record)

            try:
                stats = read_stream(
                    clients.client("kinesis", side), stream, add, deadline=deadline, clock=clock,
                    sleep=sleep, on_progress=task(f"reading {label} {stream} in {region}"),
                )  # fmt: skip
            except EndpointUnreachable as exc:
                url = config.endpoint_url(side) or "AWS"
                return [f"region {side.name} ({region}) endpoint {url} is not reachable: {exc}"]
            except Exception as exc:
                if error_code(exc) == "ResourceNotFoundException":
                    return [f"stream {stream} not found in region {side.name} ({region})"]
                raise
            reads[label] = stats.to_json()
            if not stats.complete:
                reasons.append(
                    f"{label} stream {stream} in {region} not read to its end within "
                    f"{timeout_s:g} s (unfinished shards: {', '.join(stats.unfinished)})"
                )
    store.flush()
    details["timings_s"]["read"] = round(time.perf_counter() - t0, 3)
    try:
        checkpoint = read_final_checkpoint(clients, config, stream)
        dead = read_dead_letters(store, clients, config)
    except EndpointUnreachable as exc:
        return [str(exc)]
    details["dead_letters"] = dead
    if checkpoint is not None:
        store.add_claim(wall_ms(), checkpoint["watermark_ms"], "checkpoint", FINAL_CHECKPOINT)
        details["final_checkpoint"] = checkpoint
    else:
        details["final_checkpoint"] = None
    return reasons


def read_dead_letters(store: Store, clients: Any, config: HarnessConfig) -> dict[str, Any]:
    names = ResourceNames(config.prefix)
    count, listed = 0, []
    for side in (Side.A, Side.B):
        bucket = names.dead_letter_bucket(config.region(side))
        try:
            for record in read_bucket(clients.client("s3", side), bucket):
                count += 1
                store.add_dead_letter(
                    record.partition_key, record.data, record.reason, record.location
                )
                if len(listed) < 100:
                    listed.append(
                        {
                            "partition_key": record.partition_key,
                            "reason": record.reason,
                            "location": record.location,
                            "data": None
                            if record.data is None
                            else record.data[:500].decode(errors="replace"),
                        }
                    )
        except Exception as exc:
            if is_connection_error(exc):
                raise EndpointUnreachable(
                    f"region {side.name} endpoint not reachable reading {bucket}: {exc}"
                ) from exc
            raise
    return {"count": count, "records": listed, "listed": len(listed)}
