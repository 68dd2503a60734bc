"""Verify benchmark: reconcile 1,000,000 records in source and target (store loaded directly),
peak memory at 250k versus 1M (each in its own process), and reading from the embedded endpoint
(a smaller count, extrapolated per record). Figures go to ``benchmark.extra_info``."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

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
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def measure_in_subprocess(n: int, path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, str(n), str(path)],
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.benchmark(group="verify")
def test_verify_reconcile_1m(benchmark, tmp_path):
    small = measure_in_subprocess(250_000, tmp_path / "small.sqlite")
    large = measure_in_subprocess(1_000_000, tmp_path / "large.sqlite")
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


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]), Path(sys.argv[2]))))
