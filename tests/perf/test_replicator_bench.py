"""Replicator throughput on the embedded endpoint: the reference replicator against a bare copy
loop (GetRecords -> PutRecords, no checks) and a sample-like baseline (one PutRecord and one
checkpoint write per record). Two measure the core driven directly (``reference``) and two the
shipped ``xrh replicate`` path: the poller with its default batch size, leases and their
fencing, claims, dead-letter sink and metrics, as ``xrh replicate`` builds it
(``shipped_reference``, and ``shipped_sample`` for ``--behaviour sample``). Figures go to
``benchmark.extra_info`` and are printed (``-s``); nothing is asserted on time. Run:
``pytest tests/perf/test_replicator_bench.py -s``."""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from replicator_bench_setup import embedded_endpoint, provisioned

from replicator.adapters.dynamodb import DynamoActiveRegion, DynamoCheckpointStore
from replicator.adapters.kinesis import KinesisReader, KinesisSink
from replicator.core.active import CachedActiveRegion
from replicator.core.batch import ShardReplicator
from replicator.core.putrecords import PutRecordsSender
from xrh.aws import AwsClients
from xrh.config import HarnessConfig, Side
from xrh.contracts import checkpoint_scope, iso_ms
from xrh.endpoint import EmbeddedEndpoint
from xrh.provision import destroy
from xrh.resources import ResourceNames

RECORDS = 20_000
SAMPLE_RECORDS = 1_000  # two calls per record: kept small so the run stays short
RESULTS: dict[str, dict] = {}


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory) -> Iterator[EmbeddedEndpoint]:
    yield from embedded_endpoint(tmp_path_factory)


def fresh(endpoint: EmbeddedEndpoint, records: int) -> tuple[HarnessConfig, AwsClients]:
    config = provisioned(endpoint, "bench")
    prefix = config.prefix
    clients = AwsClients(config, max_attempts=1)
    ka = clients.client("kinesis", Side.A)
    stream = ResourceNames(prefix).stream
    for start in range(0, records, 500):
        batch = [
            {
                "PartitionKey": str(i % 1000),
                "Data": json.dumps({"key": i % 1000, "commitTimestamp": iso_ms(int(time.time() * 1000)), "trace": f"b-{i}"}).encode(),
            }
            for i in range(start, min(records, start + 500))
        ]  # fmt: skip
        ka.put_records(StreamName=stream, Records=batch)
    return config, clients


def shards_of(kin, stream: str) -> list[str]:
    return [s["ShardId"] for s in kin.list_shards(StreamName=stream)["Shards"]]


def run_once(benchmark, endpoint, records: int, body) -> dict:
    """Set up a loaded stream, then time ``body`` once (the setup is not timed)."""
    out: dict = {}

    def setup():
        out["env"] = fresh(endpoint, records)
        return (), {}

    def target():
        config, clients = out["env"]
        t0 = time.perf_counter()
        out.update(body(config, clients))
        out.setdefault("seconds", time.perf_counter() - t0)  # a body may time itself

    benchmark.pedantic(target, setup=setup, rounds=1, iterations=1)
    destroy(out["env"][0])
    info = {
        "records": out["copied"],
        "records_per_s": round(out["copied"] / out["seconds"], 1),
        "aws_calls_per_record": round(out["calls"] / out["copied"], 5),
        "checkpoint_writes_per_record": round(out["checkpoint_writes"] / out["copied"], 5),
        **out.get("extra", {}),
    }
    benchmark.extra_info.update(info)
    return info


def report(name: str, info: dict) -> None:
    print(f"\n[{name}] " + ", ".join(f"{k}={v}" for k, v in info.items()))


def copy_loop(config, clients):
    stream = ResourceNames(config.prefix).stream
    ka, kb = clients.client("kinesis", Side.A), clients.client("kinesis", Side.B)
    calls = copied = 0
    for shard in shards_of(ka, stream):
        it = ka.get_shard_iterator(StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]  # fmt: skip
        calls += 2
        while it:
            r = ka.get_records(ShardIterator=it, Limit=10_000)
            calls += 1
            recs = r["Records"]
            for i in range(0, len(recs), 500):
                kb.put_records(StreamName=stream, Records=[{"Data": x["Data"], "PartitionKey": x["PartitionKey"]} for x in recs[i : i + 500]])  # fmt: skip
                calls += 1
            copied += len(recs)
            if not recs and r.get("MillisBehindLatest", 0) == 0:
                break
            it = r.get("NextShardIterator")
    return {"copied": copied, "calls": calls, "checkpoint_writes": 0}


def sample_like(config, clients):
    names = ResourceNames(config.prefix)
    ka, kb = clients.client("kinesis", Side.A), clients.client("kinesis", Side.B)
    ddb_a, ddb_b = clients.client("dynamodb", Side.A), clients.client("dynamodb", Side.B)
    calls = copied = writes = 0
    for shard in shards_of(ka, names.stream):
        it = ka.get_shard_iterator(StreamName=names.stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]  # fmt: skip
        calls += 2
        while it:
            r = ka.get_records(ShardIterator=it, Limit=10_000)
            ddb_a.get_item(
                TableName=names.active_region_table, Key={"streamName": {"S": names.stream}}
            )
            calls += 2
            for x in r["Records"]:
                kb.put_record(
                    StreamName=names.stream, Data=x["Data"], PartitionKey=x["PartitionKey"]
                )
                commit = json.loads(x["Data"])["commitTimestamp"]
                ddb_b.put_item(TableName=names.checkpoint_table, Item={"scope": {"S": "sample"}, "shardId": {"S": shard}, "commitTimestamp": {"S": commit}})  # fmt: skip
                calls += 2
                writes += 1
            copied += len(r["Records"])
            if not r["Records"] and r.get("MillisBehindLatest", 0) == 0:
                break
            it = r.get("NextShardIterator")
    return {"copied": copied, "calls": calls, "checkpoint_writes": writes}


def reference(config, clients):
    names = ResourceNames(config.prefix)
    reader = KinesisReader(clients.client("kinesis", Side.A), names.stream)
    sink = KinesisSink(clients.client("kinesis", Side.B))
    lookup = DynamoActiveRegion(clients.client("dynamodb", Side.A), names.active_region_table)
    store = DynamoCheckpointStore(
        clients.client("dynamodb", Side.B), names.checkpoint_table,
        checkpoint_scope("kinesis", names.stream, config.region_a),
    )  # fmt: skip
    rep = ShardReplicator(
        stream=names.stream, source_region=config.region_a, target_region=config.region_b,
        sender=PutRecordsSender(sink, names.stream),
        active=CachedActiveRegion(lookup, 1.0, time.monotonic),
        checkpoints=store, dead_letters=None, clock_ms=lambda: int(time.time() * 1000),
    )  # fmt: skip
    for info in reader.list_shards():
        it = reader.iterator(info.shard_id, None)
        while it:
            read_at = int(time.time() * 1000)
            r = reader.read(info.shard_id, it, 10_000)
            tip = r.millis_behind_latest == 0
            if not r.records:
                if tip:
                    break
            else:
                rep.process(info.shard_id, r.records, tip_read_at_ms=read_at if tip else None)
            it = r.next_iterator
    c = rep.metrics.counters
    calls = reader.calls + sink.calls + store.calls + lookup.calls
    return {
        "copied": c["records_copied"],
        "calls": calls,
        "checkpoint_writes": c["checkpoint_writes"],
    }


def shipped(behaviour: str, records: int):
    """``xrh replicate`` as built by its command (replicator.runners.cli.build), timed from the
    start of the poller until it has copied every record (its drain wait is not counted)."""

    def body(config, clients):
        from replicator.runners.cli import add_arguments, build
        from xrh.config import add_common_options

        parser = argparse.ArgumentParser()
        add_common_options(parser)
        add_arguments(parser)
        args = parser.parse_args(["--side", "a", "--worker-id", "bench", "--behaviour", behaviour])
        run_dir = Path(tempfile.mkdtemp(prefix="xrh-bench-"))  # logs and metrics, removed below
        poller, files = build(args, config, run_dir, "bench")
        rep = poller.replicator
        sink = rep.sender.sink if behaviour == "reference" else rep.sink
        lookup = rep.active.lookup if behaviour == "reference" else rep.active
        row = getattr(rep, "watermark_row", None)

        def calls() -> dict[str, int]:
            return {
                "source_reads": poller.reader.calls,
                "target_puts": sink.calls,
                "checkpoint": poller.checkpoints.calls + (row.calls if row else 0),
                "active_region": lookup.calls,
                "leases": poller.leases.calls,
            }

        thread = threading.Thread(target=poller.run, name="bench-poller")
        t0 = time.perf_counter()
        thread.start()
        try:
            deadline = time.monotonic() + 600
            while rep.metrics.counters["records_copied"] < records and time.monotonic() < deadline:
                time.sleep(0.01)
            seconds = time.perf_counter() - t0
            at_end = calls()
        finally:
            poller.request_stop()
            thread.join(timeout=60)
            files.close()
            shutil.rmtree(run_dir, ignore_errors=True)
        c = rep.metrics.counters
        return {
            "copied": c["records_copied"],
            "calls": sum(at_end.values()),
            "checkpoint_writes": c["checkpoint_writes"],
            "seconds": seconds,
            "extra": {
                "calls_by_kind": at_end,
                "batches": c["batches"],
                "claims": c["claims"],
                "dead_lettered": c["dead_lettered"],
            },
        }

    return body


def ratios(benchmark, info: dict) -> None:
    for name, key in (("copy_loop", "ratio_vs_copy_loop"), ("sample", "ratio_vs_sample")):
        if name in RESULTS:
            benchmark.extra_info[key] = info[key] = round(
                info["records_per_s"] / RESULTS[name]["records_per_s"], 3
            )


def test_bench_copy_loop(benchmark, endpoint) -> None:
    RESULTS["copy_loop"] = run_once(benchmark, endpoint, RECORDS, copy_loop)
    report("copy loop", RESULTS["copy_loop"])


def test_bench_sample_like(benchmark, endpoint) -> None:
    RESULTS["sample"] = run_once(benchmark, endpoint, SAMPLE_RECORDS, sample_like)
    report("sample-like baseline", RESULTS["sample"])


def test_bench_reference_replicator(benchmark, endpoint) -> None:
    info = run_once(benchmark, endpoint, RECORDS, reference)
    ratios(benchmark, info)
    RESULTS["reference"] = info
    report("reference core", info)


def test_bench_shipped_xrh_replicate(benchmark, endpoint) -> None:
    """The shipped path; its ratio is to the bare copy loop measured in the same run."""
    if "copy_loop" not in RESULTS:  # run alone: measure the copy loop first, untimed by pytest
        config, clients = fresh(endpoint, RECORDS)
        t0 = time.perf_counter()
        loop = copy_loop(config, clients)
        seconds = time.perf_counter() - t0
        destroy(config)
        RESULTS["copy_loop"] = {"records_per_s": round(loop["copied"] / seconds, 1)}
        benchmark.extra_info["copy_loop_records_per_s"] = RESULTS["copy_loop"]["records_per_s"]
    info = run_once(benchmark, endpoint, RECORDS, shipped("reference", RECORDS))
    ratios(benchmark, info)
    RESULTS["shipped_reference"] = info
    report("xrh replicate (shipped)", info)


def test_bench_shipped_sample_behaviour(benchmark, endpoint) -> None:
    info = run_once(benchmark, endpoint, SAMPLE_RECORDS, shipped("sample", SAMPLE_RECORDS))
    ratios(benchmark, info)
    report("xrh replicate --behaviour sample", info)
