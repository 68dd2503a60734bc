"""Test-only producers and sabotaged replicators (plain GetRecords -> PutRecords loops).

Nothing here imports ``replicator`` or ``loadgen``: verify must catch faults in any copier, and
these are the simplest copiers that have exactly one fault each.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xrh.aws import AwsClients
from xrh.config import HarnessConfig, Side
from xrh.contracts import LEDGER_DDL, WatermarkClaim, iso_ms
from xrh.resources import ResourceNames
from xrh.runs import CLAIMS_FILE, LEDGER_FILE

Record = dict[str, Any]  # {"PartitionKey", "Data", "commit_ts"} as read from the source


def produce(clients: AwsClients, config: HarnessConfig, run_dir: Path, n: int, keys: int) -> None:
    """Write n records to the source stream and a complete ledger of them."""
    stream = ResourceNames(config.prefix).stream
    kinesis = clients.client("kinesis", Side.A)
    rows = []
    for start in range(0, n, 100):
        entries, meta = [], []
        for seq in range(start, min(n, start + 100)):
            key = seq % keys
            commit = int(time.time() * 1000)
            trace = f"t0-{seq:09d}"
            data = {"key": key, "commitTimestamp": iso_ms(commit), "trace": trace}
            entries.append({"PartitionKey": str(key), "Data": json.dumps(data).encode()})
            meta.append((trace, seq, key, commit))
        invoked = int(time.time() * 1000)
        response = kinesis.put_records(StreamName=stream, Records=entries)
        done = int(time.time() * 1000)
        for (trace, seq, key, commit), result in zip(meta, response["Records"], strict=True):
            ok = "ErrorCode" not in result
            rows.append(
                (trace, "t0", seq, "kinesis", config.region_a, stream, str(key), str(key),
                 commit, "ok" if ok else "fail", result.get("ShardId"),
                 result.get("SequenceNumber"), invoked, done)
            )  # fmt: skip
    db = sqlite3.connect(run_dir / LEDGER_FILE)
    db.executescript(LEDGER_DDL)
    db.executemany(
        "INSERT INTO ledger (trace, producer, seq, pipeline, region, target, partition_key, key,"
        " commit_ts, status, shard_id, sequence_number, invoked_at, completed_at)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        rows,
    )
    db.execute("INSERT INTO ledger_meta VALUES ('complete', '1')")
    db.commit()
    db.close()


def read_source(clients: AwsClients, config: HarnessConfig) -> list[Record]:
    """Every source record, shard by shard in sequence order (a bounded loop)."""
    stream = ResourceNames(config.prefix).stream
    kinesis = clients.client("kinesis", Side.A)
    out: list[Record] = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        for _ in range(1000):
            page = kinesis.get_records(ShardIterator=iterator, Limit=1000)
            for r in page["Records"]:
                commit = json.loads(r["Data"])["commitTimestamp"]
                out.append({"PartitionKey": r["PartitionKey"], "Data": r["Data"], "commit": commit})
            iterator = page.get("NextShardIterator")
            if not page["Records"] or iterator is None:
                break
    return out


def send(clients: AwsClients, config: HarnessConfig, records: list[Record]) -> None:
    """PutRecords to the target in order, 100 at a time (moto never fails entries)."""
    stream = ResourceNames(config.prefix).stream
    kinesis = clients.client("kinesis", Side.B)
    for start in range(0, len(records), 100):
        batch = records[start : start + 100]
        response = kinesis.put_records(
            StreamName=stream,
            Records=[{"PartitionKey": r["PartitionKey"], "Data": r["Data"]} for r in batch],
        )
        assert response["FailedRecordCount"] == 0


def write_claim(config: HarnessConfig, run_dir: Path, claimed_at_ms: int, watermark_ms: int):
    claim = WatermarkClaim(
        claimed_at_ms, watermark_ms, ResourceNames(config.prefix).stream,
        config.region_a, config.region_b, "sabotaged",
    )  # fmt: skip
    with (run_dir / CLAIMS_FILE).open("a") as handle:
        handle.write(claim.to_line())


# ---------------------------------------------------------------- the sabotaged copiers


def clean(records: list[Record]) -> list[Record]:
    return list(records)


def drop_one_in(n: int) -> Callable[[list[Record]], list[Record]]:
    return lambda records: [r for i, r in enumerate(records) if i % n != n - 1]


def swap_first_pair_of_a_key(records: list[Record]) -> list[Record]:
    out = list(records)
    first_seen: dict[str, int] = {}
    for i, r in enumerate(out):
        if r["PartitionKey"] in first_seen:
            j = first_seen[r["PartitionKey"]]
            out[i], out[j] = out[j], out[i]
            return out
        first_seen[r["PartitionKey"]] = i
    raise AssertionError("no key repeats")


def send_first_batch_twice(records: list[Record]) -> list[Record]:
    return records[:10] + records
