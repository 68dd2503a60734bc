"""StreamFollower on the embedded endpoint: both regions caught up concurrently into a Store,
then caught up again after more records, every record in the store exactly once."""

from __future__ import annotations

import json
import threading
import time

import pytest

from verify.follower import StreamFollower, catch_up
from verify.store import Store
from xrh.aws import AwsClients
from xrh.config import Side
from xrh.resources import ResourceNames

pytestmark = pytest.mark.functional


def put(client, stream: str, start: int, count: int) -> None:
    for first in range(start, start + count, 500):
        entries = [
            {
                "PartitionKey": str(i % 97),
                "Data": json.dumps({"key": i % 97, "commitTimestamp": "2026-01-01T00:00:00.000Z",
                                    "trace": f"follow-{i:07d}"}).encode(),
            }
            for i in range(first, min(start + count, first + 500))
        ]  # fmt: skip
        answer = client.put_records(StreamName=stream, Records=entries)
        assert answer.get("FailedRecordCount", 0) == 0


def test_both_regions_caught_up_twice_every_record_stored_once(provisioned, tmp_path):
    clients = AwsClients(provisioned, max_pool_connections=16)
    stream = ResourceNames(provisioned.prefix).stream
    kinesis = {side: clients.client("kinesis", side) for side in (Side.A, Side.B)}
    for client in kinesis.values():
        put(client, stream, 0, 3000)
    store = Store(tmp_path / "verify.sqlite")
    followers = [
        (StreamFollower(kinesis[side], stream, label=side.value, limit=400),
         lambda record, _region=side.value: store.add_read(_region, record))
        for side in (Side.A, Side.B)
    ]  # fmt: skip
    threads = threading.active_count()
    try:
        first = catch_up(followers, deadline=time.monotonic() + 120)
        assert threading.active_count() == threads
        assert {label: (s.records, s.complete) for label, s in first.items()} == {
            "a": (3000, True), "b": (3000, True),
        }  # fmt: skip
        assert first["a"].shards == provisioned.shards
        assert first["a"].calls > provisioned.shards * 2  # several pages per shard
        for client in kinesis.values():
            put(client, stream, 3000, 700)
        second = catch_up(followers, deadline=time.monotonic() + 120)
        assert threading.active_count() == threads
        assert {label: s.records for label, s in second.items()} == {"a": 700, "b": 700}
        assert [f.records for f, _ in followers] == [3700, 3700]
        third = catch_up(followers, deadline=time.monotonic() + 120)
        assert {label: s.records for label, s in third.items()} == {"a": 0, "b": 0}
        store.flush()
        db = store.db
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT ident) FROM src").fetchone() == (
            3700, 3700,
        )  # fmt: skip
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT ident) FROM tgt").fetchone() == (
            3700, 3700,
        )  # fmt: skip
        assert db.execute(
            "SELECT COUNT(*) FROM ids WHERE s_n = 1 AND t_n = 1 AND trace LIKE 'follow-%'"
        ).fetchone() == (3700,)
        assert db.execute("SELECT COUNT(*) FROM ids").fetchone() == (3700,)
        # each shard's records were stored in shard order: positions follow sequence numbers
        rows = db.execute("SELECT s_shard, s_seq, s_ord FROM ids ORDER BY s_shard, s_ord")
        by_shard: dict[str, list[int]] = {}
        for shard, seq, _ in rows:
            by_shard.setdefault(shard, []).append(int(seq))
        assert len(by_shard) == provisioned.shards
        assert all(seqs == sorted(seqs) for seqs in by_shard.values())
    finally:
        store.close()
