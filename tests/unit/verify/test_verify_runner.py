"""run_verify end to end over fakes: report schema, verdicts, exit codes, HTML charts."""

from __future__ import annotations

import io
import json
import sqlite3
from datetime import UTC, datetime
from html.parser import HTMLParser

from botocore.exceptions import ClientError, EndpointConnectionError
from verify_fakes import FakeKinesis

from verify import print_summary, run_verify
from xrh.config import HarnessConfig, Side
from xrh.contracts import LEDGER_DDL, WatermarkClaim, iso_ms

T0 = 1_700_000_000_000
CONFIG = HarnessConfig(endpoint_url_a="http://127.0.0.1:1", endpoint_url_b="http://127.0.0.1:2")
STREAM = "xrh-stream"
TOP_KEYS = {
    "schema_version", "run_id", "pipeline", "verdict", "reasons", "started_at", "finished_at",
    "counts", "anomalies", "watermark", "lag_ms", "details",
}  # fmt: skip


def record(i: int, lag: int = 0, seq: int | None = None) -> dict:
    data = {"key": i % 3, "commitTimestamp": iso_ms(T0 + i * 10), "trace": f"p-{i}"}
    return {
        "SequenceNumber": str(seq or i + 1),
        "PartitionKey": str(i % 3),
        "Data": json.dumps(data).encode(),
        "ApproximateArrivalTimestamp": datetime.fromtimestamp((T0 + i * 10 + lag) / 1000, UTC),
    }


class FakeDynamo:
    def __init__(self, watermark_ms=None):
        self.watermark_ms = watermark_ms

    def get_item(self, **kw):
        if self.watermark_ms is None:
            raise ClientError({"Error": {"Code": "ResourceNotFoundException"}}, "GetItem")
        return {"Item": {"watermarkMs": {"N": str(self.watermark_ms)}}}


class FakeS3:
    def __init__(self, objects=None):
        self.objects = objects or {}

    def list_objects_v2(self, Bucket, **kw):
        return {"Contents": [{"Key": k} for k in self.objects.get(Bucket, {})]}

    def get_object(self, Bucket, Key):
        return {"Body": io.BytesIO(self.objects[Bucket][Key])}


class FakeClients:
    def __init__(self, source, target, dynamo=None, s3=None):
        self.map = {
            ("kinesis", Side.A): source,
            ("kinesis", Side.B): target,
            ("dynamodb", Side.B): dynamo or FakeDynamo(),
            ("dynamodb", Side.A): FakeDynamo(),  # no B -> A checkpoints
            ("s3", Side.A): s3 or FakeS3(),
            ("s3", Side.B): s3 or FakeS3(),
        }

    def client(self, service, side):
        return self.map[(service, side)]


def write_ledger(path, n, complete=True):
    db = sqlite3.connect(path)
    db.executescript(LEDGER_DDL)
    db.executemany(
        "INSERT INTO ledger (trace, producer, seq, pipeline, region, target, partition_key, key,"
        " commit_ts, status, invoked_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        [
            (f"p-{i}", "p", i, "kinesis", "us-east-1", STREAM, str(i % 3), str(i % 3),
             T0 + i * 10, "ok", T0)
            for i in range(n)
        ],
    )  # fmt: skip
    if complete:
        db.execute("INSERT INTO ledger_meta VALUES ('complete', '1')")
    db.commit()
    db.close()


def stream(records):
    return FakeKinesis({"shardId-0": (None, False, records)}, page=7)


def verify(tmp_path, clients, **kw):
    kw.setdefault("settle_s", 0)  # the planted faults are final: no waiting for a replicator
    return run_verify(tmp_path, CONFIG, clients=clients, progress=False, **kw)


class SlowReplicator:
    """A fake clock whose sleep lets a replicator copy ``per_second`` more records into the
    target's only shard (a Lambda with some iterator age), until ``pending`` is empty."""

    def __init__(self, target, pending, per_second):
        self.now, self.target, self.pending, self.per_second = 0.0, target, pending, per_second

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds
        due = int(self.now * self.per_second)
        shard = self.target.shards["shardId-0"][2]
        while self.pending and len(shard) < due:
            shard.append(self.pending.pop(0))


def test_slow_replicator_is_waited_for_and_nothing_is_called_lost(tmp_path):
    write_ledger(tmp_path / "ledger.sqlite", 30)
    target = stream([])
    slow = SlowReplicator(target, [record(i, lag=12_000) for i in range(30)], per_second=3)
    result = verify(tmp_path, FakeClients(stream([record(i) for i in range(30)]), target),
                    clock=slow.clock, sleep=slow.sleep, settle_s=5)  # fmt: skip
    assert result.verdict.value == "valid", result.report["reasons"]
    settle = result.report["details"]["settle"]
    assert settle["missing_after_first_read"] >= 20 and settle["missing_after_settle"] == 0
    assert settle["waited_s"] >= 9  # 30 records at 3/s
    assert result.report["counts"]["target_records"] == 30


def test_nothing_replicating_is_lost_after_settle_seconds_without_progress(tmp_path):
    write_ledger(tmp_path / "ledger.sqlite", 10)
    target = stream([])
    slow = SlowReplicator(target, [], per_second=0)
    result = verify(tmp_path, FakeClients(stream([record(i) for i in range(10)]), target),
                    clock=slow.clock, sleep=slow.sleep, settle_s=4)  # fmt: skip
    assert result.verdict.value == "invalid"
    assert result.report["anomalies"]["lost"]["count"] == 10
    settle = result.report["details"]["settle"]
    assert settle["stopped_by"] == "no progress for 4 s"
    assert 4 <= settle["waited_s"] < 6


def test_settle_is_bounded_by_the_verify_timeout(tmp_path):
    write_ledger(tmp_path / "ledger.sqlite", 30)
    target = stream([])
    slow = SlowReplicator(target, [record(i, lag=60_000) for i in range(30)], per_second=1)
    result = verify(tmp_path, FakeClients(stream([record(i) for i in range(30)]), target),
                    clock=slow.clock, sleep=slow.sleep, settle_s=5, timeout_s=10)  # fmt: skip
    settle = result.report["details"]["settle"]
    assert settle["stopped_by"] == "verify timeout"
    assert 0 < result.report["anomalies"]["lost"]["count"] < 30


def test_without_a_ledger_records_reaching_the_source_after_verify_began_are_not_lost(tmp_path):
    source = [record(i) for i in range(10)]  # arrivals T0 .. T0 + 90 ms
    target = [record(i, lag=5) for i in range(6)]
    result = verify(tmp_path, FakeClients(stream(source), stream(target)),
                    wall_ms=lambda: T0 + 55)  # fmt: skip
    assert result.report["anomalies"]["lost"]["count"] == 0
    assert result.report["details"]["anomaly_details"]["lost"][
        "arrived_after_verify_began"] == 4  # fmt: skip
    early = verify(tmp_path, FakeClients(stream(source), stream(target[:4])),
                   wall_ms=lambda: T0 + 55)  # fmt: skip
    assert early.report["anomalies"]["lost"]["count"] == 2


def test_clean_copy_is_valid_with_the_exact_schema(tmp_path):
    write_ledger(tmp_path / "ledger.sqlite", 30)
    claims = [WatermarkClaim(T0 + 300, T0 + 100, STREAM, "us-east-1", "us-east-2", "r")]
    (tmp_path / "claims.jsonl").write_text("".join(c.to_line() for c in claims))
    clients = FakeClients(
        stream([record(i) for i in range(30)]),
        stream([record(i, lag=50) for i in range(30)]),
        FakeDynamo(watermark_ms=T0 + 290),
    )
    result = verify(tmp_path, clients)
    report = json.loads(result.report_json.read_text())
    assert result.exit_code == 0 and report["verdict"] == "valid", report["reasons"]
    assert set(report) == TOP_KEYS
    assert set(report["anomalies"]) == {
        "lost", "duplicated", "reordered", "phantom", "stale", "diverged", "checkpoint_ahead",
        "looped",
    }  # fmt: skip
    assert report["counts"] == {
        "acknowledged": 30, "failed": 0, "unknown": 0, "source_records": 30, "target_records": 30,
    }  # fmt: skip
    assert report["lag_ms"]["max"] == 50
    assert report["watermark"]["claimed"] == iso_ms(T0 + 290)
    assert report["details"]["anomaly_details"]["checkpoint_ahead"]["claims_checked"] == 2
    assert report["details"]["tolerance_ms"] == 0
    assert (tmp_path / "verify.sqlite").exists()


def test_dead_lettered_poison_record_is_counted_and_listed_not_lost(tmp_path):
    write_ledger(tmp_path / "ledger.sqlite", 10)
    bad = json.loads(record(4)["Data"])
    dead = json.dumps({"partitionKey": "1", "data": json.dumps(bad), "reason": "too_large"})
    s3 = FakeS3({"xrh-dead-letter-us-east-2": {"k1": dead.encode()}})
    target = [record(i) for i in range(10) if i != 4]
    result = verify(tmp_path, FakeClients(stream([record(i) for i in range(10)]),
                                          stream(target), s3=s3))  # fmt: skip
    assert result.exit_code == 0, result.report["reasons"]
    assert result.report["anomalies"]["lost"]["count"] == 0
    assert result.report["anomalies"]["stale"]["count"] == 0
    assert result.report["details"]["anomaly_details"]["lost"]["dead_lettered_with_data"] == 1
    assert result.report["details"]["dead_letters"]["count"] == 1
    assert result.report["details"]["dead_letters"]["records"][0]["reason"] == "too_large"
    out = io.StringIO()
    print_summary(result.report, file=out)
    assert "verdict: valid" in out.getvalue()
    assert "dead-lettered: 1 record(s), kept with their data (too_large)" in out.getvalue()


def test_unreachable_endpoint_is_unknown_exit_2(tmp_path):
    write_ledger(tmp_path / "ledger.sqlite", 3)
    down = stream([])
    down.faults = {1: EndpointConnectionError(endpoint_url="http://127.0.0.1:2")}
    result = verify(tmp_path, FakeClients(stream([record(i) for i in range(3)]), down))
    assert result.exit_code == 2 and result.report["verdict"] == "unknown"
    assert "not reachable" in result.report["reasons"][0]
    assert set(result.report) == TOP_KEYS


def test_incomplete_ledger_is_unknown(tmp_path):
    write_ledger(tmp_path / "ledger.sqlite", 5, complete=False)
    recs = [record(i) for i in range(5)]
    result = verify(tmp_path, FakeClients(stream(recs), stream(recs)))
    assert result.exit_code == 2
    assert "not marked complete" in result.report["reasons"][0]


def test_read_deadline_is_unknown(tmp_path):
    recs = [record(i) for i in range(50)]
    ticks = iter(range(0, 10_000, 1))
    result = verify(tmp_path, FakeClients(stream(recs), stream(recs)), timeout_s=3,
                    clock=lambda: next(ticks))  # fmt: skip
    assert result.exit_code == 2
    assert "not read to its end" in result.report["reasons"][0]


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.svgs, self.external = set(), 0, []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "svg":
            self.svgs += 1
        for name in ("src", "href"):
            if attrs.get(name):
                self.external.append(attrs[name])
        if tag == "link":
            self.external.append(attrs.get("href"))


def test_html_has_every_chart_and_the_anomaly_table_and_is_offline(tmp_path):
    write_ledger(tmp_path / "ledger.sqlite", 30)
    target = [record(i, lag=5 * i) for i in range(30) if i != 7]
    result = verify(tmp_path, FakeClients(stream([record(i) for i in range(30)]), stream(target)))
    parser = _Collect()
    parser.feed(result.report_html.read_text())
    assert {"chart-lag-over-time", "chart-lag-per-shard", "chart-rates", "anomalies"} <= parser.ids
    assert parser.svgs == 3
    assert parser.external == []
    html = result.report_html.read_text()
    assert "p-7" in html and "<polyline" in html and "<rect" in html


def test_checkpoint_published_before_copying_is_caught_without_any_claims_log(tmp_path):
    """The replicator under test writes no claims.jsonl; verify looks at B's checkpoint table
    itself and sees W covering records the target does not have yet."""
    write_ledger(tmp_path / "ledger.sqlite", 30)
    target = stream([])
    slow = SlowReplicator(target, [record(i, lag=12_000) for i in range(30)], per_second=10)
    result = verify(tmp_path, FakeClients(stream([record(i) for i in range(30)]), target,
                                          FakeDynamo(watermark_ms=T0 + 290)),
                    clock=slow.clock, sleep=slow.sleep, settle_s=5,
                    wall_ms=lambda: T0 + 1_000)  # fmt: skip
    assert not (tmp_path / "claims.jsonl").exists()
    ahead = result.report["anomalies"]["checkpoint_ahead"]
    assert result.verdict.value == "invalid" and ahead["count"] >= 1
    example = ahead["examples"][0]
    assert "seen in the target's checkpoint table" in example["explanation"]
    assert example["direction"] == "a -> b"
    observed = (tmp_path / "observed-claims.jsonl").read_text().splitlines()
    assert len(observed) == 1 and json.loads(observed[0])["watermark_ms"] == T0 + 290


def test_checkpoint_published_after_copying_holds(tmp_path):
    write_ledger(tmp_path / "ledger.sqlite", 30)
    recs = [record(i) for i in range(30)]
    result = verify(tmp_path, FakeClients(stream(recs), stream([record(i, lag=5) for i in
                                                                 range(30)]),
                                          FakeDynamo(watermark_ms=T0 + 290)),
                    wall_ms=lambda: T0 + 1_000)  # fmt: skip
    assert result.verdict.value == "valid", result.report["reasons"]
    assert result.report["details"]["anomaly_details"]["checkpoint_ahead"]["claims_checked"] == 1


def test_claims_of_other_streams_and_regions_are_not_held_against_this_run(tmp_path):
    write_ledger(tmp_path / "ledger.sqlite", 30)
    lines = [
        WatermarkClaim(T0 + 300, T0 + 290, "other-stream", "us-east-1", "us-east-2", "r"),
        WatermarkClaim(T0 + 300, T0 + 290, STREAM, "eu-west-1", "us-east-2", "r"),
    ]
    (tmp_path / "claims.jsonl").write_text("".join(c.to_line() for c in lines))
    recs = [record(i) for i in range(30)]
    result = verify(
        tmp_path, FakeClients(stream(recs), stream([record(i, lag=50_000) for i in range(30)]))
    )
    assert result.report["anomalies"]["checkpoint_ahead"]["count"] == 0
    assert result.report["details"]["claims"]["other_streams_or_regions"] == 2


def test_reverify_that_cannot_read_keeps_the_earlier_report(tmp_path):
    write_ledger(tmp_path / "ledger.sqlite", 3)
    recs = [record(i) for i in range(3)]
    first = verify(tmp_path, FakeClients(stream(recs), stream(recs)))
    assert first.verdict.value == "valid"
    before = (tmp_path / "report.json").read_text()
    gone = stream([])
    gone.faults = {1: EndpointConnectionError(endpoint_url="http://127.0.0.1:1")}
    other = stream([])
    other.faults = {1: EndpointConnectionError(endpoint_url="http://127.0.0.1:2")}
    again = verify(tmp_path, FakeClients(gone, other))
    assert again.verdict.value == "unknown"
    assert (tmp_path / "report.json").read_text() == before
    assert again.report_json.name.startswith("report-") and again.report_json.exists()
    assert again.report_html.exists() and again.report_html != first.report_html


def test_unknown_verdict_still_reads_and_reports_what_it_found(tmp_path):
    write_ledger(tmp_path / "ledger.sqlite", 10)
    recs = [record(i) for i in range(10)]
    result = verify(tmp_path, FakeClients(stream(recs), stream(recs[:8])),
                    incomplete=["the replicator did not drain within 120s"])  # fmt: skip
    report = result.report
    assert result.exit_code == 2 and report["verdict"] == "unknown"
    assert report["reasons"] == ["the replicator did not drain within 120s"]
    assert report["counts"]["source_records"] == 10 and report["counts"]["target_records"] == 8
    assert report["anomalies"]["lost"]["count"] == 2
    assert any("evidence is incomplete" in note for note in report["details"]["notes"])


def test_report_says_in_words_whether_claims_held_and_charts_have_ticks(tmp_path):
    """A verified time earlier than the claimed one is not a violation: the report says the
    claim held and up to where the data proves it; charts carry tick labels and units."""
    write_ledger(tmp_path / "ledger.sqlite", 30)
    recs = [record(i) for i in range(30)]
    # the last record (committed T0 + 290) reached the source only after the claim covering it
    # was made, and never reached the target: lost, but the claim was true when made
    target = [record(i, lag=5) for i in range(29)]
    late = dict(recs[29], ApproximateArrivalTimestamp=datetime.fromtimestamp(
        (T0 + 5_000) / 1000, UTC))  # fmt: skip
    claims = [WatermarkClaim(T0 + 1_000, T0 + 295, STREAM, "us-east-1", "us-east-2", "r")]
    (tmp_path / "claims.jsonl").write_text("".join(c.to_line() for c in claims))
    result = verify(tmp_path, FakeClients(stream([*recs[:29], late]), stream(target)))
    wm = result.report["watermark"]
    assert result.report["anomalies"]["lost"]["count"] == 1
    assert result.report["anomalies"]["checkpoint_ahead"]["count"] == 0
    assert wm["held"] is True and wm["verified"] < wm["claimed"]  # earlier, and no violation
    assert "all 1 claim(s) held" in wm["statement"]
    assert "newest a -> b claim" in wm["statement"] and "held" in wm["statement"]
    html = result.report_html.read_text()
    assert 'id="watermark"' in html and "all 1 claim(s) held" in html
    assert "replication lag (ms)" in html and "seconds since" in html
    assert html.count('text-anchor="end" font-size="10"') >= 6  # y tick labels on the charts
