"""The action-log pipeline's reference consumer on the embedded endpoint: ``xrh replicate
--pipeline action-log --consumer fast`` as its command builds it (replicator.runners.action_cli:
the poller, leases and their fencing, the ActionApplier with its per-key plan, BatchWriter and
conditional UpdateItems, checkpoints, dead-letter sink, metrics and lag files), against a bare
copy loop over the same actions in the same run: GetRecords, then per action one unconditional
PutItem / UpdateItem / DeleteItem, or one BatchWriteItem (unprocessed items sent again), no
checks, no checkpoints, one thread per shard. The actions are the load generator's
(ActionRecords: the default mix put=40, update=40, delete=10, batch=10 over its default
keyspace of 10,000 keys), ACTIONS of them, seeded, loaded before each measurement (not timed).
After each run the table must equal the fold of the log.

Figures (``benchmark.extra_info``, printed with ``-s``; nothing is asserted on time):
``calls_per_action``, the consumer's write calls to the table (BatchWriteItem + UpdateItem +
GetItem) per action applied, and ``ratio_vs_copy_loop``, its actions/s over the bare loop's;
with the squashing counts (item ops in, requests written). The bare loop makes one call per
action, so it takes the longer (about 1 to 2 minutes on a 2-core machine). Run:
``pytest tests/perf/test_action_apply_bench.py -p no:cacheprovider -s``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from action_bench_setup import action_log, fold, loaded, table_contents, to_wire
from replicator_bench_setup import embedded_endpoint

from xrh.aws import AwsClients
from xrh.config import HarnessConfig, Side
from xrh.endpoint import EmbeddedEndpoint
from xrh.provision import destroy
from xrh.resources import ResourceNames

ACTIONS = 20_000
KEYS = 10_000  # the load generator's default keyspace
RESULTS: dict[str, dict] = {}


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory) -> Iterator[EmbeddedEndpoint]:
    yield from embedded_endpoint(tmp_path_factory)


@pytest.fixture(scope="module")
def log() -> list[tuple[str, bytes]]:
    return action_log(ACTIONS, KEYS)


@pytest.fixture(scope="module")
def expected(log) -> dict[str, dict]:
    return fold(log)


def copy_shard(ka, da, stream: str, table: str, shard_id: str) -> tuple[int, int, int]:
    """One shard's actions, each as one unconditional call, in order: (actions, reads, writes)."""
    reads = writes = actions = 0
    it = ka.get_shard_iterator(StreamName=stream, ShardId=shard_id,
                               ShardIteratorType="TRIM_HORIZON")["ShardIterator"]  # fmt: skip
    reads += 1
    while it:
        r = ka.get_records(ShardIterator=it, Limit=10_000)
        reads += 1
        for record in r["Records"]:
            doc = json.loads(record["Data"])
            kind, body = doc["Action"], doc["Data"]
            writes += 1
            if kind == "PutItem":
                da.put_item(TableName=table, Item={k: to_wire(v) for k, v in body.items()})
            elif kind == "DeleteItem":
                da.delete_item(TableName=table, Key={"pk": {"S": body["pk"]}})
            elif kind == "UpdateItem":
                attr_names: dict[str, str] = {}
                values: dict[str, dict] = {}
                sets, adds = [], []
                for i, (name, value) in enumerate((body.get("Set") or {}).items()):
                    attr_names[f"#s{i}"], values[f":s{i}"] = name, to_wire(value)
                    sets.append(f"#s{i} = :s{i}")
                for i, (name, amount) in enumerate((body.get("Add") or {}).items()):
                    attr_names[f"#a{i}"], values[f":a{i}"] = name, to_wire(amount)
                    adds.append(f"#a{i} :a{i}")
                expression = " ".join(
                    [*(["SET " + ", ".join(sets)] if sets else []),
                     *(["ADD " + ", ".join(adds)] if adds else [])]
                )  # fmt: skip
                da.update_item(TableName=table, Key={"pk": {"S": body["pk"]}},
                               UpdateExpression=expression, ExpressionAttributeNames=attr_names,
                               ExpressionAttributeValues=values)  # fmt: skip
            else:
                request = {table: [
                    {"PutRequest": {"Item": {k: to_wire(v) for k, v in x["PutItem"].items()}}}
                    if "PutItem" in x else
                    {"DeleteRequest": {"Key": {"pk": {"S": x["DeleteItem"]["pk"]}}}}
                    for x in body
                ]}  # fmt: skip
                for _ in range(100):
                    request = da.batch_write_item(RequestItems=request).get("UnprocessedItems")
                    if not request:
                        break
                    writes += 1
        actions += len(r["Records"])
        if not r["Records"] and r.get("MillisBehindLatest", 0) == 0:
            break
        it = r.get("NextShardIterator")
    return actions, reads, writes


def copy_loop(config: HarnessConfig, clients: AwsClients) -> dict:
    """The bare loop: one thread per shard (the consumer writes concurrently too; a key's
    actions are all in one shard, so per-key order holds), each running copy_shard."""
    names = ResourceNames(config.prefix)
    stream, table = names.actions_stream, names.items_table
    ka, da = clients.client("kinesis", Side.A), clients.client("dynamodb", Side.A)
    shards = [s["ShardId"] for s in ka.list_shards(StreamName=stream)["Shards"]]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(len(shards), thread_name_prefix="bench-copy") as pool:
        totals = list(pool.map(lambda s: copy_shard(ka, da, stream, table, s), shards))
    seconds = time.perf_counter() - t0
    return {
        "actions": sum(t[0] for t in totals),
        "seconds": seconds,
        "table_calls": sum(t[2] for t in totals),
        "extra": {"threads": len(shards), "get_records_calls": 1 + sum(t[1] for t in totals)},
    }


def consumer(config: HarnessConfig, clients: AwsClients) -> dict:
    """The fast consumer as ``xrh replicate --pipeline action-log --consumer fast`` builds it
    (action_cli.build, default options), its poller on a thread, timed from its start until it
    has applied (written and checkpointed) every action; its drain wait is not counted."""
    from replicator.runners import action_cli
    from replicator.runners.cli import add_arguments
    from xrh.config import add_common_options

    parser = argparse.ArgumentParser()
    add_common_options(parser)
    add_arguments(parser)
    args = parser.parse_args(["--side", "a", "--consumer", "fast", "--worker-id", "bench"])
    action_cli.check(args)
    run_dir = Path(tempfile.mkdtemp(prefix="xrh-action-bench-"))  # logs, metrics, lag file
    poller, applier, files, _ = action_cli.build(args, config, run_dir, "bench")
    table = applier.updater.sink

    def calls() -> dict[str, int]:
        return {
            "source_reads": poller.reader.calls,
            "table": table.calls,
            "checkpoint": poller.checkpoints.calls,
            "leases": poller.leases.calls,
        }

    c = applier.metrics.counters
    thread = threading.Thread(target=poller.run, name="bench-action-consumer")
    t0 = time.perf_counter()
    thread.start()
    try:
        deadline = time.monotonic() + 300
        while c["actions_applied"] < ACTIONS:
            if time.monotonic() > deadline or not thread.is_alive():
                break
            time.sleep(0.005)
        seconds = time.perf_counter() - t0
        at_end = calls()
    finally:
        poller.request_stop()
        thread.join(timeout=60)
        applier.close()
        files.close()
        shutil.rmtree(run_dir, ignore_errors=True)
    requests = c["put_requests"] + c["delete_requests"] + c["update_requests"]
    return {
        "actions": c["actions_applied"],
        "seconds": seconds,
        "table_calls": at_end["table"],
        "extra": {
            "aws_calls_per_action": round(sum(at_end.values()) / max(1, c["actions_applied"]), 5),
            "calls_by_kind": at_end,
            "batch_write_calls": c["write_calls"],
            "update_calls": c["update_calls"],
            "batches": c["batches"],
            "item_ops": c["item_ops"],
            "requests_written": requests,
            "squashed_ops": c["item_ops"] - requests,
            "put_requests": c["put_requests"],
            "delete_requests": c["delete_requests"],
            "update_requests": c["update_requests"],
            "condition_retries": c["condition_retries"],
            "ops_already_applied": c["ops_already_applied"],
            "unprocessed_retries": c["unprocessed_retries"],
            "dead_lettered": c["dead_lettered"],
            "failed_batches": c["failed_batches"],
            "checkpoint_writes": c["checkpoint_writes"],
        },
    }


def measure(endpoint, log, expected, body) -> dict:
    """One run of ``body`` on a freshly loaded actions stream (loading is not timed); the
    table it leaves must be the fold of the log."""
    config, clients = loaded(endpoint, "abench", log)
    try:
        out = body(config, clients)
        assert out["actions"] == len(log), out
        assert table_contents(config, clients, Side.A) == expected
    finally:
        destroy(config)
    return {
        "actions": out["actions"],
        "actions_per_s": round(out["actions"] / out["seconds"], 1),
        "seconds": round(out["seconds"], 2),
        "calls_per_action": round(out["table_calls"] / out["actions"], 5),
        **out["extra"],
    }


def report(name: str, info: dict) -> None:
    print(f"\n[{name}] " + ", ".join(f"{k}={v}" for k, v in info.items()))


def test_bench_action_copy_loop(benchmark, endpoint, log, expected) -> None:
    def target() -> None:
        RESULTS["copy_loop"] = measure(endpoint, log, expected, copy_loop)

    benchmark.pedantic(target, rounds=1, iterations=1)
    benchmark.extra_info.update(RESULTS["copy_loop"])
    report("bare copy loop", RESULTS["copy_loop"])


def test_bench_action_consumer(benchmark, endpoint, log, expected) -> None:
    """The consumer; its ratio is to the bare loop measured in the same run (measured here
    first, outside pytest-benchmark's timing, when this test runs alone)."""
    if "copy_loop" not in RESULTS:
        RESULTS["copy_loop"] = measure(endpoint, log, expected, copy_loop)
        report("bare copy loop", RESULTS["copy_loop"])

    def target() -> None:
        RESULTS["consumer"] = measure(endpoint, log, expected, consumer)

    benchmark.pedantic(target, rounds=1, iterations=1)
    info, loop = RESULTS["consumer"], RESULTS["copy_loop"]
    info["ratio_vs_copy_loop"] = round(info["actions_per_s"] / loop["actions_per_s"], 3)
    info["copy_loop_actions_per_s"] = loop["actions_per_s"]
    benchmark.extra_info.update(info)
    report("action-log consumer (xrh replicate --consumer fast)", info)
    # structural bounds, not times: squashing and batching never cost more than the bare loop
    assert info["calls_per_action"] <= 1.0
    assert info["dead_lettered"] == 0 and info["ops_already_applied"] == 0
