"""postgres-cdc verify benchmark: 200,000 change records (transactions of 4 statements over
20,000 keys, updates and deletes among them) fabricated into a CdcStore in A and B with the
ledger and the table's final rows, then the judging alone timed (reconcile of A against B and
the cdc checks: ledger matching, commit order per key, transactions, folds against the table).
Records/s reconciled beyond reading go to ``benchmark.extra_info`` and stdout; nothing is
asserted on time. Run: ``pytest tests/perf/test_cdc_verify_bench.py -s``."""

from __future__ import annotations

import json
import time

import pytest

from verify.cdc.checks import judge
from verify.cdc.records import Names, normal_body
from verify.cdc.store import CdcStore
from verify.model import StreamRecord
from verify.reconcile import reconcile
from xrh import postgres_cdc as pc

N = 200_000
KEYS = 20_000
SHARDS = 4
RUN = "20260101T000000Z-bench0"
PREFIX = "xrh-bench"
T0_US = 1_732_000_000_000_000


def fabricate(store: CdcStore) -> None:
    table, names = pc.table_name(PREFIX), store.names
    final: dict[int, tuple] = {}
    stmts, positions = [], [0] * SHARDS
    for i in range(N):
        xid, key = 1000 + i // 4, (i * 7919) % KEYS
        commit_us = T0_US + (i // 4) * 250
        trace = f"{RUN}/p{i % 8}-{i:09d}"
        op = "insert" if key not in final else ("delete" if i % 10 == 9 else "update")
        stamp = f"{commit_us // 1_000_000}.{commit_us % 1_000_000:06d}"
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(stamp.split(".")[0])))
        row = {"key": key, "commit_timestamp": f"{text}.{commit_us % 1_000_000:06d}+00",
               "trace": trace, "payload": json.dumps({"i": i})}  # fmt: skip
        data = pc.encode(pc.change_record(
            data={"key": key} if op == "delete" else row, operation=op,
            commit_time=f"{text}.{commit_us % 1_000_000:06d}Z", schema=names.schema,
            table=table, transaction_id=xid))  # fmt: skip
        if op == "delete":
            final.pop(key, None)
        else:
            final[key] = (row, trace)
        stmts.append((trace, f"{RUN}/p{i % 8}", i, str(xid), str(key), op, "ok", 1,
                      commit_us // 1000))  # fmt: skip
        shard = key % SHARDS
        positions[shard] += 1
        arrival = commit_us // 1000 + 5
        for region, lag in (("a", 0), ("b", 50 + i % 200)):
            store.add_read(region, StreamRecord(f"shardId-{shard:012d}", 0, str(positions[shard]),
                                                str(key), data, arrival + lag))  # fmt: skip
    store.add_statements(stmts)
    store.add_table_rows((str(k), normal_body(r), t, 1) for k, (r, t) in final.items())
    store.flush()


@pytest.mark.benchmark(group="verify")
def test_cdc_verify_reconcile_200k(benchmark, tmp_path):
    path = tmp_path / "verify.sqlite"
    names = Names.of(PREFIX)
    t0 = time.perf_counter()
    store = CdcStore(path, names=names, own_prefix=f"{RUN}/")
    fabricate(store)
    store.close()
    load_s = time.perf_counter() - t0
    figures: dict = {}

    def judge_store() -> None:
        store = CdcStore(path, names=names, fresh=False)
        t1 = time.perf_counter()
        store.finalize()
        rec = reconcile(store.db)
        t2 = time.perf_counter()
        found = judge(store.db, rec, has_ledger=True, table_read=True)
        t3 = time.perf_counter()
        store.close()
        figures.update(
            records=N, copies=2 * N, reconcile_a_b_s=round(t2 - t1, 3),
            cdc_checks_s=round(t3 - t2, 3), judge_s=round(t3 - t1, 3),
            records_per_s=round(N / (t3 - t1)), copies_per_s=round(2 * N / (t3 - t1)),
            parse_and_store_per_s=round(2 * N / load_s),
            anomalies={k: a.count for k, a in found.anomalies.items() if a.count},
        )  # fmt: skip

    benchmark.pedantic(judge_store, rounds=1, iterations=1)
    benchmark.extra_info.update(figures)
    print(f"\npostgres-cdc verify, {N} records in A and B: {figures}")
    assert figures["anomalies"] == {}
