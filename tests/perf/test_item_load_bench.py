"""Item producer benchmarks (on demand: ``pytest tests/perf/test_item_load_bench.py -s``).

Table writes per second from one producer of the dynamodb pipeline against the embedded
endpoint (moto, region A's items table): the default op mix (put 60, update 30, delete 10;
a quarter of puts and deletes through BatchWriteItem), all single-item calls, and all
BatchWriteItem; plus the bootstrap loader (BatchWriteItem of 25 from 4 threads). Figures go
to ``benchmark.extra_info``; nothing asserts wall-clock time.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from loadgen.bootstrap import load_bootstrap
from loadgen.dynamodb_sink import DynamoItemSink
from loadgen.item_writes import parse_ops
from loadgen.items import ItemProducer, ItemSettings
from loadgen.keyspace import KeyspaceSpec
from loadgen.ledger import LedgerWriter
from loadgen.options import load_options
from loadgen.templates import DEFAULT_TEMPLATE, compile_template
from xrh.aws import AwsClients
from xrh.config import Side, parse_config
from xrh.resources import ResourceNames

SECONDS = 5.0


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    from xrh.endpoint import EmbeddedEndpoint
    from xrh.provision import provision

    runs = tmp_path_factory.mktemp("runs")
    config = parse_config(["--runs-dir", str(runs), "--prefix", "bench", "--pipeline", "dynamodb"],
                          environ={})  # fmt: skip
    with EmbeddedEndpoint(config) as ep:
        provision(ep.config)
        yield ep.config


def _producer(config, tmp: Path, ops: str, share: float) -> tuple[ItemProducer, LedgerWriter]:
    writer = LedgerWriter(tmp / "ledger.sqlite")
    clients = AwsClients(config, max_pool_connections=4, max_attempts=1)
    rng = random.Random(1)
    settings = ItemSettings(ResourceNames(config.prefix).items_table, config.region_a,
                            ops=parse_ops(ops), batch_share=share)  # fmt: skip
    producer = ItemProducer(
        "b0", compile_template(DEFAULT_TEMPLATE).bind(rng=rng),
        KeyspaceSpec(size=100_000).build(rng), DynamoItemSink(clients.client("dynamodb", Side.A)),
        writer, settings, random=rng.random,
    )  # fmt: skip
    return producer, writer


def _flat_out(producer: ItemProducer, writer: LedgerWriter, seconds: float) -> dict[str, float]:
    producer.add(50)  # warm up the client
    producer.flush()
    start_writes, start_requests = producer.stats.acknowledged, producer.stats.requests
    start, cpu = time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        producer.add(producer.settings.batch_size)
        producer.flush()
    summary = writer.close()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    writes = producer.stats.acknowledged - start_writes
    requests = producer.stats.requests - start_requests
    assert summary.by_status.get("ok", 0) == producer.stats.acknowledged
    return {
        "writes_per_s": round(writes / elapsed),
        "requests_per_s": round(requests / elapsed),
        "writes_per_request": round(writes / requests, 2),
        "client_cpu_us_per_write": round(cpu / writes * 1e6, 1),
    }


def _report(benchmark, label: str, figures: dict[str, float]) -> None:
    benchmark.extra_info.update(figures)
    print(f"\n{label}: " + ", ".join(f"{k} {v:,}" for k, v in figures.items()))


@pytest.mark.parametrize(
    ("label", "ops", "share"),
    [
        ("default mix", "put=60,update=30,delete=10", 0.25),
        ("single-item calls only", "put=60,update=30,delete=10", 0.0),
        ("BatchWriteItem only", "put=90,delete=10", 1.0),
    ],
)
def test_item_writes_per_second_one_producer(benchmark, embedded, tmp_path, label, ops, share):
    producer, writer = _producer(embedded, tmp_path, ops, share)
    figures = benchmark.pedantic(
        _flat_out, args=(producer, writer, SECONDS), rounds=1, iterations=1
    )
    _report(benchmark, f"item producer -> embedded endpoint, {label}", figures)


def test_bootstrap_load_items_per_second(benchmark, embedded, tmp_path):
    options = load_options(SimpleNamespace(pipeline="dynamodb", bootstrap_items="20000"))
    writer = LedgerWriter(tmp_path / "ledger.sqlite")

    def run():
        return load_bootstrap(embedded, options, writer, "bench", say=lambda _: None)

    result = benchmark.pedantic(run, rounds=1, iterations=1)
    writer.close()
    assert result.written == 20_000
    _report(benchmark, "bootstrap load (BatchWriteItem of 25, 4 threads)", {
        "items": result.written, "items_per_s": round(result.written / result.seconds),
        "requests": result.requests,
    })  # fmt: skip
