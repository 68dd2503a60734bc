"""``--table-mappings`` on a postgres-cdc run end to end: the rules rename the table and one
column, capture puts records under the new names, the run's config.json says so (``cdc_names``)
and verify, reading those names, finds the run valid. The endpoint is the session's (not the
run's own), so the change streams can be read after the run."""

from __future__ import annotations

import json
import os

import pytest
from test_locust_runs import report, run_locust

from xrh.aws import AwsClients
from xrh.config import parse_config
from xrh.postgres_cdc import parse_change_record, table_name
from xrh.provision import destroy
from xrh.resources import ResourceNames

pytestmark = pytest.mark.functional


def stream_records(clients: AwsClients, side: str, stream: str) -> list[dict]:
    kinesis = clients.client("kinesis", side)
    out = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]  # fmt: skip
        while iterator:
            got = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            out += [parse_change_record(r["Data"]) for r in got["Records"]]
            iterator = got.get("NextShardIterator") if got["Records"] else None
    return out


def test_renamed_table_and_column_reach_the_records_and_the_run_is_valid(endpoint, open_dir):
    prefix = f"pgmap{os.getpid() % 10000}"
    table = table_name(prefix)
    rules = {"rules": [
        {"rule-type": "selection", "rule-id": "1", "rule-name": "harness", "rule-action": "include",
         "object-locator": {"schema-name": "public", "table-name": table}},
        {"rule-type": "transformation", "rule-id": "2", "rule-name": "table",
         "rule-target": "table", "rule-action": "rename", "value": "orders",
         "object-locator": {"schema-name": "public", "table-name": table}},
        {"rule-type": "transformation", "rule-id": "3", "rule-name": "column",
         "rule-target": "column", "rule-action": "rename", "value": "body",
         "object-locator": {"schema-name": "public", "table-name": table,
                            "column-name": "payload"}},
    ]}  # fmt: skip
    (open_dir / "rules.json").write_text(json.dumps(rules))
    urls = ["--endpoint-url-a", endpoint.url_of("a"), "--endpoint-url-b", endpoint.url_of("b")]
    config = parse_config(["--pipeline", "postgres-cdc", "--prefix", prefix, *urls], environ={})
    try:
        code, _out, err = run_locust(
            open_dir, "--pipeline", "postgres-cdc", "--headless", "-u", "4", "-r", "4", "-t", "10s",
            "--runs-dir", str(open_dir / "runs"), "--keys", "50", "--prefix", prefix, *urls,
            "--table-mappings", "@rules.json", "--drain-timeout", "30", "--settle-seconds", "5",
        )  # fmt: skip
        assert code == 0, err[-3000:]
        result = report(open_dir)
        assert (result["pipeline"], result["verdict"]) == ("postgres-cdc", "valid"), result["reasons"]
        run = (open_dir / "runs" / "latest").resolve()
        written = json.loads((run / "config.json").read_text())
        assert written["cdc_names"] == {"schema": "public", "table": "orders", "key": "key",
                                        "commit_timestamp": "commit_timestamp", "trace": "trace",
                                        "payload": "body"}  # fmt: skip
        assert json.loads(written["load"]["table_mappings"]) == rules
        names = result["details"]["names"]
        assert (names["table"], names["payload"], names["renamed"]) == ("orders", "body", True)
        stream = ResourceNames(prefix).cdc_stream
        for side in ("a", "b"):
            records = stream_records(AwsClients(config), side, stream)
            assert records, side
            assert {r["metadata"]["table-name"] for r in records} == {"orders"}, side
            assert {r["metadata"]["schema-name"] for r in records} == {"public"}, side
            rows = [r["data"] for r in records if r["metadata"]["operation"] != "delete"]
            assert rows and all("body" in d and "payload" not in d for d in rows), side
    finally:
        if endpoint.alive():
            destroy(config)
