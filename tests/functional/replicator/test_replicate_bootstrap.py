"""``xrh replicate --pipeline dynamodb`` against the embedded endpoint: the bootstrap copy of a
pre-loaded table races live puts, updates and deletes (of copied keys too) and B ends equal to
A; a process killed during the copy is succeeded by one that resumes it where each segment
stopped."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from table_pipeline import provisioned_tables, scan

from xrh.aws import AwsClients
from xrh.config import HarnessConfig, Side
from xrh.contracts import (
    BOOTSTRAP_SEGMENT_PREFIX,
    BOOTSTRAP_SHARD_ID,
    BootstrapRow,
    BootstrapState,
    checkpoint_scope,
)
from xrh.endpoint import EmbeddedEndpoint
from xrh.resources import ResourceNames

pytestmark = pytest.mark.functional

PRELOAD = 3000


@pytest.fixture
def tables(endpoint: EmbeddedEndpoint, tmp_path: Path) -> Iterator[HarnessConfig]:
    """The dynamodb pipeline in both regions (unique prefix), A's table pre-loaded."""
    provisioned = provisioned_tables(endpoint, tmp_path, "tb")
    config = next(provisioned)
    da = AwsClients(config, max_pool_connections=8).client("dynamodb", Side.A)
    table = ResourceNames(config.prefix).items_table

    def load(start: int) -> None:
        items = [{"PutRequest": {"Item": {"pk": {"S": f"k{i:05d}"}, "v": {"N": str(i)},
                                          "pad": {"S": "x" * 64}}}}
                 for i in range(start, min(start + 25, PRELOAD))]  # fmt: skip
        left = {table: items}
        for _ in range(50):
            left = da.batch_write_item(RequestItems=left).get("UnprocessedItems") or {}
            if not left:
                return
        raise AssertionError("pre-load left items unprocessed")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(load, range(0, PRELOAD, 25)))
    yield config
    next(provisioned, None)  # destroy


def command(config: HarnessConfig, run_dir: Path, worker: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "xrh", "replicate", "--pipeline", "dynamodb",
        "--endpoint-url-a", config.endpoint_url_a, "--endpoint-url-b", config.endpoint_url_b,
        "--prefix", config.prefix, "--side", "a", "--run-dir", str(run_dir),
        "--worker-id", worker, "--quiet-seconds", "1.5", "--drain-timeout", "45",
        "--lease-seconds", "3", "--write-timeout", "1.2", "--max-clock-skew-ms", "0",
        "--poll-interval", "0.05", "--scan-segments", "4", "--scan-page-size", "100", *extra,
    ]  # fmt: skip


def start(cmd: list[str], log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Writer(threading.Thread):
    """Live writes while the copy runs: new keys, overwrites, updates and deletes of pre-loaded
    (so possibly already copied) keys."""

    def __init__(self, client, table: str, seed: int) -> None:
        super().__init__(daemon=True)
        self.client, self.table = client, table
        self.rng = random.Random(seed)
        self.halt = threading.Event()
        self.ops = {"put": 0, "overwrite": 0, "update": 0, "delete": 0}
        self.times: list[tuple[int, str]] = []  # (epoch ms, op) of each acknowledged write
        self.error: BaseException | None = None

    def run(self) -> None:
        n = 0
        try:
            while not self.halt.is_set() and n < 20_000:
                n += 1
                key = f"k{self.rng.randrange(PRELOAD):05d}"
                roll = self.rng.random()
                if roll < 0.25:
                    self.ops["put"] += 1
                    item = {"pk": {"S": f"new{n:05d}"}, "v": {"N": str(n)}}
                    self.client.put_item(TableName=self.table, Item=item)
                elif roll < 0.45:
                    self.ops["overwrite"] += 1
                    item = {"pk": {"S": key}, "v": {"N": str(-n)}, "w": {"S": "live"}}
                    self.client.put_item(TableName=self.table, Item=item)
                elif roll < 0.8:
                    self.ops["update"] += 1
                    self.client.update_item(
                        TableName=self.table, Key={"pk": {"S": key}},
                        UpdateExpression="SET v = :v, u = :u",
                        ExpressionAttributeValues={":v": {"N": str(n)}, ":u": {"N": str(n)}},
                    )  # fmt: skip
                else:
                    self.ops["delete"] += 1
                    self.client.delete_item(TableName=self.table, Key={"pk": {"S": key}})
                self.times.append((int(time.time() * 1000), kind(roll)))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def kind(roll: float) -> str:
    return (
        "put"
        if roll < 0.25
        else "overwrite"
        if roll < 0.45
        else "update"
        if roll < 0.8
        else "delete"
    )


def rows(client, config: HarnessConfig) -> tuple[BootstrapRow | None, dict[str, dict]]:
    names = ResourceNames(config.prefix)
    scope = checkpoint_scope("dynamodb", names.items_table, config.region_a)
    items = client.query(
        TableName=names.checkpoint_table, KeyConditionExpression="#s = :s",
        ExpressionAttributeNames={"#s": "scope"}, ExpressionAttributeValues={":s": {"S": scope}},
        ConsistentRead=True,
    )["Items"]  # fmt: skip
    by_id = {i["shardId"]["S"]: i for i in items}
    state = by_id.get(BOOTSTRAP_SHARD_ID)
    row = None
    if state is not None:
        row = BootstrapRow.from_item({k: next(iter(v.values())) for k, v in state.items()})
    segments = {k: v for k, v in by_id.items() if k.startswith(BOOTSTRAP_SEGMENT_PREFIX)}
    return row, segments


def items(segment_row: dict) -> int:
    # moto applies an UpdateItem's SET after creating the item: a read may see the key alone
    return int(segment_row.get("items", {}).get("N", "0"))


def test_bootstrap_races_live_writes_and_b_ends_equal_to_a(
    tables: HarnessConfig, tmp_path: Path
) -> None:
    config, names = tables, ResourceNames(tables.prefix)
    clients = AwsClients(config, max_pool_connections=8)
    da, db = clients.client("dynamodb", Side.A), clients.client("dynamodb", Side.B)
    run_dir = tmp_path / "run"
    writer = Writer(da, names.items_table, seed=3)
    process = start(command(config, run_dir, "w1"), tmp_path / "w1.out")
    try:
        writer.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and rows(db, config)[0] is None:
            time.sleep(0.05)  # the copy has started: write through it and after it
        time.sleep(2.0)
        writer.halt.set()
        writer.join(timeout=10)
        process.send_signal(signal.SIGUSR1)  # as the orchestrator drains it once load stops
        code = process.wait(timeout=60)
    finally:
        writer.halt.set()
        stop(process)
    out = (tmp_path / "w1.out").read_text()
    assert writer.error is None, writer.error
    assert code == 0, out
    assert min(writer.ops.values()) > 10, writer.ops
    a, b = scan(da, names.items_table), scan(db, names.items_table)
    assert len(a) > PRELOAD / 2
    assert b == a, {k: (a.get(k), b.get(k)) for k in set(a) ^ set(b) or [k for k in a if a[k] != b.get(k)][:5]}  # fmt: skip
    row, segments = rows(db, config)
    assert row is not None and row.state is BootstrapState.COMPLETE and row.owner == "w1"
    assert row.items_copied >= PRELOAD * 0.8 and row.copy_seconds is not None
    assert len(segments) == 4 and all(s["done"]["BOOL"] for s in segments.values())
    during = {op for at, op in writer.times if row.started_at_ms <= at <= row.completed_at_ms}
    assert during == {"put", "overwrite", "update", "delete"}, (row, len(writer.times))
    metrics = json.loads((run_dir / "replicator-metrics.json").read_text())
    figures = metrics["workers"]["w1"]["bootstrap"]
    assert figures["outcome"] == "copied" and figures["items_copied"] == row.items_copied
    assert figures["copy_seconds"] == row.copy_seconds and figures["items_per_s"] > 0
    assert metrics["totals"]["bootstrap_items_copied"] == row.items_copied
    assert metrics["workers"]["w1"]["counters"]["changes_applied"] > 0
    assert "bootstrap copied" in out


def test_killed_during_the_bootstrap_a_successor_resumes_it(
    endpoint: EmbeddedEndpoint, tables: HarnessConfig, tmp_path: Path
) -> None:
    config, names = tables, ResourceNames(tables.prefix)
    clients = AwsClients(config, max_pool_connections=8)
    da, db = clients.client("dynamodb", Side.A), clients.client("dynamodb", Side.B)
    run_dir = tmp_path / "run"
    endpoint.set_faults("b:BatchWriteItem:latency=60", seed=1)  # a copy slow enough to kill
    first = start(command(config, run_dir, "first"), tmp_path / "first.out")
    try:
        deadline = time.monotonic() + 30
        copied = 0
        while time.monotonic() < deadline and copied < PRELOAD // 4:
            time.sleep(0.05)
            _, segments = rows(db, config)
            copied = sum(items(s) for s in segments.values())
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        endpoint.set_faults(None)
        stop(first)
    row, segments = rows(db, config)
    assert row is not None and row.state is BootstrapState.COPYING and row.owner == "first"
    done_before = sum(items(s) for s in segments.values())
    assert 0 < done_before < PRELOAD, (tmp_path / "first.out").read_text()
    da.delete_item(TableName=names.items_table, Key={"pk": {"S": "k00001"}})  # a change too

    killed_at = time.monotonic()
    second = start(command(config, run_dir, "second", "--until-drained"), tmp_path / "second.out")
    try:
        code = second.wait(timeout=60)
    finally:
        stop(second)
    out = (tmp_path / "second.out").read_text()
    assert code == 0, out
    assert time.monotonic() - killed_at >= 3  # it waited for the dead owner's lease
    assert scan(db, names.items_table) == scan(da, names.items_table)
    row, segments = rows(db, config)
    assert row is not None and row.state is BootstrapState.COMPLETE and row.owner == "second"
    assert row.items_copied == PRELOAD
    log = [json.loads(line) for line in (run_dir / "replicator-second.log").read_text().splitlines()
           if line.startswith("{") and '"event"' in line]  # fmt: skip
    (taken,) = [e for e in log if e["event"] == "bootstrap_taken"]
    assert (
        taken["previous_owner"] == "first"
        and sum(taken["resumed_segments"].values()) == done_before
    )
    (complete,) = [e for e in log if e["event"] == "bootstrap_complete"]
    assert complete["copied_here"] == PRELOAD - done_before  # resumed, not copied again
