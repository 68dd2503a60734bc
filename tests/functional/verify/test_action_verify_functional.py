"""``xrh verify --run-dir`` of an action-log run against the embedded endpoint (two moto
servers over HTTP): real actions in region A's actions stream, a ledger of them, and both
regions' tables written by a tiny correct applier in this test (nothing from ``replicator``).
The run is valid; then faults are planted (an acknowledged action that never reached the
stream, an item deleted from B, an ADD applied twice in A, a stale item in B) and each is
reported with its anomaly and an example naming the key. After each live verify, the run is
re-checked from its stores with the endpoint gone (a closed port), with the same verdict and
anomalies; with an item store missing, the re-check is unknown and says why."""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from verify import cli
from xrh import runs
from xrh.action_log import LAG_FILE, action_partition_key
from xrh.aws import AwsClients
from xrh.config import Side, parse_config
from xrh.contracts import LEDGER_DDL
from xrh.provision import destroy, provision
from xrh.resources import ResourceNames

pytestmark = pytest.mark.functional
TS = "2021-11-10T00:48:30.123Z"


def _wire(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float):
        return {"N": str(value)}
    return {"S": str(value)}


class Applier:
    """A tiny correct consumer: each action applied in order to one region's table."""

    def __init__(self, ddb: Any, table: str) -> None:
        self.ddb, self.table = ddb, table

    def apply(self, doc: dict[str, Any]) -> None:
        stamp = {"trace": doc["trace"], "commitTimestamp": doc["commitTimestamp"]}
        data = doc["Data"]
        if doc["Action"] == "PutItem":
            self._put({**data, **stamp})
        elif doc["Action"] == "DeleteItem":
            self.ddb.delete_item(TableName=self.table, Key={"pk": {"S": data["pk"]}})
        elif doc["Action"] == "BatchWrite":
            for request in data:
                ((name, body),) = request.items()
                if name == "PutItem":
                    self._put({**body, **stamp})
                else:
                    self.ddb.delete_item(TableName=self.table, Key={"pk": {"S": body["pk"]}})
        else:
            sets = {**(data.get("Set") or {}), **stamp, "xrh_applied": "bookkeeping"}
            names, values, parts = {}, {}, []
            for i, (name, value) in enumerate(sets.items()):
                names[f"#s{i}"], values[f":s{i}"] = name, _wire(value)
                parts.append(f"#s{i} = :s{i}")
            expression = "SET " + ", ".join(parts)
            adds = []
            for i, (name, value) in enumerate((data.get("Add") or {}).items()):
                names[f"#a{i}"], values[f":a{i}"] = name, _wire(value)
                adds.append(f"#a{i} :a{i}")
            if adds:
                expression += " ADD " + ", ".join(adds)
            self.ddb.update_item(TableName=self.table, Key={"pk": {"S": data["pk"]}},
                                 UpdateExpression=expression, ExpressionAttributeNames=names,
                                 ExpressionAttributeValues=values)  # fmt: skip

    def _put(self, item: dict[str, Any]) -> None:
        self.ddb.put_item(TableName=self.table, Item={k: _wire(v) for k, v in item.items()})


@pytest.fixture
def action_log(endpoint, tmp_path: Path):
    prefix = f"al{int(time.time() * 1000) % 100000}"
    config = parse_config(["--prefix", prefix, "--pipeline", "action-log", "--shards", "2",
                           "--runs-dir", str(tmp_path / "runs")], environ={})  # fmt: skip
    config = config.with_endpoints(endpoint.url_of("a"), endpoint.url_of("b"))
    provision(config)
    yield config
    if endpoint.alive():
        destroy(config)


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def _recheck(run: runs.RunDir, *extra: str) -> tuple[int, dict[str, Any]]:
    """``xrh verify --run-dir`` with both regions' URLs on closed ports (the run's endpoint
    gone) and ``extra`` flags: the exit code and the report it wrote."""
    argv = ["--run-dir", str(run.path), "--no-progress", "--timeout", "20",
            "--endpoint-url-a", _closed_port_url(), "--endpoint-url-b", _closed_port_url(),
            *extra]  # fmt: skip
    before = set(run.path.glob("report*.json"))
    code = cli.run(cli.build_parser().parse_args(argv))
    written = set(run.path.glob("report*.json")) - before  # unknown keeps report.json
    report = json.loads((written.pop() if written else run.file(runs.REPORT_JSON)).read_text())
    return code, report


def _same_judgement(live: dict[str, Any], again: dict[str, Any]) -> None:
    for field in ("verdict", "reasons", "anomalies", "counts", "lag_ms"):
        assert again[field] == live[field], field
    assert any(n.startswith("re-checked from verify.sqlite") for n in again["details"]["notes"])
    assert again["details"]["from_store"]["read_at"]


def _actions() -> list[dict[str, Any]]:
    actions: list[dict[str, Any]] = []
    for k in range(30):
        actions.append({"Action": "PutItem", "Data": {"pk": str(k), "key": k, "v": "one"}})
    for k in range(0, 30, 3):
        actions.append(
            {"Action": "UpdateItem", "Data": {"pk": str(k), "Set": {"v": "two"}, "Add": {"n": 2}}}
        )
        actions.append({"Action": "UpdateItem", "Data": {"pk": str(k), "Add": {"n": 5}}})
    actions.append({"Action": "DeleteItem", "Data": {"pk": "1"}})
    actions.append(
        {
            "Action": "BatchWrite",
            "Data": [{"PutItem": {"pk": "4", "v": "batch"}}, {"DeleteItem": {"pk": "7"}}],
        }
    )
    actions.append({"Action": "UpdateItem", "Data": {"pk": "40", "Add": {"n": 1}}})
    return actions


def test_action_log_run_valid_then_each_planted_fault_reported(action_log, capsys):
    config = action_log
    run = runs.create_run(config.runs_dir, config.to_public_dict())
    names = ResourceNames(config.prefix)
    clients = AwsClients(config)
    kinesis = clients.client("kinesis", Side.A)
    appliers = {side: Applier(clients.client("dynamodb", side), names.items_table)
                for side in (Side.A, Side.B)}  # fmt: skip
    ledger = sqlite3.connect(run.file(runs.LEDGER_FILE))
    ledger.executescript(LEDGER_DDL)
    traces: dict[str, list[str]] = {}
    late: list[dict[str, Any]] = []
    for seq, action in enumerate(_actions(), 1):
        trace = f"{run.run_id}/w0u1-{seq:09d}"
        doc = {**action, "trace": trace, "commitTimestamp": TS}
        data = doc["Data"]
        first = data[0][next(iter(data[0]))]["pk"] if isinstance(data, list) else data["pk"]
        answer = kinesis.put_record(StreamName=names.actions_stream, Data=json.dumps(doc),
                                    PartitionKey=action_partition_key(int(first)))  # fmt: skip
        ledger.execute(
            "INSERT INTO ledger (trace, producer, seq, pipeline, region, target, partition_key,"
            " key, op, status, shard_id, sequence_number, invoked_at) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (trace, f"{run.run_id}/w0u1", seq, "action-log", config.region_a,
             names.actions_stream, action_partition_key(int(first)), first,
             {"PutItem": "put", "UpdateItem": "update", "DeleteItem": "delete",
              "BatchWrite": "batch"}[doc["Action"]], "ok", answer["ShardId"],
             answer["SequenceNumber"], 0),
        )  # fmt: skip
        traces.setdefault(first, []).append(trace)
        appliers[Side.A].apply(doc)
        if seq > len(_actions()) - 3:
            late.append(doc)  # the lazy consumer is behind when verify starts
        else:
            appliers[Side.B].apply(doc)
    ledger.execute("INSERT INTO ledger_meta VALUES ('complete', '1')")
    ledger.commit()
    lag = [{"ts_ms": 1_700_000_000_000 + i * 1000, "consumer": c, "shard_id": "shardId-0",
            "millis_behind_latest": 10 * i if c == "lazy" else 0, "applied_arrival_ms": None}
           for i in range(5) for c in ("fast", "lazy")]  # fmt: skip
    run.file(LAG_FILE).write_text("".join(json.dumps(x) + "\n" for x in lag))
    argv = [
        "--run-dir",
        str(run.path),
        "--no-progress",
        "--settle-seconds",
        "4",
        "--endpoint-url-a",
        config.endpoint_url_a,
        "--endpoint-url-b",
        config.endpoint_url_b,
    ]

    def verify() -> dict[str, Any]:
        code = cli.run(cli.build_parser().parse_args(argv))
        report = json.loads(run.file(runs.REPORT_JSON).read_text())
        assert code == {"valid": 0, "invalid": 1, "unknown": 2}[report["verdict"]]
        return report

    catch_up = threading.Timer(1.5, lambda: [appliers[Side.B].apply(d) for d in late])
    catch_up.start()
    try:
        report = verify()
    finally:
        catch_up.join()
    assert report["verdict"] == "valid", report["reasons"]
    assert report["details"]["settle"]["differing_after_first_compare"] == 4  # keys 1, 4, 7, 40
    assert report["details"]["settle"]["waited_s"] >= 1
    assert report["pipeline"] == "action-log"
    assert report["details"]["log"]["actions"] == len(_actions())
    assert report["details"]["tables"]["B"]["items"] == 29  # 30 + k40, less k1 and k7
    assert report["counts"]["acknowledged"] == len(_actions())
    assert report["lag_ms"]["max"] == 40
    html = run.file(runs.REPORT_HTML).read_text()
    assert 'id="chart-lag-lazy"' in html and "Tables against the fold" in html
    code, again = _recheck(run)  # chosen automatically: the endpoint is not reachable
    assert code == 0
    _same_judgement(report, again)

    a = clients.client("dynamodb", Side.A)
    b = clients.client("dynamodb", Side.B)
    table = names.items_table
    ledger.execute(  # acknowledged, never written to the stream
        "INSERT INTO ledger (trace, producer, seq, pipeline, region, target, partition_key, key,"
        " op, status, shard_id, sequence_number, invoked_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (f"{run.run_id}/w0u1-000009999", f"{run.run_id}/w0u1", 9999, "action-log",
         config.region_a, names.actions_stream, "g2", "50", "put", "ok", "shardId-000000000000",
         "123456789", 0),
    )  # fmt: skip
    ledger.commit()
    ledger.close()
    b.delete_item(TableName=table, Key={"pk": {"S": "5"}})  # lost from B
    a.update_item(TableName=table, Key={"pk": {"S": "9"}}, UpdateExpression="ADD n :d",
                  ExpressionAttributeValues={":d": {"N": "5"}})  # the last ADD again  # fmt: skip
    b.put_item(TableName=table, Item={"pk": {"S": "12"}, "key": {"N": "12"}, "v": {"S": "one"},
                                      "trace": {"S": traces["12"][0]},
                                      "commitTimestamp": {"S": TS}})  # its first state  # fmt: skip

    argv[argv.index("--settle-seconds") + 1] = "1"
    report = verify()
    assert report["verdict"] == "invalid"
    counts = {k: x["count"] for k, x in report["anomalies"].items() if x["count"]}
    assert counts == {"lost": 2, "double_applied": 1, "stale": 1}
    lost = {(e["region"], e["key"]["pk"]): e for e in report["anomalies"]["lost"]["examples"]}
    assert set(lost) == {("stream", "50"), ("B", "5")}
    assert lost[("stream", "50")]["trace"] == f"{run.run_id}/w0u1-000009999"
    assert lost[("B", "5")]["trace"] == traces["5"][-1] and lost[("B", "5")]["shard"]
    (double,) = report["anomalies"]["double_applied"]["examples"]
    assert double["region"] == "A" and double["key"] == {"pk": "9"}
    assert double["attributes"][0]["replayed"][0]["trace"] == traces["9"][-1]
    (stale,) = report["anomalies"]["stale"]["examples"]
    assert stale["region"] == "B" and stale["key"] == {"pk": "12"}
    assert stale["found_state_of"]["trace"] == traces["12"][0]
    assert "verdict: invalid" in capsys.readouterr().out
    code, again = _recheck(run)
    assert code == 1
    _same_judgement(report, again)
    argv.append("--from-store")  # the endpoint answers, but the stored read is asked for
    code = cli.run(cli.build_parser().parse_args(argv))
    assert code == 1
    _same_judgement(report, json.loads(run.file(runs.REPORT_JSON).read_text()))

    run.file("verify-items-b.sqlite").unlink()  # the store is incomplete
    code, again = _recheck(run)
    assert code == 2 and again["verdict"] == "unknown"
    assert again["reasons"][0].startswith("cannot re-check from the store: no verify-items-b")
    assert json.loads(run.file(runs.REPORT_JSON).read_text())["verdict"] == "invalid"  # kept
