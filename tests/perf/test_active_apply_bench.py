"""The active-active pipeline's reference applier on the embedded endpoint: region B's
``xrh replicate --pipeline active-active --side b --role apply`` as its command builds it
(replicator.runners.active_cli: the poller with leases and their fencing, the Applier parsing,
squashing each key per batch and writing with the last-writer-wins conditional PutItem through
ConditionalWriter, WRITES_IN_FLIGHT = 8 at a time, checkpoints in B's checkpoint table, the lag
file, dead-letter sink, metrics files), against a bare loop over the same staging records in the
same run: GetRecords on B's staging stream (1,000 a call, as the applier reads; shard after
shard, one reader as the poller is), each record's image written with an unconditional PutItem,
no parsing checks, no squashing, no checkpoints. For fairness the bare loop writes with the same
concurrency as the applier's writer: WRITES_IN_FLIGHT PutItems in flight, each record of a page
given to one of that many lanes by its key (so a key's records stay in order), a page's writes
finished before the next read.

The staging records are what A's forwarder sends for CHANGES seeded plain writes in A
(active_bench_setup's history, no regressions: every version and tombstone is forwarded), put to
B's staging stream in the contract's format before each measurement (not timed); B's table
starts empty. After each run B's table must hold the model's last version of every key
(tombstones included), so its live items are A's.

Figures (``benchmark.extra_info``, printed with ``-s``; nothing is asserted on time):
``records_per_s``; ``calls_per_record``, the applier's conditional PutItems + checkpoint calls
per staging record (the bare loop: its PutItems per record); ``aws_calls_per_record``, every
call (stream reads and leases too); ``ratio_vs_copy_loop``, the applier's records/s over the
bare loop's. About 40 to 50 s on a 2-core machine. Run:
``pytest tests/perf/test_active_apply_bench.py -p no:cacheprovider -s``.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from active_bench_setup import History, history, loaded_staging, run_role, table_items
from replicator_bench_setup import embedded_endpoint

from replicator.runners.active_cli import WRITES_IN_FLIGHT
from xrh.aws import AwsClients
from xrh.config import HarnessConfig, Side, parse_config
from xrh.endpoint import EmbeddedEndpoint
from xrh.provision import destroy
from xrh.resources import ResourceNames

CHANGES = 8_000
KEYS = 4_000  # keys repeat (about twice each), as a workload's do
RESULTS: dict[str, dict] = {}


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory) -> Iterator[EmbeddedEndpoint]:
    yield from embedded_endpoint(tmp_path_factory)


@pytest.fixture(scope="module")
def changes() -> History:
    h = history(CHANGES, KEYS, parse_config([], environ={}).region_a)
    assert len(h.versions) == CHANGES  # nothing regressed: one staging record per write
    return h


def copy_loop(config: HarnessConfig, clients: AwsClients, h: History) -> dict:
    """The bare loop (module doc): GetRecords, then each image by an unconditional PutItem,
    WRITES_IN_FLIGHT lanes by key."""
    names = ResourceNames(config.prefix)
    kb, db = clients.client("kinesis", Side.B), clients.client("dynamodb", Side.B)
    table = names.items_table
    reads = writes = records = 0

    def lane(items: list[dict]) -> int:
        for item in items:
            db.put_item(TableName=table, Item=item)
        return len(items)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(WRITES_IN_FLIGHT, thread_name_prefix="bench-apply-copy") as pool:
        shards = kb.list_shards(StreamName=names.staging_stream)["Shards"]
        reads += 1
        for shard in shards:
            it = kb.get_shard_iterator(StreamName=names.staging_stream, ShardId=shard["ShardId"],
                                       ShardIteratorType="TRIM_HORIZON")["ShardIterator"]  # fmt: skip
            reads += 1
            while it:
                r = kb.get_records(ShardIterator=it, Limit=1000)
                reads += 1
                lanes: list[list[dict]] = [[] for _ in range(WRITES_IN_FLIGHT)]
                for x in r["Records"]:
                    lanes[zlib.crc32(x["PartitionKey"].encode()) % WRITES_IN_FLIGHT].append(
                        json.loads(x["Data"])["image"]
                    )
                writes += sum(pool.map(lane, [items for items in lanes if items]))
                records += len(r["Records"])
                if not r["Records"] and r.get("MillisBehindLatest", 0) == 0:
                    break
                it = r.get("NextShardIterator")
    seconds = time.perf_counter() - t0
    return {
        "records": records,
        "seconds": seconds,
        "calls": writes,
        "extra": {
            "aws_calls_per_record": round((reads + writes) / records, 5),
            "put_item_calls": writes,
            "stream_reads": reads,
            "writes_in_flight": WRITES_IN_FLIGHT,
        },  # fmt: skip
    }


def applier(config: HarnessConfig, clients: AwsClients, h: History) -> dict:
    """B's applier (run_role), until it has applied (written and checkpointed) every record."""
    seconds, calls, c, processed = run_role(
        config, "b", "apply", lambda app, processed: processed >= len(h.versions)
    )
    assert c["dead_lettered"] == 0 and c["failed_batches"] == 0 and c["came_back"] == 0, c
    mine = calls["table_writes"] + calls["checkpoint"]
    return {
        "records": processed,
        "seconds": seconds,
        "calls": mine,
        "extra": {
            "aws_calls_per_record": round(sum(calls.values()) / processed, 5),
            "calls_by_kind": calls,
            "applied": c["applied"],
            "superseded": c["superseded"],
            "squashed": c["squashed"],
            "write_calls": c["write_calls"],
            "write_retries": c["write_retries"],
            "checkpoint_writes": c["checkpoint_writes"],
            "batches": c["batches"],
            "writes_in_flight": WRITES_IN_FLIGHT,
        },
    }


def measure(endpoint, h: History, body) -> dict:
    """One run of ``body`` on a freshly filled staging stream in B (not timed); B's table must
    then hold the last version of every key."""
    config, clients = loaded_staging(endpoint, "aapl", h)
    try:
        out = body(config, clients, h)
        assert out["records"] == len(h.versions), out
        assert table_items(clients, Side.B, ResourceNames(config.prefix).items_table) == h.final
    finally:
        destroy(config)
    return {
        "records": out["records"],
        "records_per_s": round(out["records"] / out["seconds"], 1),
        "seconds": round(out["seconds"], 2),
        "calls_per_record": round(out["calls"] / out["records"], 5),
        **out["extra"],
    }


def report(name: str, info: dict) -> None:
    print(f"\n[{name}] " + ", ".join(f"{k}={v}" for k, v in info.items()))


def test_bench_active_apply_copy_loop(benchmark, endpoint, changes) -> None:
    def target() -> None:
        RESULTS["copy_loop"] = measure(endpoint, changes, copy_loop)

    benchmark.pedantic(target, rounds=1, iterations=1)
    benchmark.extra_info.update(RESULTS["copy_loop"])
    report("bare apply loop (GetRecords -> PutItem)", RESULTS["copy_loop"])


def test_bench_active_applier(benchmark, endpoint, changes) -> None:
    """The applier; its ratio is to the bare loop measured in the same run (measured here
    first, outside pytest-benchmark's timing, when this test runs alone)."""
    if "copy_loop" not in RESULTS:
        RESULTS["copy_loop"] = measure(endpoint, changes, copy_loop)
        report("bare apply loop (GetRecords -> PutItem)", RESULTS["copy_loop"])

    def target() -> None:
        RESULTS["applier"] = measure(endpoint, changes, applier)

    benchmark.pedantic(target, rounds=1, iterations=1)
    info, loop = RESULTS["applier"], RESULTS["copy_loop"]
    info["ratio_vs_copy_loop"] = round(info["records_per_s"] / loop["records_per_s"], 3)
    info["copy_loop_records_per_s"] = loop["records_per_s"]
    info["copy_loop_calls_per_record"] = loop["calls_per_record"]
    benchmark.extra_info.update(info)
    report("active-active applier (xrh replicate --role apply)", info)
    # structural bounds, not times: squashing never costs more than one write per record
    assert info["calls_by_kind"]["table_writes"] <= len(changes.versions)
    assert info["calls_per_record"] <= 1.01
