"""Load generator benchmarks (run on demand: ``pytest tests/perf/test_loadgen_bench.py``).

Figures go to ``benchmark.extra_info`` (``records_per_s``); nothing asserts wall-clock time.
DESIGN.md targets: at least 20,000 records/s from one core against a fast local endpoint, and a
requested constant rate held within 2%.
"""

from __future__ import annotations

import multiprocessing
import random
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from loadgen.keyspace import KeyspaceSpec
from loadgen.kinesis_sink import KinesisSink
from loadgen.ledger import LedgerWriter
from loadgen.producers import Pacer, Producer, ProducerSettings, step
from loadgen.templates import DEFAULT_TEMPLATE, compile_template
from xrh.aws import AwsClients
from xrh.config import Side, parse_config
from xrh.resources import ResourceNames

SECONDS = 5.0


# ------------------------------------------------------------------ do-nothing endpoint


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's pool expects

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        n = body.count(b'"PartitionKey"')
        records = ",".join(['{"SequenceNumber":"1","ShardId":"shardId-000000000000"}'] * n)
        answer = ('{"FailedRecordCount":0,"Records":[' + records + "]}").encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


def _serve(port_queue: multiprocessing.Queue) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    port_queue.put(server.server_address[1])
    server.serve_forever()


@pytest.fixture(scope="module")
def null_endpoint():
    """A separate process answering every PutRecords with success (the client-side ceiling)."""
    ctx = multiprocessing.get_context("spawn")
    ports: multiprocessing.Queue = ctx.Queue()
    proc = ctx.Process(target=_serve, args=(ports,), daemon=True)
    proc.start()
    try:
        yield f"http://127.0.0.1:{ports.get(timeout=20)}"
    finally:
        proc.terminate()
        proc.join(10)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    from xrh.endpoint import EmbeddedEndpoint
    from xrh.provision import provision

    runs = tmp_path_factory.mktemp("runs")
    config = parse_config(["--runs-dir", str(runs), "--prefix", "bench"], environ={})
    with EmbeddedEndpoint(config) as ep:
        provision(ep.config)
        yield ep.config


def _producer(config, tmp: Path, batch: int = 500) -> tuple[Producer, LedgerWriter]:
    writer = LedgerWriter(tmp / "ledger.sqlite")
    clients = AwsClients(config, max_pool_connections=4, max_attempts=1)
    producer = Producer(
        "b0",
        compile_template(DEFAULT_TEMPLATE).bind(rng=random.Random(1)),
        KeyspaceSpec(size=10_000).build(random.Random(2)),
        KinesisSink(clients.client("kinesis", Side.A)),
        writer,
        ProducerSettings(ResourceNames(config.prefix).stream, config.region_a, batch_size=batch),
    )
    return producer, writer


def _flat_out(producer: Producer, seconds: float) -> float:
    producer.add(500)  # warm up the client (connection, signing caches)
    producer.flush()
    start_records = producer.stats.acknowledged
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        producer.add(producer.settings.batch_size)
        producer.flush()
    elapsed = time.perf_counter() - start
    return (producer.stats.acknowledged - start_records) / elapsed


# ------------------------------------------------------------------ benchmarks


def test_template_render_rate(benchmark):
    renderer = compile_template(DEFAULT_TEMPLATE).bind(rng=random.Random(1))
    render = renderer.render
    now = int(time.time() * 1000)

    def thousand() -> None:
        for i in range(1000):
            render(i, "p-000000001", now + i)

    benchmark(thousand)
    benchmark.extra_info["records_per_s"] = round(1000 / benchmark.stats.stats.mean)


def test_producer_against_null_endpoint(benchmark, null_endpoint, tmp_path):
    config = parse_config(["--endpoint-url", null_endpoint], environ={})
    producer, writer = _producer(config, tmp_path)
    rate = benchmark.pedantic(_flat_out, args=(producer, SECONDS), rounds=1, iterations=1)
    writer.close()
    benchmark.extra_info["records_per_s"] = round(rate)
    print(f"\nproducer -> do-nothing endpoint: {rate:,.0f} records/s")


def test_producer_against_embedded_endpoint(benchmark, embedded, tmp_path):
    producer, writer = _producer(embedded, tmp_path)
    rate = benchmark.pedantic(_flat_out, args=(producer, SECONDS), rounds=1, iterations=1)
    writer.close()
    benchmark.extra_info["records_per_s"] = round(rate)
    print(f"\nproducer -> embedded endpoint: {rate:,.0f} records/s")


@pytest.mark.parametrize("requested", [2000.0, 10000.0])
def test_constant_rate_achieved_vs_requested(benchmark, null_endpoint, tmp_path, requested):
    config = parse_config(["--endpoint-url", null_endpoint], environ={})
    producer, writer = _producer(config, tmp_path)

    def run() -> float:
        pacer = Pacer(requested)
        start = time.monotonic()
        while time.monotonic() - start < SECONDS:
            wait = step(producer, pacer)
            if wait > 0:
                time.sleep(wait)
        producer.flush()
        return producer.stats.records / (time.monotonic() - start)

    achieved = benchmark.pedantic(run, rounds=1, iterations=1)
    writer.close()
    benchmark.extra_info.update(
        requested_per_s=requested, records_per_s=round(achieved),
        achieved_ratio=round(achieved / requested, 4),
    )  # fmt: skip
    print(
        f"\nrequested {requested:,.0f}/s, achieved {achieved:,.0f}/s ({achieved / requested:.2%})"
    )


def test_producer_without_network(benchmark, tmp_path):
    """Rendering, the shared engine and the ledger alone: what the producer costs per record."""
    from replicator.core.putrecords import EntryResult

    class NullSink:
        def put_records(self, stream, entries):
            return [EntryResult("shardId-000000000000", "1")] * len(entries)

    writer = LedgerWriter(tmp_path / "ledger.sqlite")
    producer = Producer(
        "b0",
        compile_template(DEFAULT_TEMPLATE).bind(rng=random.Random(1)),
        KeyspaceSpec(size=10_000).build(random.Random(2)),
        NullSink(),
        writer,
        ProducerSettings("s", "us-east-1"),
    )
    rate = benchmark.pedantic(_flat_out, args=(producer, 2.0), rounds=1, iterations=1)
    writer.close()
    benchmark.extra_info["records_per_s"] = round(rate)
    print(f"\nproducer without network: {rate:,.0f} records/s")
