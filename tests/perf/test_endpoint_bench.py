"""Embedded endpoint: the write rate on a shard holding 200,000 records against an empty one.

Plain moto scans a shard's records on every write, so its rate falls as the shard fills; the
patched endpoint keeps an O(1) counter. Both are measured in the same run for comparison.
Figures go to ``extra_info``; nothing here asserts a wall-clock time.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from xrh.aws import AwsClients
from xrh.config import Side, parse_config
from xrh.endpoint import EmbeddedEndpoint

FILL = 200_000
BATCH = 500
MEASURE_BATCHES = 20


def _batch(tag: str, n: int) -> list[dict]:
    return [
        {"Data": f'{{"tag":"{tag}","n":{i}}}'.encode(), "PartitionKey": str(i)} for i in range(n)
    ]


def _write_rate(kinesis, stream: str, batches: int) -> float:
    records = _batch("measure", BATCH)
    started = time.perf_counter()
    for _ in range(batches):
        kinesis.put_records(StreamName=stream, Records=records)
    return batches * BATCH / (time.perf_counter() - started)


def _fill(kinesis, stream: str, count: int) -> None:
    records = _batch("fill", BATCH)
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(
            pool.map(
                lambda _: kinesis.put_records(StreamName=stream, Records=records),
                range(count // BATCH),
            )
        )


@pytest.mark.parametrize("patched", [True, False], ids=["patched", "plain-moto"])
def test_write_rate_on_large_shard(benchmark, tmp_path: Path, patched: bool) -> None:
    config = parse_config(["--runs-dir", str(tmp_path)], environ={})
    fill = FILL if patched else FILL // 4  # plain moto slows so much that a quarter tells the story
    with EmbeddedEndpoint(config, patched=patched) as endpoint:
        kinesis = AwsClients(endpoint.config, max_pool_connections=8, read_timeout=120).client(
            "kinesis", Side.A
        )
        kinesis.create_stream(StreamName="empty", ShardCount=1)
        kinesis.create_stream(StreamName="large", ShardCount=1)
        _write_rate(kinesis, "empty", 2)  # warm up the connection and the server
        empty_rate = _write_rate(kinesis, "empty", MEASURE_BATCHES)
        _fill(kinesis, "large", fill)
        large_rate = benchmark.pedantic(
            _write_rate, args=(kinesis, "large", MEASURE_BATCHES), rounds=1, iterations=1
        )
    benchmark.extra_info.update(
        {
            "patched": patched,
            "records_in_large_shard": fill,
            "empty_shard_records_per_s": round(empty_rate),
            "large_shard_records_per_s": round(large_rate),
            "large_over_empty": round(large_rate / empty_rate, 3),
        }
    )
    print(
        f"\npatched={patched} fill={fill}: empty {empty_rate:,.0f}/s, large {large_rate:,.0f}/s, ratio {large_rate / empty_rate:.2f}"
    )
