"""The dynamodb pipeline's load end to end: a real Locust run (produce only: ``--replicator
external --no-verify``) against the session's embedded endpoint, kept running after the run so
the test reads region A's table itself and holds it against the ledger.

Faults are on in region A for the run (part of every BatchWriteItem unprocessed, PutItem
throttled now and then, a few PutItem answers lost), so retries of only the unprocessed items,
throttles retried, and unknown outcomes never resent are all exercised against the real
service shapes.
"""

from __future__ import annotations

import csv
import itertools
import os
import sqlite3
from pathlib import Path

import pytest
from test_locust_runs import run_locust

from xrh.aws import AwsClients
from xrh.config import Side, parse_config
from xrh.provision import destroy
from xrh.resources import ResourceNames

pytestmark = pytest.mark.functional

FAULTS = "a:BatchWriteItem:partial=0.2,a:PutItem:throttle=0.05,a:PutItem:lost-answer=0.02"
BOOTSTRAP = 500
_prefixes = itertools.count(1)


def scan(client, table: str) -> dict[str, dict]:
    items: dict[str, dict] = {}
    kwargs = {"TableName": table, "ConsistentRead": True}
    for _ in range(10_000):  # bounded: pages of up to 1 MB
        page = client.scan(**kwargs)
        items.update((item["pk"]["S"], item) for item in page["Items"])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    raise AssertionError("scan did not end")


def writes_by_key(ledger: Path) -> dict[str, list[dict]]:
    """Per key, the writes that may have reached the table: each trace's ``ok`` attempt, or its
    ``unknown`` one (never resent, so at most one of either)."""
    db = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        rows = [dict(r) for r in db.execute(
            "SELECT * FROM ledger WHERE status IN ('ok', 'unknown') ORDER BY rowid")]  # fmt: skip
    finally:
        db.close()
    out: dict[str, list[dict]] = {}
    traces = set()
    for row in rows:
        assert row["trace"] not in traces, f"two answered attempts of {row['trace']}"
        traces.add(row["trace"])
        out.setdefault(row["key"], []).append(row)
    return out


def check(items: dict[str, dict], writes: dict[str, list[dict]]) -> tuple[int, int]:
    """Every key holds what the ledger's last write says: (keys checked exactly, keys with an
    unknown write among the possible last ones, checked loosely)."""
    exact = loose = 0
    for key, ws in writes.items():
        oks = [w for w in ws if w["status"] == "ok"]
        # possibly last: no acknowledged write of the key began after it had ended
        last = [w for w in ws if not any(o["invoked_at"] > w["completed_at"] for o in oks)]
        item = items.get(key)
        uncertain = any(w["status"] == "unknown" for w in last)
        loose += uncertain
        exact += not uncertain
        # an unknown write may or may not have landed: then any write of the key may show
        candidates = ws if uncertain else last
        fits = [w for w in candidates
                if (item is None) == (w["op"] == "delete")
                and (item is None or item["trace"]["S"] == w["trace"])]  # fmt: skip
        assert fits, f"key {key}: table holds {item}, the ledger's last writes are {last}"
    phantom = set(items) - set(writes)
    assert not phantom, f"items no write of the ledger explains: {sorted(phantom)[:5]}"
    return exact, loose


def test_dynamodb_load_matches_table_a_and_the_bootstrap_items_are_there(endpoint, tmp_path):
    prefix = f"d{os.getpid() % 10000}-{next(_prefixes)}"
    config = parse_config(["--pipeline", "dynamodb", "--prefix", prefix], environ={})
    config = config.with_endpoints(endpoint.url_of("a"), endpoint.url_of("b"))
    endpoint.set_faults(FAULTS, seed=5)
    try:
        code, out, err = run_locust(
            tmp_path, "--pipeline", "dynamodb", "--headless", "-u", "4", "-r", "4", "-t", "6s",
            "--only-summary", "--replicator", "external", "--no-verify",
            "--bootstrap-items", str(BOOTSTRAP), "--keys", "1000", "--seed", "11",
            "--prefix", prefix, "--endpoint-url-a", endpoint.url_of("a"),
            "--endpoint-url-b", endpoint.url_of("b"), timeout=90,
        )  # fmt: skip
    finally:
        endpoint.set_faults(None)
    try:
        assert code == 0, err[-3000:]
        assert f"bootstrap: {BOOTSTRAP:,} of {BOOTSTRAP:,} items written" in err
        run_dir = tmp_path / "runs" / "latest"
        ledger = run_dir / "ledger.sqlite"
        client = AwsClients(config).client("dynamodb", Side.A)
        items = scan(client, ResourceNames(prefix).items_table)
        writes = writes_by_key(ledger)

        db = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)
        try:
            complete = db.execute("SELECT value FROM ledger_meta WHERE name='complete'").fetchone()
            counts = dict(db.execute(
                "SELECT status || ' ' || op, COUNT(*) FROM ledger GROUP BY 1").fetchall())  # fmt: skip
            boot = db.execute(
                "SELECT COUNT(*), COUNT(DISTINCT key) FROM ledger WHERE producer LIKE '%/boot' "
                "AND status = 'ok' AND op = 'put' AND pipeline = 'dynamodb'").fetchone()  # fmt: skip
            retried = db.execute(
                "SELECT COUNT(*) FROM ledger WHERE attempt > 1 AND status = 'ok'"
            ).fetchone()[0]
            shapes = db.execute(
                "SELECT COUNT(*) FROM ledger WHERE shard_id IS NOT NULL OR sequence_number IS NOT "
                "NULL OR partition_key != key OR target != ?", (f"{prefix}-items",)).fetchone()[0]  # fmt: skip
        finally:
            db.close()
        assert complete == ("1",)
        assert boot == (BOOTSTRAP, BOOTSTRAP)  # every bootstrap item written once, keys 0..499
        assert shapes == 0
        assert retried > 0, counts  # unprocessed items and throttles were retried
        assert counts.get("ok update", 0) > 0 and counts.get("ok delete", 0) > 0, counts
        assert counts.get("ok put", 0) > BOOTSTRAP, counts

        exact, loose = check(items, writes)
        assert exact > BOOTSTRAP and loose < exact // 10, (exact, loose)
        # keys only the bootstrap wrote still hold its items
        only_boot = [k for k, ws in writes.items() if all("/boot-" in w["trace"] for w in ws)]
        assert only_boot and all("/boot-" in items[k]["trace"]["S"] for k in only_boot)

        with (run_dir / "locust_stats.csv").open(newline="") as handle:
            stats = {r["Name"]: r for r in csv.DictReader(handle) if r["Type"] == "dynamodb"}
        assert {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem"} <= set(stats)
        assert int(stats["BatchWriteItem"]["Failure Count"]) > 0  # UnprocessedItems shown
        assert float(stats["PutItem"]["Average Content Size"]) > 50  # the request's bytes
    finally:
        if endpoint.alive():
            destroy(config)
