"""Verify benchmark: reconcile 1,000,000 records in source and target (store loaded directly),
peak memory at 250k versus 1M (each in its own process), reading from the embedded endpoint
(a smaller count, extrapolated per record), and verify's concurrent read of both regions
(:func:`verify.follower.catch_up` into a Store) against a bare concurrent GetRecords loop over
the same shards in the same run. Figures go to ``benchmark.extra_info``; nothing is asserted on
time. Run: ``pytest tests/perf/test_verify_bench.py -s``."""

from __future__ import annotations

import json
import os
import resource
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from bench_process import measure_in_subprocess, peak_rss_mb, serve

from verify.model import StoreSide, hash64, trace_ident
from verify.reconcile import reconcile
from verify.store import Store

T0 = 1_700_000_000_000
SHARDS = 4
KEYS = 10_000
RATE_PER_MS = 5  # 5,000 records/s produced


def build_store(path: Path, n: int) -> Store:
    """n records in source, target (lag 50..250 ms) and ledger; a claim per simulated second."""
    store = Store(path)
    seqs = [0] * SHARDS
    ledger = []
    for i in range(n):
        key = (i * 7919) % KEYS
        shard = key % SHARDS
        seqs[shard] += 1
        seq = str(49_000_000_000_000_000_000 + seqs[shard])
        trace = f"w{i % 8}-{i:09d}"
        ident = trace_ident(trace)
        arrival = T0 + i // RATE_PER_MS
        common = (ident, trace, str(key), str(key))
        dhash = hash64(trace.encode())
        shard_id = f"shardId-{shard:012d}"
        ord_ = seqs[shard]
        store.add_row(StoreSide.SOURCE,
                      (*common, shard_id, seq, ord_, arrival - 5, arrival, dhash))  # fmt: skip
        store.add_row(StoreSide.TARGET, (*common, shard_id, seq, ord_, arrival - 5,
                                         arrival + 50 + (i % 200), dhash))  # fmt: skip
        ledger.append((trace, "ok", str(key), str(key), arrival - 5, shard_id, seq, 1))
        if len(ledger) >= 5000:
            store.add_ledger_rows(ledger)
            ledger.clear()
    store.add_ledger_rows(ledger)
    for s in range(0, n // (RATE_PER_MS * 1000)):
        t = T0 + (s + 1) * 1000
        store.add_claim(t + 300, t - 1000, "bench", "claims.jsonl")
    store.flush()
    return store


def reconcile_store(store: Store) -> float:
    t0 = time.perf_counter()
    store.finalize()
    result = reconcile(store.db)
    elapsed = time.perf_counter() - t0
    assert result.anomalies["lost"].count == 0
    assert result.counts["source_records"] == result.counts["target_records"]
    return elapsed


def measure(n: int, path: Path) -> dict:
    t0 = time.perf_counter()
    store = build_store(path, n)
    load_s = time.perf_counter() - t0
    reconcile_s = reconcile_store(store)
    store.close()
    return {
        "records": n,
        "load_s": round(load_s, 2),
        "reconcile_s": round(reconcile_s, 2),
        "reconcile_records_per_s": round(n / reconcile_s),
        "peak_rss_mb": peak_rss_mb(),
    }


@pytest.mark.benchmark(group="verify")
def test_verify_reconcile_1m(benchmark, tmp_path):
    small = measure_in_subprocess(__file__, 250_000, tmp_path / "small.sqlite", timeout=600)
    large = measure_in_subprocess(__file__, 1_000_000, tmp_path / "large.sqlite", timeout=600)
    benchmark.extra_info.update(
        {
            "records": large["records"],
            "reconcile_s": large["reconcile_s"],
            "reconcile_records_per_s": large["reconcile_records_per_s"],
            "peak_rss_mb": large["peak_rss_mb"],
            "peak_rss_mb_250k": small["peak_rss_mb"],
            "reconcile_records_per_s_250k": small["reconcile_records_per_s"],
            "load_store_s": large["load_s"],
            "load_store_s_250k": small["load_s"],
        }
    )
    # The benchmark's own timing: one reconcile of the 1M store, re-opened as built above (the
    # indexes finalize builds are dropped; those kept up to date while reading stay).
    store_path = tmp_path / "large.sqlite"

    def setup():
        store = Store(store_path, fresh=False)
        for index in ("claims_t", "dead_letters_ident"):
            store.db.execute(f"DROP INDEX IF EXISTS {index}")
        return (store,), {}

    benchmark.pedantic(reconcile_store, setup=setup, rounds=1, iterations=1)
    print(json.dumps({"250k": small, "1M": large}))


READ_RECORDS = 20_000


def measure_read(tmp_path: Path) -> dict:
    """Read READ_RECORDS from each region of the embedded endpoint into a store (per record
    cost of reading both streams; extrapolated to 1M, stated as such)."""
    import json as _json

    from verify.kinesis_reader import read_stream
    from xrh.aws import AwsClients
    from xrh.config import Side, parse_config
    from xrh.endpoint import EmbeddedEndpoint
    from xrh.provision import provision
    from xrh.resources import ResourceNames

    base = parse_config(["--runs-dir", str(tmp_path / "runs"), "--prefix", "bench"], environ={})
    with EmbeddedEndpoint(base) as endpoint:
        config = base.with_endpoints(endpoint.url_of("a"), endpoint.url_of("b"))
        provision(config)
        clients = AwsClients(config)
        stream = ResourceNames(config.prefix).stream
        for side in (Side.A, Side.B):
            kinesis = clients.client("kinesis", side)
            for start in range(0, READ_RECORDS, 500):
                entries = [
                    {
                        "PartitionKey": str(i % 1000),
                        "Data": _json.dumps(
                            {"key": i % 1000, "commitTimestamp": "2026-01-01T00:00:00.000Z",
                             "trace": f"w0-{i:09d}"}
                        ).encode(),
                    }
                    for i in range(start, start + 500)
                ]  # fmt: skip
                kinesis.put_records(StreamName=stream, Records=entries)
        store = Store(tmp_path / "read.sqlite")
        t0 = time.perf_counter()
        for side, store_side in ((Side.A, StoreSide.SOURCE), (Side.B, StoreSide.TARGET)):
            stats = read_stream(
                clients.client("kinesis", side), stream,
                lambda r, _s=store_side: store.add(_s, r), deadline=time.monotonic() + 300,
            )  # fmt: skip
            assert stats.complete and stats.records == READ_RECORDS
        store.flush()
        read_s = time.perf_counter() - t0
        store.close()
    per_s = 2 * READ_RECORDS / read_s
    return {
        "read_records": 2 * READ_RECORDS,
        "read_s": round(read_s, 2),
        "read_records_per_s": round(per_s),
        "read_1m_extrapolated_s": round(2_000_000 / per_s, 1),
    }


@pytest.mark.benchmark(group="verify")
def test_verify_read_embedded(benchmark, tmp_path):
    figures = benchmark.pedantic(measure_read, args=(tmp_path,), rounds=1, iterations=1)
    benchmark.extra_info.update(figures)
    print(json.dumps(figures))


FOLLOW_RECORDS = int(os.environ.get("XRH_BENCH_FOLLOW_RECORDS", "100000"))  # per region
FOLLOW_ROUNDS = int(os.environ.get("XRH_BENCH_FOLLOW_ROUNDS", "2"))  # (a) then (b), repeated
FILL_THREADS = 4  # per region


def _payload(i: int) -> bytes:
    return json.dumps(
        {"key": i % 1000, "commitTimestamp": "2026-01-01T00:00:00.000Z", "trace": f"f0-{i:09d}"}
    ).encode()


def fill_both(clients: Any, stream: str, n: int) -> float:
    """The same ``n`` records into both regions: PutRecords of 500 from FILL_THREADS threads per
    region. Returns records/s over both."""
    from xrh.config import Side

    def put(client: Any, k: int) -> None:
        for start in range(k * 500, n, FILL_THREADS * 500):
            entries = [
                {"PartitionKey": str(i % 1000), "Data": _payload(i)}
                for i in range(start, min(n, start + 500))
            ]
            answer = client.put_records(StreamName=stream, Records=entries)
            assert answer.get("FailedRecordCount", 0) == 0

    threads = [
        threading.Thread(target=put, args=(clients.client("kinesis", side), k))
        for side in (Side.A, Side.B)
        for k in range(FILL_THREADS)
    ]
    t0 = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return 2 * n / (time.perf_counter() - t0)


def bare_read(clients: Any, stream: str) -> int:
    """(a) One thread per shard of both regions, GetRecords to the end: no parsing, no store."""
    from xrh.config import Side

    counts: list[int] = []

    def loop(client: Any, shard_id: str) -> None:
        iterator = client.get_shard_iterator(
            StreamName=stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        n = 0
        while iterator:
            page = client.get_records(ShardIterator=iterator, Limit=10_000)
            n += len(page["Records"])
            if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
                break
            iterator = page.get("NextShardIterator")
        counts.append(n)

    threads = []
    for side in (Side.A, Side.B):
        client = clients.client("kinesis", side)
        for shard in client.list_shards(StreamName=stream)["Shards"]:
            threads.append(threading.Thread(target=loop, args=(client, shard["ShardId"])))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts)


class BotocoreParsed:
    """A KinesisApi without botocore's event hooks: GetRecords parsed by botocore, as verify
    read before it parsed the answers itself."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def list_shards(self, **kwargs: Any) -> dict[str, Any]:
        return self.client.list_shards(**kwargs)

    def get_shard_iterator(self, **kwargs: Any) -> dict[str, Any]:
        return self.client.get_shard_iterator(**kwargs)

    def get_records(self, **kwargs: Any) -> dict[str, Any]:
        return self.client.get_records(**kwargs)


def verify_read(clients: Any, stream: str, path: Path, *, parsed: bool = False) -> int:
    """(b) verify's read: both regions caught up concurrently into a Store (flushed)."""
    from verify.follower import StreamFollower, catch_up
    from xrh.config import Side

    store = Store(path)
    try:
        followers = [
            (StreamFollower(BotocoreParsed(clients.client("kinesis", side)) if parsed
                            else clients.client("kinesis", side), stream, label=side.value),
             lambda r, _region=side.value: store.add_read(_region, r))
            for side in (Side.A, Side.B)
        ]  # fmt: skip
        stats = catch_up(followers, deadline=time.monotonic() + 600)
        store.flush()
    finally:
        store.close()
    assert all(s.complete for s in stats.values())
    return sum(s.records for s in stats.values())


def sequential_read(clients: Any, stream: str, path: Path, *, parsed: bool = False) -> int:
    """read_stream as collect used it: region A then region B, one shard after another."""
    from verify.kinesis_reader import read_stream
    from xrh.config import Side

    store = Store(path)
    total = 0
    try:
        for side in (Side.A, Side.B):
            client = clients.client("kinesis", side)
            stats = read_stream(
                BotocoreParsed(client) if parsed else client, stream,
                lambda r, _region=side.value: store.add_read(_region, r),
                deadline=time.monotonic() + 600,
            )  # fmt: skip
            assert stats.complete
            total += stats.records
        store.flush()
    finally:
        store.close()
    return total


def _cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of a process (this one when pid is None)."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _timed(pids: list[int | None], n_expected: int, body: Any) -> dict:
    before = [_cpu_s(p) for p in pids]
    t0 = time.perf_counter()
    n = body()
    seconds = time.perf_counter() - t0
    after = [_cpu_s(p) for p in pids]
    assert n == n_expected
    cpu = [round((b - a) / n * 1e6, 1) for a, b in zip(before, after, strict=True)]
    return {
        "records_per_s": round(n / seconds),
        "seconds": round(seconds, 2),
        "cpu_us_per_record": {"verify_process": cpu[0], "endpoint_a": cpu[1], "endpoint_b": cpu[2]},
    }


def measure_follow(tmp_path: Path, n: int = FOLLOW_RECORDS, rounds: int = FOLLOW_ROUNDS) -> dict:
    from xrh.aws import AwsClients
    from xrh.config import Side, parse_config
    from xrh.endpoint import EmbeddedEndpoint
    from xrh.provision import provision
    from xrh.resources import ResourceNames

    base = parse_config(["--runs-dir", str(tmp_path / "runs"), "--prefix", "follow"], environ={})
    with EmbeddedEndpoint(base) as endpoint:
        config = base.with_endpoints(endpoint.url_of("a"), endpoint.url_of("b"))
        provision(config)
        clients = AwsClients(config, max_pool_connections=32)
        stream = ResourceNames(config.prefix).stream
        fill_rate = fill_both(clients, stream, n)
        pids = [None, endpoint.pid(Side.A), endpoint.pid(Side.B)]
        total = 2 * n
        bare, verify = [], []
        for r in range(rounds):
            bare.append(_timed(pids, total, lambda: bare_read(clients, stream)))
            path = tmp_path / f"follow-{r}.sqlite"
            verify.append(_timed(pids, total, lambda p=path: verify_read(clients, stream, p)))
        parsed = _timed(pids, total, lambda: verify_read(
            clients, stream, tmp_path / "parsed.sqlite", parsed=True))  # fmt: skip
        sequential = _timed(pids, total, lambda: sequential_read(
            clients, stream, tmp_path / "sequential.sqlite"))  # fmt: skip
        sequential_parsed = _timed(pids, total, lambda: sequential_read(
            clients, stream, tmp_path / "sequential-parsed.sqlite", parsed=True))  # fmt: skip
    bare_rate = sum(b["records_per_s"] for b in bare) / rounds
    verify_rate = sum(v["records_per_s"] for v in verify) / rounds
    return {
        "follow_records": total,
        "shards_per_region": config.shards,
        "cores": os.cpu_count(),
        "fill_records_per_s": round(fill_rate),
        "bare_records_per_s": round(bare_rate),
        "verify_records_per_s": round(verify_rate),
        "verify_over_bare": round(verify_rate / bare_rate, 3),
        "verify_over_bare_per_round": [
            round(v["records_per_s"] / b["records_per_s"], 3)
            for b, v in zip(bare, verify, strict=True)
        ],
        "verify_botocore_parse_records_per_s": parsed["records_per_s"],
        "sequential_read_stream_records_per_s": sequential["records_per_s"],
        "sequential_read_stream_botocore_parse_records_per_s": sequential_parsed["records_per_s"],
        "rounds": {"bare": bare, "verify": verify},
        "cpu_us_per_record": {
            "bare": bare[-1]["cpu_us_per_record"],
            "verify": verify[-1]["cpu_us_per_record"],
            "verify_botocore_parse": parsed["cpu_us_per_record"],
            "sequential_read_stream": sequential["cpu_us_per_record"],
        },
    }


@pytest.mark.benchmark(group="verify")
def test_verify_follow_both_regions_embedded(benchmark, tmp_path):
    """(a) bare concurrent GetRecords over every shard of both regions, (b) verify's catch_up of
    both regions into a Store; records/s of each and (b)/(a) (target: at least 0.8). Also:
    verify's read with botocore's own parse, and the sequential read_stream."""
    figures = benchmark.pedantic(measure_follow, args=(tmp_path,), rounds=1, iterations=1)
    benchmark.extra_info.update(figures)
    print(json.dumps(figures))


if __name__ == "__main__":
    serve(measure)
