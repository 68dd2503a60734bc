"""The active-active pipeline's reference forwarder on the embedded endpoint: region A's
``xrh replicate --pipeline active-active --side a --role forward`` as its command builds it
(replicator.runners.active_cli: the poller with leases and their fencing, the Forwarder with its
per-change decisions, PutRecordsSender into B's ``{prefix}-staging``, ConditionalWriter for
repairs and tombstones in A's table, checkpoints in B's checkpoint table, dead-letter sink,
metrics files), against a bare copy loop over the same changes in the same run: GetRecords on
A's table stream, every change sent to B's staging stream with PutRecords (500 a call, one
JSON record per change with its image, no decisions, no local writes, no checkpoints).

The changes are CHANGES seeded plain application writes in A's table (active_bench_setup's
history: puts, updates clearing the tombstone flag, deletes, over KEYS keys, stamped A; a
REGRESS share of the puts stamped older than the version they replace, which the forwarder
repairs), made before each measurement (not timed). The forwarder is timed until it has
processed every change and the echoes of its own writes (the tombstones and repairs it wrote
come back through A's stream and are skipped). After it, A's table must hold the model's
winner of every key (tombstones included) and B's staging stream exactly the model's
forwarded versions and tombstones; after the bare loop, one staging record per change.

Figures (``benchmark.extra_info``, printed with ``-s``; nothing is asserted on time):
``changes_per_s``; ``calls_per_change``, the forwarder's PutRecords + repair / tombstone writes
+ checkpoint calls per change (the bare loop: its PutRecords per change);
``aws_calls_per_change``, every call (stream reads and leases too); ``ratio_vs_copy_loop``,
the forwarder's changes/s over the bare loop's. About 30 to 40 s on a 2-core machine. Run:
``pytest tests/perf/test_active_forward_bench.py -p no:cacheprovider -s``.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from active_bench_setup import (
    PUT_RECORDS_LIMIT,
    History,
    history,
    loaded_table,
    run_role,
    stream_records,
    table_items,
)
from replicator_bench_setup import embedded_endpoint

from xrh.aws import AwsClients
from xrh.config import HarnessConfig, Side, parse_config
from xrh.endpoint import EmbeddedEndpoint
from xrh.provision import destroy
from xrh.resources import ResourceNames

CHANGES = 8_000
KEYS = 4_000  # keys repeat (about twice each), as a workload's do
REGRESS = 0.02  # of the puts to a live key: stamped older than the version they replace
RESULTS: dict[str, dict] = {}


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory) -> Iterator[EmbeddedEndpoint]:
    yield from embedded_endpoint(tmp_path_factory)


@pytest.fixture(scope="module")
def changes() -> History:
    region = parse_config([], environ={}).region_a
    return history(CHANGES, KEYS, region, regress=REGRESS)


def _epoch_ms(value) -> int | None:
    return int(value.timestamp() * 1000) if value is not None else None


def copy_loop(config: HarnessConfig, clients: AwsClients, h: History) -> dict:
    """The bare loop: A's table stream, shard after shard, each GetRecords page (1,000, as the
    forwarder reads) sent to B's staging stream in PutRecords of 500, partition key = pk."""
    names = ResourceNames(config.prefix)
    da = clients.client("dynamodb", Side.A)
    streams = clients.client("dynamodbstreams", Side.A)
    kb = clients.client("kinesis", Side.B)
    region = config.region_a
    reads = puts = changes = 0
    t0 = time.perf_counter()
    arn = da.describe_table(TableName=names.items_table)["Table"]["LatestStreamArn"]
    shards = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    reads += 2
    for shard in shards:
        it = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"],
                                        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]  # fmt: skip
        reads += 1
        while it and changes < CHANGES:
            r = streams.get_records(ShardIterator=it, Limit=1000)
            reads += 1
            wire = []
            for x in r["Records"]:
                d = x["dynamodb"]
                body = {"pk": d["Keys"]["pk"]["S"], "image": d.get("NewImage", d["Keys"]),
                        "origin": region, "source": {"shard": shard["ShardId"],
                        "seq": d["SequenceNumber"],
                        "created_ms": _epoch_ms(d.get("ApproximateCreationDateTime"))}}  # fmt: skip
                wire.append({"PartitionKey": body["pk"],
                             "Data": json.dumps(body, separators=(",", ":")).encode()})  # fmt: skip
            for start in range(0, len(wire), PUT_RECORDS_LIMIT):
                request = wire[start : start + PUT_RECORDS_LIMIT]
                while request:  # failed entries sent again (none on the embedded endpoint)
                    answer = kb.put_records(StreamName=names.staging_stream, Records=request)
                    puts += 1
                    request = [w for w, a in zip(request, answer["Records"], strict=True)
                               if "ErrorCode" in a]  # fmt: skip
            changes += len(r["Records"])
            if not r["Records"]:
                break
            it = r.get("NextShardIterator")
    seconds = time.perf_counter() - t0
    staged = stream_records(clients, Side.B, names.staging_stream)
    assert changes == len(h.ops) and len(staged) == len(h.ops), (changes, len(staged))
    return {
        "changes": changes,
        "seconds": seconds,
        "calls": puts,
        "extra": {
            "aws_calls_per_change": round((reads + puts) / changes, 5),
            "put_records_calls": puts,
            "get_records_calls": reads,
        },  # fmt: skip
    }


def forwarder(config: HarnessConfig, clients: AwsClients, h: History) -> dict:
    """A's forwarder (run_role), until it has processed the CHANGES changes and the echoes of
    the repairs and tombstones it wrote."""

    def done(fwd, processed: int) -> bool:
        c = fwd.metrics.counters
        return processed >= len(h.ops) + c["repairs_written"] + c["tombstones_written"]

    seconds, calls, c, processed = run_role(config, "a", "forward", done)
    names = ResourceNames(config.prefix)
    assert c["dead_lettered"] == 0 and c["failed_batches"] == 0, c
    assert table_items(clients, Side.A, names.items_table) == h.final
    staged = stream_records(clients, Side.B, names.staging_stream)
    assert {r["origin"] for r in staged} == {config.region_a}
    assert Counter((r["pk"], r["stamp"][0]) for r in staged) == Counter(h.forwarded)
    mine = calls["staging_puts"] + calls["table_writes"] + calls["checkpoint"]
    return {
        "changes": len(h.ops),
        "seconds": seconds,
        "calls": mine,
        "extra": {
            "aws_calls_per_change": round(sum(calls.values()) / len(h.ops), 5),
            "calls_per_staging_record": round(mine / len(staged), 5),
            "stream_records_processed": processed,
            "calls_by_kind": calls,
            "forwarded": c["forwarded"],
            "tombstones": c["tombstones"],
            "tombstones_written": c["tombstones_written"],
            "tombstones_superseded": c["tombstones_superseded"],
            "repairs": c["repairs"],
            "repairs_written": c["repairs_written"],
            "repairs_superseded": c["repairs_superseded"],
            "skipped_own_tombstones": c["skipped_own_tombstones"],
            "skipped_restore_echoes": c["skipped_restore_echoes"],
            "put_records_calls": c["put_records_calls"],
            "local_write_calls": c["local_write_calls"],
            "checkpoint_writes": c["checkpoint_writes"],
            "batches": c["batches"],
        },
    }


def measure(endpoint, h: History, body) -> dict:
    """One run of ``body`` on a freshly written table in A (the writes are not timed)."""
    config, clients = loaded_table(endpoint, "afwd", h)
    try:
        out = body(config, clients, h)
    finally:
        destroy(config)
    return {
        "changes": out["changes"],
        "changes_per_s": round(out["changes"] / out["seconds"], 1),
        "seconds": round(out["seconds"], 2),
        "calls_per_change": round(out["calls"] / out["changes"], 5),
        **out["extra"],
    }


def report(name: str, info: dict) -> None:
    print(f"\n[{name}] " + ", ".join(f"{k}={v}" for k, v in info.items()))


def test_bench_active_forward_copy_loop(benchmark, endpoint, changes) -> None:
    def target() -> None:
        RESULTS["copy_loop"] = measure(endpoint, changes, copy_loop)

    benchmark.pedantic(target, rounds=1, iterations=1)
    benchmark.extra_info.update(RESULTS["copy_loop"])
    report("bare forward loop (GetRecords -> PutRecords)", RESULTS["copy_loop"])


def test_bench_active_forwarder(benchmark, endpoint, changes) -> None:
    """The forwarder; its ratio is to the bare loop measured in the same run (measured here
    first, outside pytest-benchmark's timing, when this test runs alone)."""
    if "copy_loop" not in RESULTS:
        RESULTS["copy_loop"] = measure(endpoint, changes, copy_loop)
        report("bare forward loop (GetRecords -> PutRecords)", RESULTS["copy_loop"])

    def target() -> None:
        RESULTS["forwarder"] = measure(endpoint, changes, forwarder)

    benchmark.pedantic(target, rounds=1, iterations=1)
    info, loop = RESULTS["forwarder"], RESULTS["copy_loop"]
    info["ratio_vs_copy_loop"] = round(info["changes_per_s"] / loop["changes_per_s"], 3)
    info["copy_loop_changes_per_s"] = loop["changes_per_s"]
    info["copy_loop_calls_per_change"] = loop["calls_per_change"]
    info["history"] = changes.counts
    benchmark.extra_info.update(info)
    report("active-active forwarder (xrh replicate --role forward)", info)
    # structural bounds, not times: batched sends, one write per delete or regression at most
    writes = changes.counts["delete"] + changes.counts["regressing_put"]
    assert info["calls_by_kind"]["table_writes"] <= writes
    assert info["calls_per_change"] <= 0.1 + writes / len(changes.ops)
