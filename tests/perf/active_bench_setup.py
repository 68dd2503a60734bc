"""What the active-active benchmarks set up alike: a freshly provisioned ``active-active``
pipeline; a seeded history of plain, stamped application writes (PutItem, UpdateItem that
clears the tombstone flag, DeleteItem) made in region A's table before the measurement (not
timed), and this module's own model of it (the table the forwarder must leave in A, the staging
records it must send to B; sharing nothing with the replicator but the contract's names); the
staging stream of B filled directly with records in the contract's format; the reference roles
run in-process as ``xrh replicate --pipeline active-active --role forward|apply`` builds them
(:func:`replicator.runners.active_cli.build`); and a table's contents read back."""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from replicator_bench_setup import provisioned

from xrh.active_active import STAMP_REGION, STAMP_TS, TOMBSTONE
from xrh.aws import AwsClients
from xrh.config import HarnessConfig, Side
from xrh.endpoint import EmbeddedEndpoint
from xrh.resources import ResourceNames

PUT_RECORDS_LIMIT = 500
BATCH_WRITE_LIMIT = 25
STEP = 10  # op i is stamped base + STEP * i: room below a stamp for a regressing write's


@dataclass
class History:
    """The writes made in region ``region``'s table, in order, and what they must lead to.

    ``final``: per key, the version with the largest stamp among every version the key had
    (tombstones included): the table the forwarder leaves (repairs restore a regressed winner,
    tombstones lose to anything newer). ``forwarded``: (pk, stamp ts) of every staging record
    the forwarder must send: each local version that did not regress, and each tombstone.
    ``versions``: the same versions in order, as items (the staging records' images)."""

    region: str
    ops: list[tuple[str, Any]] = field(default_factory=list)
    final: dict[str, dict] = field(default_factory=dict)
    versions: list[dict] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def forwarded(self) -> list[tuple[str, int]]:
        return [(v["pk"]["S"], int(v[STAMP_TS]["N"])) for v in self.versions]

    @property
    def live(self) -> dict[str, dict]:
        return {k: v for k, v in self.final.items() if TOMBSTONE not in v}


def _stamp(item: dict) -> tuple[int, str]:
    return int(item[STAMP_TS]["N"]), item[STAMP_REGION]["S"]


def tombstone_of(pk: str, removed: dict, region: str) -> dict:
    """The contract's tombstone of a DeleteItem made in ``region`` that removed ``removed``."""
    return {"pk": {"S": pk}, STAMP_TS: {"N": str(_stamp(removed)[0] + 1)},
            STAMP_REGION: {"S": region}, TOMBSTONE: {"BOOL": True}}  # fmt: skip


def history(n: int, keys: int, region: str, *, regress: float = 0.0, seed: int = 11) -> History:
    """``n`` seeded writes over ``keys`` keys made in ``region``: to an absent key a put; to a
    live key a put (45%), an update (35%) or a delete
    (20%). With ``regress`` > 0, that share of the puts to live keys are stamped *older* than
    the version they replace (a writer with a slow clock: the forwarder repairs them)."""
    rng = random.Random(seed)
    base = (int(time.time() * 1000) // STEP - n) * STEP
    h = History(region, counts=dict.fromkeys(("put", "update", "delete", "regressing_put"), 0))
    table: dict[str, dict] = {}  # the table as the writes leave it (before any forwarder)
    best: dict[str, dict] = {}

    def version(pk: str, item: dict, forwarded: bool = True) -> None:
        if pk not in best or _stamp(item) >= _stamp(best[pk]):
            best[pk] = item
        if forwarded:
            h.versions.append(item)

    for i in range(n):
        pk = str(rng.randrange(keys))
        held = table.get(pk)
        r = rng.random()
        ts = base + STEP * i
        payload = {"S": f"v{i}-" + "x" * 100}
        if held is not None and r >= 0.8:
            h.ops.append(("delete", pk))
            h.counts["delete"] += 1
            version(pk, tombstone_of(pk, held, region))
            del table[pk]
            continue
        if held is None or r < 0.45:  # (moto's UpdateItem creating an item adds a key-only
            # INSERT to the stream before the real one: updates go to live keys only)
            # never below a regressed version: stamps stay distinct (a tie is no regression)
            regressing = (held is not None and _stamp(held)[0] % STEP == 0
                          and rng.random() < regress)  # fmt: skip
            if regressing:
                ts = _stamp(held)[0] - STEP // 2
            item = {"pk": {"S": pk}, STAMP_TS: {"N": str(ts)}, STAMP_REGION: {"S": region},
                    "n": {"N": str(i)}, "payload": payload}  # fmt: skip
            h.ops.append(("put", item))
            h.counts["regressing_put" if regressing else "put"] += 1
            version(pk, item, forwarded=not regressing)
            table[pk] = item
            continue
        sets = {STAMP_TS: {"N": str(ts)}, STAMP_REGION: {"S": region}, "payload": payload,
                "u": {"N": str(i)}}  # fmt: skip
        h.ops.append(("update", (pk, sets)))
        h.counts["update"] += 1
        item = {**held, **sets}
        version(pk, item)
        table[pk] = item
    h.final = best
    return h


def write_history(clients: AwsClients, side: Side, table: str, h: History) -> None:
    """Make ``h``'s writes in ``side``'s table: puts and deletes in BatchWriteItems of distinct
    keys, updates as UpdateItems (``REMOVE xrh_deleted``, as the contract asks), each key's
    writes in their order (a pending batch is sent before a write to a key it holds)."""
    ddb = clients.client("dynamodb", side)
    pending: dict[str, dict] = {}

    def flush() -> None:
        request = {table: list(pending.values())}
        while request:
            request = ddb.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}
        pending.clear()

    for kind, body in h.ops:
        pk = body if kind == "delete" else body["pk"]["S"] if kind == "put" else body[0]
        if pk in pending or len(pending) == BATCH_WRITE_LIMIT:
            flush()
        if kind == "put":
            pending[pk] = {"PutRequest": {"Item": body}}
        elif kind == "delete":
            pending[pk] = {"DeleteRequest": {"Key": {"pk": {"S": pk}}}}
        else:
            sets = body[1]
            names = {f"#a{i}": name for i, name in enumerate(sets)}
            ddb.update_item(
                TableName=table, Key={"pk": {"S": pk}},
                UpdateExpression="SET " + ", ".join(f"#a{i} = :a{i}" for i in range(len(sets)))
                + " REMOVE #t",
                ExpressionAttributeNames={**names, "#t": TOMBSTONE},
                ExpressionAttributeValues={f":a{i}": v for i, v in enumerate(sets.values())},
            )  # fmt: skip
    if pending:
        flush()


def loaded_table(endpoint: EmbeddedEndpoint, tag: str, h: History):
    """A provisioned active-active pipeline whose table in A holds ``h``'s writes (its stream
    holds one change per write)."""
    config = provisioned(endpoint, tag, "active-active")
    clients = AwsClients(config, max_attempts=1, max_pool_connections=24)
    write_history(clients, Side.A, ResourceNames(config.prefix).items_table, h)
    return config, clients


def staging_record(item: dict, origin: str, seq: int, created_ms: int) -> tuple[str, bytes]:
    """(partition key, data) of a staging record of ``item`` (the contract's format; this
    module's own encoder: the items hold no binary values)."""
    ts, region = _stamp(item)
    body = {"pk": item["pk"]["S"], "image": item, "origin": origin, "stamp": [ts, region],
            "source": {"shard": "shardId-bench", "seq": f"{seq:021d}",
                       "created_ms": created_ms}}  # fmt: skip
    return item["pk"]["S"], json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def loaded_staging(endpoint: EmbeddedEndpoint, tag: str, h: History):
    """A provisioned active-active pipeline whose staging stream in B holds, in order, the
    staging records A's forwarder sends for ``h`` (one per forwarded version or tombstone)."""
    config = provisioned(endpoint, tag, "active-active")
    clients = AwsClients(config, max_attempts=1, max_pool_connections=24)
    kb = clients.client("kinesis", Side.B)
    stream = ResourceNames(config.prefix).staging_stream
    now = int(time.time() * 1000)
    records = [staging_record(v, h.region, i, now) for i, v in enumerate(h.versions)]
    for start in range(0, len(records), PUT_RECORDS_LIMIT):
        chunk = records[start : start + PUT_RECORDS_LIMIT]
        answer = kb.put_records(
            StreamName=stream, Records=[{"PartitionKey": pk, "Data": d} for pk, d in chunk]
        )
        assert answer["FailedRecordCount"] == 0, answer
    return config, clients


def table_items(clients: AwsClients, side: Side, table: str) -> dict[str, dict]:
    """Every item of ``table`` in ``side``, in wire form, by pk (tombstones included)."""
    ddb = clients.client("dynamodb", side)
    out: dict[str, dict] = {}
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        page = ddb.scan(**kwargs)
        out.update((item["pk"]["S"], item) for item in page["Items"])
        if "LastEvaluatedKey" not in page:
            return out
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def stream_records(clients: AwsClients, side: Side, stream: str) -> list[dict]:
    """Every record of a Kinesis stream in ``side``, decoded, shard after shard."""
    kin = clients.client("kinesis", side)
    out: list[dict] = []
    for shard in kin.list_shards(StreamName=stream)["Shards"]:
        it = kin.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                    ShardIteratorType="TRIM_HORIZON")["ShardIterator"]  # fmt: skip
        while it:
            page = kin.get_records(ShardIterator=it, Limit=10_000)
            out += [json.loads(r["Data"]) for r in page["Records"]]
            if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
                break
            it = page.get("NextShardIterator")
    return out


def run_role(config: HarnessConfig, side: str, role: str, done, *, timeout: float = 120.0):
    """Region ``side``'s ``role`` (``forward`` | ``apply``) as ``xrh replicate --pipeline
    active-active --side S --role R`` builds it (active_cli.build, default options), its poller
    on a thread, timed from its start until ``done(replicator, processed)`` holds, where
    ``processed`` counts the records of the batches its ``process`` has returned (so the last
    batch's checkpoint is inside the time); its stop is not counted.
    Returns (seconds, calls by kind at the end of the time, the replicator's counters)."""
    from replicator.runners import active_cli
    from replicator.runners.cli import add_arguments
    from xrh.config import add_common_options

    parser = argparse.ArgumentParser()
    add_common_options(parser)
    add_arguments(parser)
    args = parser.parse_args(["--side", side, "--role", role, "--worker-id", "bench"])
    active_cli.check(args)
    run_dir = Path(tempfile.mkdtemp(prefix=f"xrh-active-bench-{role}-"))  # logs, metrics, lag
    built = active_cli.build(args, config, run_dir, "bench")
    poller, replicator, files = built[role][:3]
    processed = [0]
    inner = replicator.process

    def counted(shard_id, records, **kwargs):
        result = inner(shard_id, records, **kwargs)
        processed[0] += result.acked
        return result

    replicator.process = counted  # the poller calls it through the instance: counted, as is
    thread = threading.Thread(target=poller.run, name=f"bench-active-{role}")
    t0 = time.perf_counter()
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not done(replicator, processed[0]):
            if time.monotonic() > deadline or not thread.is_alive():
                break
            time.sleep(0.005)
        seconds = time.perf_counter() - t0
        calls = {
            "source_reads": poller.reader.calls,
            "checkpoint": poller.checkpoints.calls,
            "leases": poller.leases.calls,
        }
        if role == "forward":
            calls["staging_puts"] = replicator.sender.sink.calls
        calls["table_writes"] = replicator.writer.sink.calls
    finally:
        poller.request_stop()
        thread.join(timeout=60)
        replicator.close()
        files.close()
        shutil.rmtree(run_dir, ignore_errors=True)
    return seconds, calls, dict(replicator.metrics.counters), processed[0]
