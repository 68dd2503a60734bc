"""Live apply throughput on the embedded endpoint: the poller driving DynamoStreamReader and
TableApplier (leases, fencing, the bootstrap gate, checkpoints, as a runner wires them) against
a bare copy loop (GetRecords -> BatchWriteItem, keys deduplicated per chunk of 25, unprocessed
items sent again, no checks) over the same stream contents, in the same run. Figures go to
``benchmark.extra_info`` and are printed (``-s``); nothing is asserted on time. Run:
``pytest tests/perf/test_table_apply_bench.py -s``.

Targets (DESIGN.md, "Performance"): throughput at least 0.8 of the copy loop; at most 0.05
write calls per change.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator

import pytest
from replicator_bench_setup import embedded_endpoint, provisioned

from replicator.adapters.dynamodb import DynamoCheckpointStore
from replicator.adapters.dynamodb_bootstrap import DynamoBootstrapStore
from replicator.adapters.leases import LeaseTable
from replicator.adapters.streams import DynamoStreamReader
from replicator.adapters.table import DynamoTableWriter
from replicator.core.table_apply import BootstrapGate, TableApplier
from replicator.core.table_writes import BatchWriter
from replicator.runners.poller import NoClaims, Poller, PollerSettings
from xrh.aws import AwsClients
from xrh.config import HarnessConfig, Side
from xrh.contracts import BOOTSTRAP_SHARD_ID, checkpoint_scope, iso_ms
from xrh.endpoint import EmbeddedEndpoint
from xrh.provision import destroy
from xrh.resources import ResourceNames

CHANGES = 8_000
ROUNDS = 3
KEYS = 4_000  # keys repeat (about twice each), as a workload's do
RESULTS: dict[str, dict] = {}


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory) -> Iterator[EmbeddedEndpoint]:
    yield from embedded_endpoint(tmp_path_factory)


def fresh(endpoint: EmbeddedEndpoint) -> tuple[HarnessConfig, AwsClients]:
    """A provisioned dynamodb pipeline whose source stream holds CHANGES changes (the same
    contents each time: seeded), and a complete bootstrap row."""
    config = provisioned(endpoint, "tbench", "dynamodb")
    prefix = config.prefix
    clients = AwsClients(config, max_attempts=1, max_pool_connections=8)
    names = ResourceNames(prefix)
    da = clients.client("dynamodb", Side.A)
    rng = random.Random(42)
    stamp = iso_ms(int(time.time() * 1000))
    pending: dict[str, dict] = {}
    for i in range(CHANGES):
        pk = str(rng.randrange(KEYS))
        if pk in pending or len(pending) == 25:  # one BatchWriteItem holds a key once
            da.batch_write_item(RequestItems={names.items_table: list(pending.values())})
            pending = {}
        item = {"pk": {"S": pk}, "n": {"N": str(i)}, "commitTimestamp": {"S": stamp},
                "payload": {"S": "x" * 100}}  # fmt: skip
        pending[pk] = {"PutRequest": {"Item": item}}
    if pending:
        da.batch_write_item(RequestItems={names.items_table: list(pending.values())})
    clients.client("dynamodb", Side.B).put_item(
        TableName=names.checkpoint_table,
        Item={"scope": {"S": checkpoint_scope("dynamodb", names.items_table, config.region_a)},
              "shardId": {"S": BOOTSTRAP_SHARD_ID}, "state": {"S": "complete"}},
    )  # fmt: skip
    return config, clients


def copy_loop(config: HarnessConfig, clients: AwsClients) -> dict:
    table = ResourceNames(config.prefix).items_table
    da, db = clients.client("dynamodb", Side.A), clients.client("dynamodb", Side.B)
    streams = clients.client("dynamodbstreams", Side.A)
    arn = da.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    calls, changes, writes = 1, 0, 0
    t0 = time.perf_counter()
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        it = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        calls += 2
        while it and changes < CHANGES:
            r = streams.get_records(ShardIterator=it, Limit=1000)
            calls += 1
            records = r["Records"]
            for start in range(0, len(records), 25):
                chunk: dict[str, dict] = {}
                for x in records[start : start + 25]:
                    key = x["dynamodb"]["Keys"]["pk"]["S"]
                    chunk.pop(key, None)
                    if x["eventName"] == "REMOVE":
                        chunk[key] = {"DeleteRequest": {"Key": x["dynamodb"]["Keys"]}}
                    else:
                        chunk[key] = {"PutRequest": {"Item": x["dynamodb"]["NewImage"]}}
                request = {table: list(chunk.values())}
                for _ in range(100):
                    answer = db.batch_write_item(RequestItems=request)
                    calls += 1
                    writes += 1
                    request = answer.get("UnprocessedItems") or {}
                    if not request:
                        break
            changes += len(records)
            it = r.get("NextShardIterator")
    seconds = time.perf_counter() - t0
    return {"changes": changes, "seconds": seconds, "calls": calls, "write_calls": writes}


def live_apply(config: HarnessConfig, clients: AwsClients) -> dict:
    names = ResourceNames(config.prefix)
    table = names.items_table
    da, db = clients.client("dynamodb", Side.A), clients.client("dynamodb", Side.B)
    scope = checkpoint_scope("dynamodb", table, config.region_a)
    sink = DynamoTableWriter(db)
    bootstrap_row = DynamoBootstrapStore(db, names.checkpoint_table, scope)
    store = DynamoCheckpointStore(db, names.checkpoint_table, scope, owner="bench")
    applier = TableApplier(
        table=table, source_region=config.region_a, target_region=config.region_b,
        writer=BatchWriter(sink, table, max_in_flight=4), checkpoints=store, dead_letters=None,
        clock_ms=lambda: int(time.time() * 1000), gate=BootstrapGate(bootstrap_row.state),
    )  # fmt: skip
    reader = DynamoStreamReader(clients.client("dynamodbstreams", Side.A), da, table)
    leases = LeaseTable(da, names.lease_table, table, "bench")
    poller = Poller(
        reader=reader, leases=leases, replicator=applier,  # type: ignore[arg-type]
        checkpoints=store, publisher=NoClaims(),
        settings=PollerSettings(batch_limit=1000, poll_interval_s=0.05),
    )  # fmt: skip
    thread = threading.Thread(target=poller.run, name="bench-apply")
    t0 = time.perf_counter()
    thread.start()
    try:
        deadline = time.monotonic() + 600
        while applier.metrics.counters["changes_applied"] < CHANGES:
            if time.monotonic() > deadline or not thread.is_alive():
                break
            time.sleep(0.005)
        seconds = time.perf_counter() - t0
        calls = {
            "source_reads": reader.calls,
            "target_writes": sink.calls,
            "checkpoint": store.calls,
            "bootstrap_state": bootstrap_row.calls,
            "leases": leases.calls,
        }
    finally:
        poller.request_stop()
        thread.join(timeout=60)
        applier.close()
    c = applier.metrics.counters
    return {
        "changes": c["changes_applied"],
        "seconds": seconds,
        "calls": sum(calls.values()),
        "write_calls": c["write_calls"],
        "extra": {
            "calls_by_kind": calls,
            "batches": c["batches"],
            "squashed": c["squashed"],
            "checkpoint_writes": c["checkpoint_writes"],
            "apply_lag_ms": applier.metrics.snapshot()["apply_lag_ms"],
        },
    }


def measure(endpoint, body) -> dict:
    """One run of ``body`` on a freshly loaded stream (the loading is not timed)."""
    config, clients = fresh(endpoint)
    try:
        out = body(config, clients)
    finally:
        destroy(config)
    return {
        "changes": out["changes"],
        "changes_per_s": round(out["changes"] / out["seconds"], 1),
        "write_calls_per_change": round(out["write_calls"] / out["changes"], 5),
        "aws_calls_per_change": round(out["calls"] / out["changes"], 5),
        **out.get("extra", {}),
    }


def report(name: str, info: dict) -> None:
    print(f"\n[{name}] " + ", ".join(f"{k}={v}" for k, v in info.items()))


def test_bench_table_live_apply_vs_copy_loop(benchmark, endpoint) -> None:
    """ROUNDS alternating runs of each (the endpoint shares two cores with whatever else runs:
    alternating spreads the noise over both); the medians and their ratio are the figures."""
    runs: dict[str, list[dict]] = {"copy_loop": [], "live_apply": []}

    def target() -> None:
        for _ in range(ROUNDS):
            runs["copy_loop"].append(measure(endpoint, copy_loop))
            runs["live_apply"].append(measure(endpoint, live_apply))

    benchmark.pedantic(target, rounds=1, iterations=1)
    medians = {}
    for name, infos in runs.items():
        infos.sort(key=lambda i: i["changes_per_s"])
        medians[name] = infos[len(infos) // 2]
        report(f"{name}, median of {ROUNDS}", medians[name])
        print(f"  [{name}] changes/s per round: {[i['changes_per_s'] for i in infos]}")
    apply, loop = medians["live_apply"], medians["copy_loop"]
    figures = {
        "copy_loop_changes_per_s": loop["changes_per_s"],
        "live_apply_changes_per_s": apply["changes_per_s"],
        "ratio_vs_copy_loop": round(apply["changes_per_s"] / loop["changes_per_s"], 3),
        "write_calls_per_change": apply["write_calls_per_change"],
        "aws_calls_per_change": apply["aws_calls_per_change"],
        "apply_lag_ms": apply["apply_lag_ms"],
    }
    benchmark.extra_info.update(figures)
    report("live apply / copy loop", figures)
