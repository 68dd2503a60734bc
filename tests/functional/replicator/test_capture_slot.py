"""``xrh capture`` against a real PostgreSQL and the embedded endpoint: every committed change in
``{prefix}-cdc`` once or more, in commit order per key, nothing of rolled-back transactions; a
capture killed with -9 mid-load and restarted loses nothing."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from test_replicate_poller import stop as stop_all

from xrh import postgres_cdc as cdc
from xrh import postgres_setup
from xrh.aws import AwsClients
from xrh.config import HarnessConfig, Side, parse_config
from xrh.endpoint import EmbeddedEndpoint
from xrh.postgres_server import PostgresServer
from xrh.provision import destroy, provision
from xrh.resources import ResourceNames

pytestmark = pytest.mark.functional
_n = itertools.count(1)


@pytest.fixture
def cdc_config(endpoint: EmbeddedEndpoint, postgres_server: PostgresServer,
               tmp_path: Path) -> Iterator[HarnessConfig]:  # fmt: skip
    prefix = f"c{os.getpid() % 10000}-{next(_n)}"
    config = parse_config(["--prefix", prefix, "--pipeline", "postgres-cdc",
                           "--runs-dir", str(tmp_path / "runs")], environ={})  # fmt: skip
    config = config.with_endpoints(endpoint.url_of("a"), endpoint.url_of("b"))
    provision(config)
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        postgres_setup.create_all(conn, prefix, notify=True)
    yield config
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        postgres_setup.drop_all(conn, prefix)
    if endpoint.alive():
        destroy(config)


def capture_cmd(config: HarnessConfig, run_dir: Path, url: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "xrh", "capture", "--endpoint-url-a", config.endpoint_url_a,
            "--endpoint-url-b", config.endpoint_url_b, "--prefix", config.prefix,
            "--run-dir", str(run_dir), "--postgres-url", url, "--drain-timeout", "20", *extra]  # fmt: skip


def start(cmd: list[str], log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(cmd, stdout=log.open("a"), stderr=subprocess.STDOUT, env=env)


def drain(proc: subprocess.Popen, log: Path) -> int:
    proc.send_signal(signal.SIGUSR1)
    try:
        return proc.wait(timeout=25)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"capture did not drain: {log.read_text()}") from None


def stop(proc: subprocess.Popen) -> None:
    stop_all([proc])


def run_dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="xrh-capture-"))
    os.chmod(path, 0o755)
    return path


class Writer:
    """Transactions on the harness table; what was committed, per key in commit order."""

    def __init__(self, url: str, prefix: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.table = f"public.{cdc.table_name(prefix)}"
        self.committed: dict[int, list[tuple[str, str | None, int]]] = {}
        self.rolled_back: set[str] = set()
        self.seq = 0

    def txn(self, ops: list[tuple[str, int]], commit: bool = True) -> None:
        done = []
        with self.conn.cursor() as cur:
            cur.execute("BEGIN")
            xid = cur.execute("SELECT txid_current()").fetchone()[0] & 0xFFFFFFFF
            for op, key in ops:
                self.seq += 1
                trace = f"t-{self.seq}"
                if op == "insert":
                    cur.execute(f"INSERT INTO {self.table} VALUES (%s, now(), %s, %s) ON CONFLICT "
                                "(key) DO NOTHING", (key, trace, json.dumps({"n": self.seq})))  # fmt: skip
                elif op == "update":
                    cur.execute(f"UPDATE {self.table} SET trace = %s WHERE key = %s", (trace, key))
                else:
                    cur.execute(f"DELETE FROM {self.table} WHERE key = %s", (key,))
                if cur.rowcount == 1:
                    done.append((key, op, None if op == "delete" else trace))
                else:
                    self.rolled_back.add(trace)  # changed nothing: no record either
            cur.execute("COMMIT" if commit else "ROLLBACK")
        for key, op, trace in done:
            if commit:
                self.committed.setdefault(key, []).append((op, trace, xid))
            elif trace:
                self.rolled_back.add(trace)

    def mixed(self, rounds: int, keys: int = 8, start: int = 0) -> None:
        for i in range(start, start + rounds):
            k = i % keys
            self.txn([("insert", k), ("update", (k + 3) % keys), ("update", k)])
            if i % 4 == 1:
                self.txn([("update", k), ("insert", 1000 + i)], commit=False)
            if i % 5 == 2:
                self.txn([("delete", (k + 1) % keys)])

    def close(self) -> None:
        self.conn.close()


def read_stream(config: HarnessConfig) -> list[dict]:
    client = AwsClients(config).client("kinesis", Side.A)
    stream = ResourceNames(config.prefix).cdc_stream
    records = []
    for shard in client.list_shards(StreamName=stream)["Shards"]:
        it = client.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                       ShardIteratorType="TRIM_HORIZON")["ShardIterator"]  # fmt: skip
        while it:
            page = client.get_records(ShardIterator=it, Limit=10000)
            records += [dict(json.loads(r["Data"]), pk=r["PartitionKey"]) for r in page["Records"]]
            if not page["Records"]:
                break
            it = page.get("NextShardIterator")
    return records


def check_stream(config: HarnessConfig, writer: Writer) -> int:
    """Every committed change once or more, in commit order per key; nothing rolled back."""
    got: dict[int, list[tuple[str, str | None, int]]] = {}
    for record in read_stream(config):
        meta, data = record["metadata"], record["data"]
        assert meta["table-name"] == cdc.table_name(config.prefix)
        assert record["pk"] == str(data["key"])
        assert data.get("trace") not in writer.rolled_back, record
        change = (meta["operation"], data.get("trace"), meta["transaction-id"])
        got.setdefault(data["key"], []).append(change)
    assert set(got) <= set(writer.committed), "records of keys no committed change touched"
    for key, expected in writer.committed.items():
        seen = got.get(key, [])
        it = iter(seen)
        assert all(any(x == y for y in it) for x in expected), f"key {key}: {seen} != {expected}"
        assert set(seen) == set(expected), f"key {key}: {seen} has changes never committed"
    return sum(len(v) for v in got.values())


def test_capture_drains_every_committed_change_in_commit_order(
    cdc_config: HarnessConfig, postgres_server: PostgresServer
) -> None:
    directory = run_dir()
    writer = Writer(postgres_server.url, cdc_config.prefix)
    log = directory / "capture.out"
    try:
        writer.mixed(30)
        proc = start(capture_cmd(cdc_config, directory, postgres_server.url), log)
        try:
            writer.mixed(30, start=30)
            time.sleep(1.0)
            assert drain(proc, log) == 0, log.read_text()
        finally:
            stop(proc)
        check_stream(cdc_config, writer)
        lag = [json.loads(x) for x in (directory / cdc.LAG_FILE).read_text().splitlines()]
        assert lag and lag[-1]["mode"] == "slot" and lag[-1]["pending_bytes"] is not None
    finally:
        writer.close()


def test_capture_killed_mid_load_and_restarted_loses_nothing(
    cdc_config: HarnessConfig, postgres_server: PostgresServer
) -> None:
    directory = run_dir()
    writer = Writer(postgres_server.url, cdc_config.prefix)
    log = directory / "capture.out"
    done = threading.Event()

    def load() -> None:
        i = 0
        while not done.is_set() and i < 2000:
            writer.mixed(1, start=i)
            i += 1

    loader = threading.Thread(target=load)
    loader.start()
    try:
        first = start(capture_cmd(cdc_config, directory, postgres_server.url), log)
        time.sleep(3.0)
        first.kill()
        first.wait()
        second = start(capture_cmd(cdc_config, directory, postgres_server.url), log)
        try:
            time.sleep(1.5)
            done.set()
            loader.join(timeout=30)
            assert drain(second, log) == 0, log.read_text()
        finally:
            stop(second)
        assert check_stream(cdc_config, writer) >= sum(len(v) for v in writer.committed.values())
    finally:
        done.set()
        loader.join(timeout=30)
        writer.close()
