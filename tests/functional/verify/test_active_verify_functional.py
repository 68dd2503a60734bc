"""``xrh verify --run-dir`` of an active-active run against the embedded endpoint (two moto
servers over HTTP): both regions' tables written with last-writer-wins stamps, each change
forwarded into the other region's staging stream and applied there as a correct replicator
would (a tiny one in this test: nothing from ``replicator``), and a ledger of the writes. The
run is valid, also re-checked from verify.sqlite with the endpoint gone; then faults are
planted (a key diverged, a resurrected delete, a change looped back to its origin) and each is
reported with its anomaly and an example naming the key."""

from __future__ import annotations

import json
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from verify import cli
from xrh import runs
from xrh.active_active import LAG_FILE
from xrh.aws import AwsClients
from xrh.config import Side, parse_config
from xrh.contracts import LEDGER_DDL
from xrh.provision import destroy, provision
from xrh.resources import ResourceNames

pytestmark = pytest.mark.functional


@pytest.fixture
def active(endpoint, tmp_path: Path):
    prefix = f"aa{int(time.time() * 1000) % 100000}"
    config = parse_config(["--prefix", prefix, "--pipeline", "active-active", "--shards", "1",
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


class Harness:
    """Writes in either region, forwarded and applied like a correct replicator."""

    def __init__(self, config: Any, run: runs.RunDir) -> None:
        self.config, self.run = config, run
        self.names = ResourceNames(config.prefix)
        clients = AwsClients(config)
        self.ddb = {s: clients.client("dynamodb", s) for s in (Side.A, Side.B)}
        self.kinesis = {s: clients.client("kinesis", s) for s in (Side.A, Side.B)}
        self.ledger = sqlite3.connect(run.file(runs.LEDGER_FILE))
        self.ledger.executescript(LEDGER_DDL)
        self.seq = 0
        self.source = 0

    def item(self, side: Side, pk: str, ts: int, trace: str | None, tomb: bool = False) -> dict:
        out = {"pk": {"S": pk}, "last_update_timestamp": {"N": str(ts)},
               "last_updater_region": {"S": self.config.region(side)}}  # fmt: skip
        if tomb:
            out["xrh_deleted"] = {"BOOL": True}
        else:
            out.update(trace={"S": trace}, v={"S": f"{pk}@{ts}"}, n={"N": "1.0"})
        return out

    def log(self, side: Side, pk: str, ts: int | None, op: str) -> str:
        self.seq += 1
        trace = f"{self.run.run_id}/w0u1-{self.seq:09d}"
        now = int(time.time() * 1000)
        self.ledger.execute(
            "INSERT INTO ledger (trace, producer, seq, pipeline, region, target, partition_key,"
            " key, op, status, commit_ts, invoked_at, completed_at) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (trace, f"{self.run.run_id}/w0u1", self.seq, "active-active",
             self.config.region(side), self.names.items_table, pk, pk, op, "ok", ts, now,
             now + 3),
        )  # fmt: skip
        self.ledger.commit()
        return trace

    def forward(self, side: Side, item: dict, *, origin: Side | None = None,
                to: Side | None = None) -> None:  # fmt: skip
        """Into the other region's staging stream (or ``to``'s), and applied there."""
        self.source += 1
        to = to or side.other
        doc = {"pk": item["pk"]["S"], "image": item, "origin": self.config.region(origin or side),
               "stamp": [int(item["last_update_timestamp"]["N"]),
                         item["last_updater_region"]["S"]],
               "source": {"shard": "shardId-000000000000", "seq": str(self.source),
                          "created_ms": int(time.time() * 1000) - 25}}  # fmt: skip
        self.kinesis[to].put_record(StreamName=self.names.staging_stream,
                                    Data=json.dumps(doc), PartitionKey=doc["pk"])  # fmt: skip

    def write(self, side: Side, pk: str, ts: int, *, apply_other: bool = True) -> str:
        trace = self.log(side, pk, ts, "put")
        item = self.item(side, pk, ts, trace)
        self.ddb[side].put_item(TableName=self.names.items_table, Item=item)
        self.forward(side, item)
        if apply_other:
            self.ddb[side.other].put_item(TableName=self.names.items_table, Item=item)
        return trace

    def delete(self, side: Side, pk: str, removed_ts: int, *, apply_other: bool = True) -> None:
        self.log(side, pk, removed_ts + 1, "delete")
        stone = self.item(side, pk, removed_ts + 1, None, tomb=True)
        self.ddb[side].put_item(TableName=self.names.items_table, Item=stone)
        self.forward(side, stone)
        if apply_other:
            self.ddb[side.other].put_item(TableName=self.names.items_table, Item=stone)


def test_active_active_run_valid_then_planted_faults_reported(active, capsys):
    config = active
    run = runs.create_run(config.runs_dir, config.to_public_dict())
    h = Harness(config, run)
    t0 = 1_700_000_000_000
    for k in range(12):
        h.write(Side.A if k % 2 else Side.B, f"k{k}", t0 + k)
    h.write(Side.A, "k0", t0 + 100)  # a conflict: both regions, one millisecond
    h.write(Side.B, "k0", t0 + 100)  # (t, us-east-2) beats (t, us-east-1): B's wins
    h.delete(Side.A, "k3", t0 + 3)
    h.ledger.execute("INSERT INTO ledger_meta VALUES ('complete', '1')")
    h.ledger.commit()
    lag = [{"ts_ms": t0 + i * 1000, "direction": d, "lag_ms": 10 * i}
           for i in range(4) for d in ("a->b", "b->a")]  # fmt: skip
    run.file(LAG_FILE).write_text("".join(json.dumps(x) + "\n" for x in lag))
    argv = ["--run-dir", str(run.path), "--no-progress", "--settle-seconds", "1",
            "--timeout", "60", "--endpoint-url-a", config.endpoint_url_a,
            "--endpoint-url-b", config.endpoint_url_b]  # fmt: skip

    def verify(args: list[str]) -> tuple[int, dict[str, Any]]:
        before = set(run.path.glob("report*.json"))
        code = cli.run(cli.build_parser().parse_args(args))
        written = set(run.path.glob("report*.json")) - before
        path = written.pop() if written else run.file(runs.REPORT_JSON)
        report = json.loads(path.read_text())
        assert code == {"valid": 0, "invalid": 1, "unknown": 2}[report["verdict"]]
        return code, report

    code, report = verify(argv)
    assert report["verdict"] == "valid", (report["reasons"], report["anomalies"])
    assert report["pipeline"] == "active-active"
    assert report["counts"]["acknowledged"] == 15
    details = report["details"]
    assert details["tables"]["A"]["items"] == 11 and details["tables"]["A"]["tombstones"] == 1
    assert details["conflicts"]["generated"] >= 1 and details["conflicts"]["resolved"] >= 1
    assert details["convergence"]["converged"] and details["convergence"]["convergence_ms"] >= 0
    assert details["staging"]["records"] == {"a->b": 8, "b->a": 7}
    forwarding = details["lag"]["forwarding"]["per_direction"]
    assert forwarding["a->b"]["samples"] == 8 and forwarding["a->b"]["p50"] >= 0
    assert report["lag_ms"]["max"] == 30  # from the appliers' lag file
    for kind in ("duplicated", "reordered", "checkpoint_ahead", "looped"):
        assert "does not apply" in details["anomaly_details"][kind]["note"]
    html = run.file(runs.REPORT_HTML).read_text()
    assert 'id="chart-forwarding-lag-a-b"' in html and 'id="chart-applied-lag-b-a"' in html
    gone = ["--endpoint-url-a", _closed_port_url(), "--endpoint-url-b", _closed_port_url()]
    code, again = verify(argv[:7] + gone)
    assert code == 0 and again["anomalies"] == report["anomalies"]
    assert again["details"]["from_store"]["read_at"]

    # Faults: k5 diverged (B holds its own older version), a delete of k7 in B never reached
    # A (resurrected there), and a change of A forwarded back into A's staging stream.
    table = h.names.items_table
    h.ddb[Side.B].put_item(TableName=table, Item={**h.item(Side.A, "k5", t0 + 5, "x"),
                                                  "v": {"S": "changed"}})  # fmt: skip
    h.delete(Side.B, "k7", t0 + 7, apply_other=False)
    h.forward(Side.A, h.item(Side.A, "k9", t0 + 9, "t"), to=Side.A)
    code, report = verify(argv)
    assert code == 1 and report["verdict"] == "invalid"
    counts = {k: a["count"] for k, a in report["anomalies"].items() if a["count"]}
    assert counts == {"diverged": 2, "phantom": 1, "resurrected": 1, "ping_pong": 1}, counts
    keys = {k: {e["key"]["pk"] for e in a["examples"]} for k, a in report["anomalies"].items()}
    assert keys["diverged"] == {"k5", "k7"} and keys["phantom"] == {"k5"}
    (res,) = report["anomalies"]["resurrected"]["examples"]
    assert res["table"] == "A" and res["B"]["tombstone"] and res["winner"]["ops"] == ["delete"]
    (loop,) = report["anomalies"]["ping_pong"]["examples"]
    assert loop["reason"] == "origin_is_destination" and loop["key"] == {"pk": "k9"}
    assert "verdict: invalid" in capsys.readouterr().out
    code, again = verify(argv[:7] + gone)
    assert code == 1 and again["anomalies"] == report["anomalies"]
