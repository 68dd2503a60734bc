"""Table verify (verify.tables) over two moto regions in this process: each check catches its
planted fault and names the key, both values, the traces and the stream positions; a correct
copy is valid; settling waits for a target that catches up and gives up on one that stopped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from moto import mock_aws
from table_fixtures import RUN_ID, TABLE, Pipeline, create_table

from verify.model import ANOMALY_KINDS, Verdict
from verify.runner import run_verify
from verify.tables.run import verify_tables
from xrh.config import EndpointMode, HarnessConfig, Side
from xrh.contracts import BOOTSTRAP_SHARD_ID, checkpoint_scope


class FakeTime:
    """A clock that moves only when slept on; ``on_sleep`` runs at each sleep (a replicator)."""

    def __init__(self, on_sleep=None):
        self.now = 1000.0
        self.slept = 0.0
        self.on_sleep = on_sleep

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds
        if self.on_sleep:
            self.on_sleep()


CONFIG = HarnessConfig(pipeline="dynamodb", endpoint_mode=EndpointMode.AWS)


@pytest.fixture
def pipe(tmp_path: Path):
    run_dir = tmp_path / RUN_ID
    run_dir.mkdir()
    with mock_aws():
        yield Pipeline(CONFIG, run_dir)


def verify(pipe: Pipeline, *, settle_s: float = 0.0, time_: FakeTime | None = None):
    pipe.complete_ledger()
    time_ = time_ or FakeTime()
    return run_verify(
        pipe.run_dir, CONFIG, timeout_s=60, progress=False, clients=pipe.clients,
        clock=time_.clock, sleep=time_.sleep, settle_s=settle_s, scan_segments=2,
    )  # fmt: skip


def only(report: dict, kind: str) -> list[dict]:
    counts = {k: a["count"] for k, a in report["anomalies"].items() if a["count"]}
    assert set(counts) == {kind}, counts
    return report["anomalies"][kind]["examples"]


def test_a_correct_copy_is_valid_and_the_report_keeps_the_shape(pipe: Pipeline) -> None:
    for pk in ("1", "2", "3"):
        pipe.put(pk)
    pipe.put("2", colour="red")  # a second version of a key
    pipe.delete("3")
    pipe.put("9", status="unknown", write=False)  # unknown: never lost
    pipe.copy_all()
    result = verify(pipe)
    report = result.report
    assert result.verdict is Verdict.VALID and result.exit_code == 0, report["reasons"]
    assert set(report["anomalies"]) == set(ANOMALY_KINDS)
    assert report["watermark"]["claimed"] is None and report["watermark"]["verified"] is None
    assert report["counts"] == {"acknowledged": 5, "failed": 0, "unknown": 1,
                                "source_records": 2, "target_records": 2}  # fmt: skip
    details = report["details"]
    assert details["items_compared"] == 4 and details["chunks"]["differing"] == 0
    assert details["stream_changes_read"] == 5
    assert details["scans"]["a"]["items"] == 2 and details["settle"]["waited_s"] == 0.0
    assert details["bootstrap"] == "no bootstrap"
    assert any("deletes are checked through the final state" in n for n in details["notes"])
    for kind in ("duplicated", "reordered", "checkpoint_ahead"):
        assert "does not apply" in details["anomaly_details"][kind]["note"]
    assert json.loads(result.report_json.read_text())["verdict"] == "valid"
    assert "Table comparison" in result.report_html.read_text()


def test_lost_names_the_key_the_value_and_the_stream_position(pipe: Pipeline) -> None:
    pipe.put("1")
    pipe.copy_all()
    trace = pipe.put("2")  # never copied
    report = verify(pipe).report
    assert report["verdict"] == "invalid"
    (example,) = only(report, "lost")
    assert example["key"] == {"pk": "2"} and example["source_trace"] == trace
    assert example["source_value"]["trace"] == {"S": trace} and "target_value" not in example
    assert example["source_change"]["event"] == "INSERT"
    assert int(example["source_change"]["sequence_number"]) > 0


def test_an_acknowledged_write_missing_from_the_source_stream_is_lost(pipe: Pipeline) -> None:
    pipe.put("1")
    pipe.copy_all()
    trace = pipe.put("7", write=False)  # acknowledged, yet A never had it
    pipe.put("8", status="unknown", write=False)
    pipe.put("9", status="fail", write=False)
    report = verify(pipe).report
    (example,) = only(report, "lost")
    assert example["reason"] == "acknowledged_not_in_source_stream"
    assert example["trace"] == trace and example["key"] == {"pk": "7"}


def test_phantom_is_a_key_the_source_never_had(pipe: Pipeline) -> None:
    pipe.put("1")
    pipe.copy_all()
    untraced = pipe.item("66", "x")
    del untraced["trace"]
    pipe.b.put_item(TableName=TABLE, Item=untraced)
    pipe.b.put_item(TableName=TABLE, Item=pipe.item("67", f"{RUN_ID}/w5u5-000000001"))
    pipe.b.put_item(TableName=TABLE, Item=pipe.item("68", "another-run/w0u1-000000001"))
    report = verify(pipe).report
    examples = only(report, "phantom")
    assert [e["key"] for e in examples] == [{"pk": "66"}, {"pk": "67"}]
    assert examples[1]["target_trace"] == f"{RUN_ID}/w5u5-000000001"
    assert examples[0]["target_value"]["key"] == {"N": "66"}
    assert report["details"]["foreign"] == {"keys": 1}  # another run's item: counted only


def test_stale_is_an_older_version_by_the_source_stream_order(pipe: Pipeline) -> None:
    old = pipe.put("1")
    pipe.copy("1")
    new = pipe.put("1", colour="blue")  # B keeps the first version
    report = verify(pipe).report
    (example,) = only(report, "stale")
    assert example["reason"] == "older_version"
    assert (example["source_trace"], example["target_trace"]) == (new, old)
    assert example["source_value"]["colour"] == {"S": "blue"}
    assert "colour" not in example["target_value"]
    assert int(example["target_version_change"]["sequence_number"]) < int(
        example["source_change"]["sequence_number"]
    )


def test_stale_is_also_a_key_the_source_deleted(pipe: Pipeline) -> None:
    pipe.put("1")
    pipe.put("2")
    pipe.copy_all()
    pipe.delete("2")  # B never hears of it
    report = verify(pipe).report
    (example,) = only(report, "stale")
    assert example["reason"] == "deleted_in_source"
    assert example["last_change"]["event"] == "REMOVE" and example["key"] == {"pk": "2"}


def test_diverged_same_trace_different_content(pipe: Pipeline) -> None:
    trace = pipe.put("1")
    pipe.b.put_item(TableName=TABLE, Item=pipe.item("1", trace, colour="mangled"))
    report = verify(pipe).report
    (example,) = only(report, "diverged")
    assert example["reason"] == "same_trace_different_content"
    assert example["source_trace"] == example["target_trace"] == trace
    assert example["target_value"]["colour"] == {"S": "mangled"}


def test_diverged_a_version_the_source_stream_never_had(pipe: Pipeline) -> None:
    pipe.put("1")
    pipe.b.put_item(TableName=TABLE, Item=pipe.item("1", f"{RUN_ID}/w9u9-000000001"))
    report = verify(pipe).report
    (example,) = only(report, "diverged")
    assert example["reason"] == "version_source_never_had"


def test_the_bootstrap_row_and_the_worst_workers_apply_lag_are_reported(pipe: Pipeline) -> None:
    pipe.put("1")
    pipe.copy_all()
    pipe.b.create_table(
        TableName="xrh-checkpoints", BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "scope", "KeyType": "HASH"},
                   {"AttributeName": "shardId", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "scope", "AttributeType": "S"},
                              {"AttributeName": "shardId", "AttributeType": "S"}],
    )  # fmt: skip
    pipe.b.put_item(TableName="xrh-checkpoints", Item={
        "scope": {"S": checkpoint_scope("dynamodb", TABLE, CONFIG.region_a)},
        "shardId": {"S": BOOTSTRAP_SHARD_ID}, "state": {"S": "complete"},
        "owner": {"S": "r1"}, "heartbeatMs": {"N": "1"}, "startedAtMs": {"N": "1"},
        "segments": {"N": "4"}, "itemsCopied": {"N": "20000"}, "copySeconds": {"N": "4"},
        "completedAtMs": {"N": "5"}})  # fmt: skip
    lag = {"count": 10, "p50": 5, "p90": 9, "p99": 12, "max": 20}
    worse = {"count": 3, "p50": 50, "p90": 90, "p99": 120, "max": 200}
    (pipe.run_dir / "replicator-metrics.json").write_text(json.dumps(
        {"workers": {"w1": {"apply_lag_ms": lag}, "w2": {"apply_lag_ms": worse}},
         "totals": {}}))  # fmt: skip
    report = verify(pipe).report
    assert report["verdict"] == "valid"
    assert report["lag_ms"] == {"p50": 50, "p90": 90, "p99": 120, "max": 200}
    assert "workers.w2.apply_lag_ms" in report["details"]["lag_source"]
    boot = report["details"]["bootstrap"]
    assert boot["state"] == "complete" and boot["items_copied"] == 20000
    assert boot["copy_seconds"] == 4 and boot["items_per_s"] == 5000


def test_settle_waits_for_a_target_that_catches_up(pipe: Pipeline) -> None:
    for pk in ("1", "2", "3"):
        pipe.put(pk)
    pipe.copy("1")
    late = FakeTime(on_sleep=pipe.copy_all)  # the replicator delivers while verify waits
    report = verify(pipe, settle_s=10, time_=late).report
    assert report["verdict"] == "valid", report["anomalies"]
    settle = report["details"]["settle"]
    assert settle["differing_after_first_compare"] == 2 and settle["differing_after_settle"] == 0
    assert settle["passes"] >= 1 and settle["waited_s"] > 0 and settle["keys_reread"] == 2


def test_settle_gives_up_on_a_target_that_stopped(pipe: Pipeline) -> None:
    pipe.put("1")
    pipe.put("2")
    pipe.copy("1")
    stopped = FakeTime()
    report = verify(pipe, settle_s=3, time_=stopped).report
    assert report["verdict"] == "invalid"
    (example,) = only(report, "lost")
    assert example["key"] == {"pk": "2"}
    settle = report["details"]["settle"]
    assert settle["stopped_by"] == "no progress for 3 s" and settle["waited_s"] >= 3
    assert (
        "1 item(s) the source table holds or the ledger acknowledged are missing from the "
        "target table" in report["reasons"]
    )  # worded for a table: keys and items, not records
    assert stopped.slept >= 3


def test_no_endpoint_is_unknown_with_the_shape_kept(tmp_path: Path) -> None:
    run_dir = tmp_path / RUN_ID
    run_dir.mkdir()
    result = run_verify(run_dir, HarnessConfig(pipeline="dynamodb"), timeout_s=5,
                        progress=False, settle_s=0)  # fmt: skip
    assert result.verdict is Verdict.UNKNOWN and result.exit_code == 2
    assert set(result.report["anomalies"]) == set(ANOMALY_KINDS)


def test_a_stored_read_is_judged_again_without_the_network(pipe: Pipeline) -> None:
    pipe.put("1")
    pipe.put("2")
    pipe.copy("1")
    first = verify(pipe).report
    again = run_verify(pipe.run_dir, CONFIG, timeout_s=5, progress=False, from_store=True)
    assert again.report["anomalies"]["lost"] == first["anomalies"]["lost"]
    assert any("re-checked from verify.sqlite" in n for n in again.report["details"]["notes"])


# ---------------------------------------------------------------- xrh verify --table mode


def _table_mode(tmp_path: Path, *, stream: bool):
    config = HarnessConfig(endpoint_mode=EndpointMode.AWS, runs_dir=tmp_path)
    pipe_dir = tmp_path / "run"
    pipe_dir.mkdir()
    from table_fixtures import Clients

    clients = Clients(config)
    a, b = clients.client("dynamodb", Side.A), clients.client("dynamodb", Side.B)
    create_table(a, "orders", stream=stream, hash_key="customer", range_key="n")
    create_table(b, "orders-copy", stream=False, hash_key="customer", range_key="n")

    def item(n: int, note: str) -> dict:
        return {"customer": {"S": "c1"}, "n": {"N": str(n)}, "note": {"S": note}}

    return config, pipe_dir, clients, a, b, item


def test_table_mode_without_traces_uses_the_stream_for_stale(tmp_path: Path) -> None:
    with mock_aws():
        config, run_dir, clients, a, b, item = _table_mode(tmp_path, stream=True)
        for n in range(5):
            a.put_item(TableName="orders", Item=item(n, "v1"))
            b.put_item(TableName="orders-copy", Item=item(n, "v1"))
        a.put_item(TableName="orders", Item=item(0, "v2"))  # B keeps v1 of (c1, 0)
        b.put_item(TableName="orders-copy", Item=item(1, "never"))  # no such version in A
        a.put_item(TableName="orders", Item=item(7, "v1"))  # missing from B
        b.put_item(TableName="orders-copy", Item=item(9, "v1"))  # A never had (c1, 9)
        result = verify_tables(run_dir, config, "orders", "orders-copy", timeout_s=30,
                               clients=clients, settle_s=0)  # fmt: skip
    report = result.report
    assert result.verdict is Verdict.INVALID and result.exit_code == 1
    counts = {k: a["count"] for k, a in report["anomalies"].items() if a["count"]}
    assert counts == {"stale": 1, "diverged": 1, "lost": 1, "phantom": 1}
    assert report["anomalies"]["stale"]["examples"][0]["key"] == {"customer": "c1", "n": "0"}
    assert report["details"]["table"]["key"] == ["customer", "n"]
    assert report["counts"]["acknowledged"] == 0 and report["counts"]["source_records"] == 6
    assert json.loads((run_dir / "verify-table.json").read_text())["table_b"] == "orders-copy"


def test_table_mode_without_a_stream_judges_lost_phantom_and_diverged(tmp_path: Path) -> None:
    with mock_aws():
        config, run_dir, clients, a, b, item = _table_mode(tmp_path, stream=False)
        a.put_item(TableName="orders", Item=item(0, "v2"))
        b.put_item(TableName="orders-copy", Item=item(0, "v1"))
        result = verify_tables(run_dir, config, "orders", "orders-copy", timeout_s=30,
                               clients=clients, settle_s=0)  # fmt: skip
    (example,) = only(result.report, "diverged")
    assert example["reason"] == "items_differ"
    assert "not judged" in result.report["details"]["anomaly_details"]["stale"]["note"]


def test_the_runs_injected_faults_and_drill_steps_are_in_the_report(pipe: Pipeline) -> None:
    """The drill matrix and the HTML read faults and the drill's timeline from details, for the
    table pipelines as for kinesis."""
    from xrh.drills.nemesis import TIMELINE_FILE

    pipe.put("1")
    pipe.copy_all()
    fault = {"at_ms": 1, "region": "b", "operation": "BatchWriteItem", "kind": "partial",
             "entries": 3}  # fmt: skip
    (pipe.run_dir / "faults.jsonl").write_text(json.dumps(fault) + "\n")
    steps = [{"at_ms": 1, "action": "drill", "arg": "write-throttling", "ok": True},
             {"at_ms": 2, "action": "faults", "arg": "b:BatchWriteItem:partial=0.3", "ok": True},
             {"at_ms": 3, "action": "drill-end", "ok": True}]  # fmt: skip
    (pipe.run_dir / TIMELINE_FILE).write_text("".join(json.dumps(s) + "\n" for s in steps))
    result = verify(pipe)
    details = result.report["details"]
    assert details["faults"]["total"] == 1
    assert details["drill"]["name"] == "write-throttling"
    assert len(details["drill"]["timeline"]) == 3
    page = result.report_html.read_text()
    assert 'id="faults"' in page and 'id="drill"' in page
