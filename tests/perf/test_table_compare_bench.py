"""Table comparison benchmark (verify.tables): the rate of storing both tables' item rows,
comparing them by chunk digests and judging the differing keys, beyond the time to scan.

Item rows are built as a scan would hand them over (:func:`verify.table_reader.traced_item_row`)
a batch at a time, outside the timed part, and fed to the store; region B equals region A but
for a few hundred keys (changed content, or missing). Measured at 100,000 and 400,000 items per
table, each in its own process so its peak RSS is its own (memory flat: the store is SQLite,
never a dict of the table). Figures go to ``benchmark.extra_info`` and stdout; nothing is
asserted on time. Run: ``pytest tests/perf/test_table_compare_bench.py -s``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from bench_process import measure_in_subprocess, peak_rss_mb, serve

from verify.table_reader import traced_item_row
from verify.tables.checks import judge
from verify.tables.store import TableStore

BATCH = 1000
CHANGED_EVERY = 1000  # one key in a thousand differs: 100 (100k) or 400 (400k)


def _item(i: int, note: str) -> dict:
    return {
        "pk": {"S": str(3_174_940_031 + i * 7919)},
        "key": {"N": str(3_174_940_031 + i * 7919)},
        "trace": {"S": f"20260101T000000Z-abcdef/w{i % 8}u1-{i:09d}"},
        "commitTimestamp": {"S": "2021-11-10T00:48:30.123Z"},
        "note": {"S": note},
    }


def measure(n: int, path: Path) -> dict:
    store = TableStore(path)
    stored_s = 0.0
    differing = 0
    for start in range(0, n, BATCH):
        a_rows, b_rows = [], []
        for i in range(start, min(n, start + BATCH)):
            a_rows.append(traced_item_row(_item(i, "v1"), ("pk",)))
            if i % CHANGED_EVERY == 7:  # B lacks it
                differing += 1
            elif i % CHANGED_EVERY == 3:  # B holds other content
                differing += 1
                b_rows.append(traced_item_row(_item(i, "v0"), ("pk",)))
            else:
                b_rows.append(a_rows[-1])
        t0 = time.perf_counter()
        store.add_items("a", a_rows)
        store.add_items("b", b_rows)
        stored_s += time.perf_counter() - t0
    t0 = time.perf_counter()
    figures = store.compare()
    compare_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    verdict = judge(store.db, chunks=store.chunks, stream=False)
    judge_s = time.perf_counter() - t0
    store.close()
    assert figures["differing_keys"] == differing
    found = verdict.anomalies["lost"].count + verdict.anomalies["diverged"].count
    assert found == differing
    total = stored_s + compare_s + judge_s
    return {
        "items_per_table": n,
        "differing_keys": differing,
        "store_s": round(stored_s, 2),
        "compare_s": round(compare_s, 3),
        "judge_s": round(judge_s, 3),
        "items_per_s": round(n / total),
        "items_per_s_both_tables": round(2 * n / total),
        "chunks_differing": figures["chunks_differing"],
        "items_compared_per_key": figures["items_compared_per_key"],
        "peak_rss_mb": peak_rss_mb(),
    }


@pytest.mark.benchmark(group="verify-tables")
def test_table_compare_100k_and_400k(benchmark, tmp_path):
    small = measure_in_subprocess(__file__, 100_000, tmp_path / "small.sqlite", timeout=900)
    large = measure_in_subprocess(__file__, 400_000, tmp_path / "large.sqlite", timeout=900)
    benchmark.extra_info.update({
        "items_per_s_100k": small["items_per_s"], "items_per_s_400k": large["items_per_s"],
        "peak_rss_mb_100k": small["peak_rss_mb"], "peak_rss_mb_400k": large["peak_rss_mb"],
        "compare_s_400k": large["compare_s"], "judge_s_400k": large["judge_s"],
    })  # fmt: skip

    # The benchmark's own timing: comparing the 400k store again (digests already folded).
    def setup():
        return (TableStore(tmp_path / "large.sqlite", fresh=False),), {}

    def compare(store: TableStore) -> None:
        store.compare()
        store.close()

    benchmark.pedantic(compare, setup=setup, rounds=1, iterations=1)
    print(json.dumps({"100k": small, "400k": large}))


if __name__ == "__main__":
    serve(measure)
