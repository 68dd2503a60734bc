"""Load generator benchmarks (run on demand: ``pytest tests/perf/test_loadgen_bench.py``).

Figures go to ``benchmark.extra_info`` (``records_per_s``); nothing asserts wall-clock time.
DESIGN.md targets: at least 20,000 records/s from one core against a fast local endpoint, and a
requested constant rate held within 2%.

"One core" is taken literally where the machine allows it: while a producer is measured, this
process (producer, ledger writer thread, botocore) is pinned to CPU 0 and the do-nothing
endpoint runs in its own process pinned to CPU 1. Besides wall-clock ``records_per_s`` each
figure carries ``cpu_us_per_record`` (this process's CPU time per record), which holds up
better on a shared machine, and ``records_per_cpu_s`` (what one fully used core would give).

The do-nothing endpoint is a minimal asyncio HTTP/1.1 server (keep-alive, Content-Length
bodies, a canned PutRecords answer with one entry per ``"PartitionKey"`` in the body). The
earlier one, on ``http.server``, was itself the limit (about 7,000 records/s), so it measured
the server, not the client; :func:`test_fast_endpoint_alone` measures this one by itself to
show it is not the limit.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loadgen.keyspace import KeyspaceSpec
from loadgen.kinesis_sink import KinesisSink
from loadgen.ledger import LedgerWriter
from loadgen.producers import Pacer, Producer, ProducerSettings, step
from loadgen.templates import DEFAULT_TEMPLATE, compile_template
from replicator.core.putrecords import EntryResult, PutEntry
from xrh.aws import AwsClients
from xrh.config import Side, parse_config
from xrh.processes import stop_process
from xrh.resources import ResourceNames

SECONDS = 5.0

# ------------------------------------------------------------------ do-nothing endpoint

_SERVER = r"""
import asyncio, sys

OK = b'{"SequenceNumber":"49590338271490256608559692538361571095921575989136588898",' \
     b'"ShardId":"shardId-000000000000"}'
SUMMARY = (b'{"StreamDescriptionSummary":{"StreamName":"bench","StreamARN":"arn:aws:kinesis:'
           b'us-east-1:123456789012:stream/bench","StreamStatus":"ACTIVE","OpenShardCount":1,'
           b'"RetentionPeriodHours":24,"StreamCreationTimestamp":0,"EnhancedMonitoring":[]}}')
SHARDS = (b'{"Shards":[{"ShardId":"shardId-000000000000","HashKeyRange":{"StartingHashKey":"0",'
          b'"EndingHashKey":"340282366920938463463374607431768211455"},'
          b'"SequenceNumberRange":{"StartingSequenceNumber":"0"}}]}')
answers = {}

def answer(target, body):
    if target.endswith(b".PutRecords"):
        n = body.count(b'"PartitionKey"')
        out = answers.get(n)
        if out is None:
            out = answers[n] = (b'{"FailedRecordCount":0,"Records":['
                                + b",".join([OK] * n) + b"]}")
        return out
    if target.endswith(b".ListShards"):
        return SHARDS
    if target.endswith(b".DescribeStreamSummary"):
        return SUMMARY
    return b"{}"

async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length, target = 0, b""
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"x-amz-target":
                    target = value.strip()
            body = await reader.readexactly(length) if length else b""
            out = answer(target, body)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(out), out))
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    finally:
        writer.close()

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0, limit=2**24)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()

asyncio.run(main())
"""


def _cpus() -> tuple[set[int], set[int]] | None:
    """(client CPUs, server CPUs) when there are at least two to split, else None."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    return ({cpus[0]}, {cpus[1]}) if len(cpus) >= 2 else None


@contextlib.contextmanager
def one_core():
    """Pin this process to one CPU for a measurement (restored afterwards)."""
    split = _cpus()
    if split is None:
        yield False
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, split[0])
    try:
        yield True
    finally:
        os.sched_setaffinity(0, before)


@pytest.fixture(scope="module")
def null_endpoint():
    """A separate process answering every PutRecords with success (the client-side ceiling)."""
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", _SERVER], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    try:
        split = _cpus()
        if split is not None:
            os.sched_setaffinity(proc.pid, split[1])
        port = int(proc.stdout.readline())  # type: ignore[union-attr]
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)


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


def _flat_out(producer: Producer, writer: LedgerWriter, seconds: float) -> dict[str, float]:
    """Send batches of ``batch_size`` as fast as possible for ``seconds``, on one core; the
    window ends when the ledger writer has stored every row (its cost counts too)."""
    producer.add(500)  # warm up the client (connection, signing caches)
    producer.flush()
    with one_core() as pinned:
        start_records = producer.stats.acknowledged
        start, cpu = time.perf_counter(), time.process_time()
        while time.perf_counter() - start < seconds:
            producer.add(producer.settings.batch_size)
            producer.flush()
        summary = writer.close()
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    records = producer.stats.acknowledged - start_records
    assert summary.by_status.get("ok", 0) == producer.stats.acknowledged  # one row per entry
    return {
        "records_per_s": round(records / elapsed),
        "cpu_us_per_record": round(cpu / records * 1e6, 2),
        "records_per_cpu_s": round(records / cpu),
        "cpu_cores_used": round(cpu / elapsed, 2),
        "pinned_to_one_cpu": pinned,
    }


def _report(benchmark, label: str, figures: dict[str, float]) -> None:
    benchmark.extra_info.update(figures)
    shown = (f"{k} {v}" if isinstance(v, bool) else f"{k} {v:,}" for k, v in figures.items())
    print(f"\n{label}: " + ", ".join(shown))


class NullSink:
    """Every entry written, no network."""

    def put_records(self, stream, entries):
        return [EntryResult("shardId-000000000000", "1")] * len(entries)


class CountingLedger:
    """A ledger sink that stores nothing (to price the producer without SQLite)."""

    rows = 0

    def register(self, producer: str) -> None: ...

    def write(self, rows) -> None:
        self.rows += len(rows)

    def final(self, producer: str) -> None: ...


def _offline_producer(ledger) -> Producer:
    return Producer(
        "b0",
        compile_template(DEFAULT_TEMPLATE).bind(rng=random.Random(1)),
        KeyspaceSpec(size=10_000).build(random.Random(2)),
        NullSink(),
        ledger,
        ProducerSettings("s", "us-east-1"),
    )


def _put_records_body(n: int) -> bytes:
    import base64

    data = base64.b64encode(b'{"key": 3174940031, "commitTimestamp": '
                            b'"2021-11-10T00:48:30.123Z", "trace": "b0-000000042"}').decode()  # fmt: skip
    records = [{"Data": data, "PartitionKey": str(1_000_000_000 + i)} for i in range(n)]
    return json.dumps({"Records": records, "StreamName": "bench"}).encode()


# ------------------------------------------------------------------ benchmarks


def test_fast_endpoint_alone(benchmark, null_endpoint):
    """The do-nothing endpoint by itself: requests/s it answers for 500-record PutRecords from
    one keep-alive connection (a raw socket client, far cheaper than botocore)."""
    port = int(null_endpoint.rsplit(":", 1)[1])
    body = _put_records_body(500)
    request = (
        f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: application/x-amz-json-1.1\r\n"
        "X-Amz-Target: Kinesis_20131202.PutRecords\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body

    def run() -> dict[str, float]:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock, one_core():
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            reader = sock.makefile("rb")
            requests, entries = 0, 0
            start = time.perf_counter()
            while time.perf_counter() - start < 3.0:
                sock.sendall(request)
                length = 0
                while (line := reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                answer = json.loads(reader.read(length))
                entries += len(answer["Records"])
                requests += 1
            elapsed = time.perf_counter() - start
        assert entries == 500 * requests  # it answered every entry
        return {
            "server_requests_per_s": round(requests / elapsed),
            "records_per_s": round(entries / elapsed),
        }

    _report(benchmark, "do-nothing endpoint alone (500-record PutRecords)",
            benchmark.pedantic(run, rounds=1, iterations=1))  # fmt: skip


def test_template_render_rate(benchmark):
    renderer = compile_template(DEFAULT_TEMPLATE).bind(rng=random.Random(1))
    render = renderer.render
    now = int(time.time() * 1000)

    def thousand() -> None:
        for i in range(1000):
            render(i, "p-000000001", now + i)

    benchmark(thousand)
    benchmark.extra_info["records_per_s"] = round(1000 / benchmark.stats.stats.mean)


def test_cpu_cost_breakdown(benchmark, null_endpoint, tmp_path):
    """CPU per record of each part of the producer path, on one core: ours (render, entries,
    the shared engine, ledger rows), the ledger writer (SQLite), botocore (serialise, sign,
    HTTP, parse) for a 500-record PutRecords against the do-nothing endpoint."""

    def run() -> dict[str, float]:
        n = 100_000
        ledger = CountingLedger()
        producer = _offline_producer(ledger)
        with one_core():
            cpu = time.process_time()
            for _ in range(n // 500):
                producer.add(500)
                producer.flush()
            ours = (time.process_time() - cpu) / n
        assert ledger.rows == n
        rows = [(f"b0-{i:09d}", "b0", i, 1, "kinesis", "us-east-1", "s", str(i % 10_000),
                 str(i % 10_000), 1_700_000_000_000, "put", "ok", "shardId-000000000000",
                 str(i), 1_700_000_000_000, 1_700_000_000_001, None) for i in range(n)]  # fmt: skip
        writer = LedgerWriter(tmp_path / "ledger.sqlite")
        with one_core():
            cpu = time.process_time()
            for i in range(0, n, 500):
                writer.write(rows[i : i + 500])
            writer.close()
            ledger_cost = (time.process_time() - cpu) / n
        config = parse_config(["--endpoint-url", null_endpoint], environ={})
        sink = KinesisSink(AwsClients(config, max_pool_connections=4, max_attempts=1)
                           .client("kinesis", Side.A))  # fmt: skip
        render = compile_template(DEFAULT_TEMPLATE).bind(rng=random.Random(1)).render
        now = int(time.time() * 1000)
        batch = [PutEntry(str(k), render(k, f"b0-{k:09d}", now).encode())
                 for k in range(1_000_000_000, 1_000_000_500)]  # fmt: skip
        sink.put_records("s", batch)  # warm up
        calls = 100
        with one_core():
            cpu = time.process_time()
            for _ in range(calls):
                results = sink.put_records("s", batch)
            botocore = (time.process_time() - cpu) / (calls * 500)
        assert len(results) == 500
        total = ours + ledger_cost + botocore
        return {
            "ours_us_per_record": round(ours * 1e6, 2),
            "ledger_writer_us_per_record": round(ledger_cost * 1e6, 2),
            "botocore_us_per_record": round(botocore * 1e6, 2),
            "botocore_ms_per_500_call": round(botocore * 500 * 1e3, 2),
            "total_us_per_record": round(total * 1e6, 2),
            "records_per_cpu_s_if_serial": round(1 / total),
        }

    _report(benchmark, "CPU per record (one core)", benchmark.pedantic(run, rounds=1, iterations=1))


def test_producer_without_network(benchmark, tmp_path):
    """Rendering, the shared engine and the ledger alone: what the producer costs per record."""
    writer = LedgerWriter(tmp_path / "ledger.sqlite")
    producer = _offline_producer(writer)
    figures = benchmark.pedantic(_flat_out, args=(producer, writer, 3.0), rounds=1, iterations=1)
    _report(benchmark, "producer without network", figures)


def test_producer_against_null_endpoint(benchmark, null_endpoint, tmp_path):
    config = parse_config(["--endpoint-url", null_endpoint], environ={})
    producer, writer = _producer(config, tmp_path)
    figures = benchmark.pedantic(
        _flat_out, args=(producer, writer, SECONDS), rounds=1, iterations=1
    )
    _report(benchmark, "producer -> do-nothing endpoint", figures)


def test_producer_against_embedded_endpoint(benchmark, embedded, tmp_path):
    producer, writer = _producer(embedded, tmp_path)
    figures = benchmark.pedantic(
        _flat_out, args=(producer, writer, SECONDS), rounds=1, iterations=1
    )
    _report(benchmark, "producer -> embedded endpoint (moto)", figures)


@pytest.mark.parametrize("requested", [2000.0, 10000.0, 20000.0])
def test_constant_rate_achieved_vs_requested(benchmark, null_endpoint, tmp_path, requested):
    """A constant rate through Pacer and step(), as a Locust user runs it. Records count when
    the pacer releases them; the window ends at the deadline (a sleep never overshoots it)."""
    config = parse_config(["--endpoint-url", null_endpoint], environ={})
    producer, writer = _producer(config, tmp_path)

    def run() -> float:
        with one_core():
            pacer = Pacer(requested)
            start = time.monotonic()
            deadline = start + SECONDS
            while (now := time.monotonic()) < deadline:
                wait = step(producer, pacer)
                if wait > 0:
                    time.sleep(min(wait, deadline - now))
            n = pacer.take(producer.settings.batch_size * 1000)  # what fell due at the end
            producer.add(n)
            elapsed = time.monotonic() - start
            producer.flush()
        return producer.stats.records / elapsed

    achieved = benchmark.pedantic(run, rounds=1, iterations=1)
    writer.close()
    assert producer.stats.acknowledged == producer.stats.records
    _report(benchmark, f"constant rate {requested:,.0f}/s", {
        "requested_per_s": requested, "records_per_s": round(achieved),
        "achieved_ratio": round(achieved / requested, 4),
    })  # fmt: skip
