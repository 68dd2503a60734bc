"""The active-active pipeline's load end to end: a real Locust run (produce only: ``--replicator
external --no-verify``, so nothing replicates) against the session's embedded endpoint, then
both regions' tables held against the ledger: each item carries the stamp of a write the
ledger says was made in that region, both regions were written, and the hot keys were written
from both (the conflicts the replicator has to resolve exist)."""

from __future__ import annotations

import csv
import itertools
import json
import os
import sqlite3
from pathlib import Path

import pytest
from test_dynamodb_load import scan
from test_locust_runs import run_locust

from xrh.active_active import STAMP_REGION, STAMP_TS, TOMBSTONE
from xrh.aws import AwsClients
from xrh.config import Side, parse_config
from xrh.provision import destroy
from xrh.resources import ResourceNames

pytestmark = pytest.mark.functional

HOT = 5
_prefixes = itertools.count(1)


def ledger_rows(ledger: Path) -> list[dict]:
    db = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)
    try:
        complete = db.execute("SELECT value FROM ledger_meta WHERE name='complete'").fetchone()
        assert complete == ("1",), complete
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM ledger ORDER BY rowid")]
    finally:
        db.close()


def test_active_active_load_writes_both_regions_and_conflicts_on_the_hot_keys(endpoint, tmp_path):
    prefix = f"aa{os.getpid() % 10000}-{next(_prefixes)}"
    config = parse_config(["--pipeline", "active-active", "--prefix", prefix], environ={})
    config = config.with_endpoints(endpoint.url_of("a"), endpoint.url_of("b"))
    code, out, err = run_locust(
        tmp_path, "--pipeline", "active-active", "--headless", "-u", "4", "-r", "4", "-t", "7s",
        "--only-summary", "--replicator", "external", "--no-verify",
        "--conflict-keys", str(HOT), "--keys", "200", "--seed", "7",
        "--clock-skew-ms", "b=+500", "--prefix", prefix,
        "--endpoint-url-a", endpoint.url_of("a"), "--endpoint-url-b", endpoint.url_of("b"),
        timeout=90,
    )  # fmt: skip
    try:
        assert code == 0, err[-3000:]
        run_dir = tmp_path / "runs" / "latest"
        rows = ledger_rows(run_dir / "ledger.sqlite")
        regions = {Side.A: config.region_a, Side.B: config.region_b}
        table = ResourceNames(prefix).items_table
        clients = AwsClients(config)
        items = {side: scan(clients.client("dynamodb", side), table) for side in Side}

        assert {r["pipeline"] for r in rows} == {"active-active"}
        assert {r["target"] for r in rows} == {table}
        assert all(r["partition_key"] == r["key"] for r in rows)
        ok = [r for r in rows if r["status"] == "ok"]
        assert len(ok) > 40, len(ok)
        # writes went to both regions, each op in each
        done = {(r["region"], r["op"]) for r in ok}
        assert done == {(region, op) for region in regions.values()
                        for op in ("put", "update", "delete")}, done  # fmt: skip
        # region B's writers are 500 ms ahead: its stamps lead the time it wrote them
        for row in ok:
            if row["op"] != "delete":
                ahead = row["commit_ts"] - row["invoked_at"]
                expected = 500 if row["region"] == config.region_b else 0
                assert expected - 50 <= ahead <= expected + 50, row
        # the hot keys were written from both regions: conflicts exist
        for key in map(str, range(HOT)):
            assert {r["region"] for r in ok if r["key"] == key} == set(regions.values()), key

        # No replicator ran: each region's item is a write the ledger says was made there
        # (acknowledged, or unknown: it may have landed), with that write's stamp, or absent.
        written = {(r["region"], r["key"], r["trace"]): r for r in rows
                   if r["status"] in ("ok", "unknown") and r["op"] != "delete"}  # fmt: skip
        for side, region in regions.items():
            assert items[side], f"region {region}'s table is empty"
            for key, item in items[side].items():
                row = written.get((region, key, item["trace"]["S"]))
                assert row is not None, (region, key, item)
                assert item[STAMP_REGION] == {"S": region}, item
                assert item[STAMP_TS] == {"N": str(row["commit_ts"])}, (item, row)
                assert TOMBSTONE not in item, item
        # deletes that removed a version are ledgered with its delete stamp, one past it
        stamps = {(r["region"], r["key"]): set() for r in rows}
        for r in rows:
            if r["op"] != "delete" and r["commit_ts"] is not None:
                stamps[(r["region"], r["key"])].add(r["commit_ts"])
        removed = [r for r in ok if r["op"] == "delete" and r["commit_ts"] is not None]
        assert removed, "no delete removed anything"
        for r in removed:
            assert r["commit_ts"] - 1 in stamps[(r["region"], r["key"])], r

        load = json.loads((run_dir / "config.json").read_text())["load"]
        assert (load["conflict_keys"], load["clock_skew_ms"]) == (HOT, "a=+0,b=+500")
        with (run_dir / "locust_stats.csv").open(newline="") as handle:
            names = {r["Name"] for r in csv.DictReader(handle) if r["Type"] == "dynamodb"}
        assert {f"PutItem {config.region_a}", f"DeleteItem {config.region_b}"} <= names, names
        assert not any(name.startswith("BatchWriteItem") for name in names)
    finally:
        if endpoint.alive():
            destroy(config)


# Answers dropped after the request was carried out: the writers' PutItem, UpdateItem and
# DeleteItem (ledgered unknown, a delete's stamp then unknown too) and the forwarders'
# PutRecords into both staging streams (resent: counted, never ping-pong).
LOST_ANSWERS = ",".join(
    f"{side}:{op}:lost-answer=0.05"
    for side in "ab" for op in ("PutItem", "UpdateItem", "DeleteItem", "PutRecords")
)  # fmt: skip


def test_both_regions_converge_under_lost_answers(tmp_path):
    code, out, err = run_locust(
        tmp_path, "--pipeline", "active-active", "--headless", "-u", "4", "-r", "4", "-t", "8s",
        "--only-summary", "--seed", "3", "--conflict-keys", "10", "--faults", LOST_ANSWERS,
        "--drain-timeout", "60", "--settle-seconds", "10", timeout=180,
    )  # fmt: skip
    report = json.loads((tmp_path / "runs" / "latest" / "report.json").read_text())
    assert report["verdict"] == "valid" and code == 0, (report["reasons"], err[-3000:])
    assert report["details"]["faults"]["total"] > 0
    conflicts = report["details"]["conflicts"]
    assert conflicts["resolved"] == conflicts["conflicted_keys"] > 0
