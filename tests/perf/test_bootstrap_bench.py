"""Bootstrap copy throughput on the embedded endpoint, against a bare parallel copy loop.

- ``bare``: one thread per segment, Scan (``Segment``/``TotalSegments``, the same page size)
  -> BatchWriteItem of 25 in turn, unprocessed items sent again; no state, no checks;
- ``bare_concurrent``: the same with the chunks of a page written concurrently, as many at
  once as the bootstrap's writer (so the comparison also shows what the concurrency buys);
- ``bootstrap``: the shipped copy as ``xrh replicate --pipeline dynamodb`` builds it
  (:func:`replicator.runners.table_cli.build`): state row taken and renewed, segment rows after
  every acknowledged page, the lease fence before every write, the BatchWriter, progress.

Same segments, same page size, same endpoint, same run; each on a freshly provisioned pipeline
whose table A was loaded before the timer starts. Figures (items/s, AWS calls, the ratio to the
bare loop) go to ``benchmark.extra_info`` and are printed with ``-s``; nothing is asserted on
time. Run: ``pytest tests/perf/test_bootstrap_bench.py -s`` (``XRH_BENCH_ITEMS`` to resize).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from replicator_bench_setup import embedded_endpoint, provisioned

from xrh.aws import AwsClients
from xrh.config import HarnessConfig, Side
from xrh.endpoint import EmbeddedEndpoint
from xrh.provision import destroy
from xrh.resources import ResourceNames

ITEMS = int(os.environ.get("XRH_BENCH_ITEMS", "10000"))
SEGMENTS = 4
PAGE = 1000
RESULTS: dict[str, dict] = {}


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory) -> Iterator[EmbeddedEndpoint]:
    yield from embedded_endpoint(tmp_path_factory)


def fresh(endpoint: EmbeddedEndpoint) -> HarnessConfig:
    config = provisioned(endpoint, "bbench", "dynamodb")
    prefix = config.prefix
    da = AwsClients(config, max_pool_connections=8).client("dynamodb", Side.A)
    table = ResourceNames(prefix).items_table

    def load(start: int) -> None:
        left = {table: [
            {"PutRequest": {"Item": {"pk": {"S": f"k{i:07d}"}, "v": {"N": str(i)},
                                     "commitTimestamp": {"S": "2026-01-01T00:00:00.000Z"},
                                     "pad": {"S": "x" * 64}}}}
            for i in range(start, min(start + 25, ITEMS))
        ]}  # fmt: skip
        for _ in range(100):
            left = da.batch_write_item(RequestItems=left).get("UnprocessedItems") or {}
            if not left:
                return

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(load, range(0, ITEMS, 25)))
    return config


def count(client, table: str) -> int:
    n, kwargs = 0, {"TableName": table, "Select": "COUNT"}
    for _ in range(10_000):
        page = client.scan(**kwargs)
        n += page["Count"]
        if "LastEvaluatedKey" not in page:
            return n
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    raise AssertionError("scan did not end")


def bare_loop(in_flight: int):
    def body(config: HarnessConfig) -> dict:
        table = ResourceNames(config.prefix).items_table
        clients = AwsClients(config, max_attempts=1, max_pool_connections=SEGMENTS + in_flight + 4)
        da, db = clients.client("dynamodb", Side.A), clients.client("dynamodb", Side.B)
        calls = [0] * SEGMENTS
        pool = ThreadPoolExecutor(in_flight) if in_flight > 1 else None

        def write(chunk: list[dict]) -> int:
            n, left = 0, {table: chunk}
            while left:
                n += 1
                left = db.batch_write_item(RequestItems=left).get("UnprocessedItems") or {}
            return n

        def segment(s: int) -> int:
            copied, kwargs = 0, {"TableName": table, "Segment": s, "TotalSegments": SEGMENTS, "Limit": PAGE}  # fmt: skip
            while True:
                page = da.scan(**kwargs)
                calls[s] += 1
                wire = [{"PutRequest": {"Item": i}} for i in page["Items"]]
                chunks = [wire[i : i + 25] for i in range(0, len(wire), 25)]
                if pool is None:
                    calls[s] += sum(write(c) for c in chunks)
                else:
                    calls[s] += sum(pool.map(write, chunks))
                copied += len(wire)
                if "LastEvaluatedKey" not in page:
                    return copied
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

        t0 = time.perf_counter()
        with ThreadPoolExecutor(SEGMENTS) as segs:
            copied = sum(segs.map(segment, range(SEGMENTS)))
        seconds = time.perf_counter() - t0
        if pool is not None:
            pool.shutdown()
        return {"copied": copied, "seconds": seconds, "calls": sum(calls)}

    return body


def shipped_bootstrap(config: HarnessConfig) -> dict:
    from replicator.runners.cli import add_arguments
    from replicator.runners.table_cli import build
    from xrh.config import add_common_options

    parser = argparse.ArgumentParser()
    add_common_options(parser)
    add_arguments(parser)
    args = parser.parse_args(
        ["--pipeline", "dynamodb", "--side", "a", "--worker-id", "bench",
         "--scan-segments", str(SEGMENTS), "--scan-page-size", str(PAGE)]
    )  # fmt: skip
    run_dir = Path(tempfile.mkdtemp(prefix="xrh-bench-"))
    try:
        run = build(args, config, run_dir, "bench")
        run.bootstrap.on_progress = lambda p: None  # no display in the measurement
        b = run.bootstrap
        t0 = time.perf_counter()
        result = b.run()
        seconds = time.perf_counter() - t0
        b.writer.close()
        run.applier.close()
        run.files.close()
        calls = b.scanner.calls + b.writer.sink.calls
        return {
            "copied": result.copied_here,
            "seconds": seconds,
            "calls": calls,
            "extra": {
                "state_and_segment_row_calls": b.store.calls,
                "outcome": result.outcome.value,
                "copy_seconds_recorded": result.copy_seconds,
            },
        }
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def run_once(benchmark, endpoint, name: str, body) -> dict:
    out: dict = {}

    def setup():
        out["config"] = fresh(endpoint)
        return (), {}

    def target():
        out.update(body(out["config"]))

    benchmark.pedantic(target, setup=setup, rounds=1, iterations=1)
    config = out["config"]
    db = AwsClients(config).client("dynamodb", Side.B)
    assert count(db, ResourceNames(config.prefix).items_table) == ITEMS  # a complete copy
    destroy(config)
    info = {
        "items": out["copied"],
        "seconds": round(out["seconds"], 3),
        "items_per_s": round(out["copied"] / out["seconds"], 1),
        "aws_calls_per_item": round(out["calls"] / out["copied"], 4),
        **out.get("extra", {}),
    }
    RESULTS[name] = info
    if name != "bare" and "bare" in RESULTS:
        info["ratio_to_bare"] = round(info["items_per_s"] / RESULTS["bare"]["items_per_s"], 3)
    benchmark.extra_info.update(info)
    print(f"\n[{name}] " + ", ".join(f"{k}={v}" for k, v in info.items()))
    return info


def test_bare_scan_batch_write_loop(benchmark, endpoint) -> None:
    run_once(benchmark, endpoint, "bare", bare_loop(1))


def test_bare_loop_with_concurrent_chunks(benchmark, endpoint) -> None:
    run_once(benchmark, endpoint, "bare_concurrent", bare_loop(max(4, 2 * SEGMENTS)))


def test_bootstrap_copy(benchmark, endpoint) -> None:
    info = run_once(benchmark, endpoint, "bootstrap", shipped_bootstrap)
    assert info["outcome"] == "copied"
