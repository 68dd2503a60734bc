"""The active-active pipeline's Lambda handlers over fakes (the forwarder: a DynamoDB stream event
to staging records, local changes only, a REMOVE as a tombstone; the applier: a Kinesis event
applied last-writer-wins, a re-delivery changing nothing; all-or-nothing batchItemFailures; the
environment) and their SAM template through cfn-lint."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from replicator.core.changes import LAMBDA_SHARD, ChangeRecord
from replicator.core.checkpoint import MemoryCheckpointStore
from replicator.core.fakes import ScriptedSink
from replicator.core.lww_apply import Applier
from replicator.core.lww_fakes import FakeItemsTable, item
from replicator.core.lww_forward import Forwarder
from replicator.core.lww_records import encode
from replicator.core.lww_writes import ConditionalWriter
from replicator.core.putrecords import Backoff, PutRecordsSender
from replicator.errors import ReplicatorUsageError, RetryableRequestError
from replicator.runners import lambda_active_apply, lambda_active_forward
from replicator.runners.lambda_active_apply import lag_metric
from xrh.active_active import (
    APPLY_SCOPE,
    FORWARD_SCOPE,
    STAMP_REGION,
    STAMP_TS,
    TOMBSTONE,
    Stamp,
    stamp_of,
)

TEMPLATE = Path(__file__).resolve().parents[3] / "deploy" / "active-active-template.yaml"
A, B = "us-east-1", "us-west-2"
SHARD = "shardId-000000000002"
FORWARD_ENV = {"TABLE_NAME": "p-items", "STAGING_STREAM": "p-staging", "TARGET_REGION": B,
               "CHECKPOINT_TABLE": "p-checkpoints", "DEAD_LETTER_BUCKET": "dl",
               "AWS_REGION": A}  # fmt: skip
APPLY_ENV = {"TABLE_NAME": "p-items", "STAGING_STREAM": "p-staging", "SOURCE_REGION": A,
             "CHECKPOINT_TABLE": "p-checkpoints", "DEAD_LETTER_BUCKET": "dl",
             "AWS_REGION": B}  # fmt: skip
FAST = Backoff(base=0.0, cap=0.0, max_attempts=2)


class Letters:
    def __init__(self) -> None:
        self.letters: list = []

    def put(self, letters) -> None:
        self.letters.extend(letters)


# ---------------------------------------------------------------------- the forwarder


def stream_event(changes: list[ChangeRecord]) -> dict:
    """A DynamoDB stream event as Lambda delivers it (no shard id; creation time in seconds)."""
    records = []
    for c in changes:
        body: dict[str, Any] = {"Keys": c.keys, "SequenceNumber": c.sequence_number,
                                "ApproximateCreationDateTime": (c.approximate_ms or 0) / 1000,
                                "StreamViewType": "NEW_AND_OLD_IMAGES"}  # fmt: skip
        if c.new_image is not None:
            body["NewImage"] = c.new_image
        if c.old_image is not None:
            body["OldImage"] = c.old_image
        records.append({
            "eventID": f"e{c.sequence_number}", "eventName": c.event.value,
            "eventSource": "aws:dynamodb", "awsRegion": A,
            "eventSourceARN": f"arn:aws:dynamodb:{A}:1:table/p-items/stream/2024", "dynamodb": body,
        })  # fmt: skip
    return {"Records": records}


def forwarder(table: FakeItemsTable, staging: ScriptedSink, checkpoints, letters=None):
    return Forwarder(
        table="p-items", region=A, other_region=B,
        sender=PutRecordsSender(staging, "p-staging", backoff=FAST, sleep=lambda s: None),
        writer=ConditionalWriter(table, "p-items", backoff=FAST, sleep=lambda s: None,
                                 max_in_flight=1),
        checkpoints=checkpoints, dead_letters=letters or Letters(),
    )  # fmt: skip


def sent(staging: ScriptedSink) -> list[dict]:
    return [json.loads(r.entry.data) for r in staging.records]


def test_the_forwarder_sends_local_changes_and_a_remove_as_a_tombstone() -> None:
    table = FakeItemsTable(clock_ms=lambda: 1_700_000_000_000)
    staging, checkpoints = ScriptedSink(shard_count=1), MemoryCheckpointStore()
    fwd = forwarder(table, staging, checkpoints)
    table.put(item("1", 100, A, v="a"))  # a local write
    table.put(item("2", 100, B, v="b"))  # the applier's write of B's version: not local
    table.put(item("3", 100, A, v="c"))
    table.delete(None, {"pk": {"S": "3"}})  # an application's DeleteItem
    out = lambda_active_forward.handle(stream_event(table.stream[:4]), fwd)
    assert out == {"batchItemFailures": []}
    assert [(r["pk"], r["stamp"], r["origin"]) for r in sent(staging)] == [
        ("1", [100, A], A), ("3", [100, A], A), ("3", [101, A], A),
    ]  # fmt: skip
    tomb = sent(staging)[2]["image"]
    assert set(tomb) == {"pk", STAMP_TS, STAMP_REGION, TOMBSTONE}  # the key, stamp and flag
    assert tomb[TOMBSTONE] == {"BOOL": True}
    assert sent(staging)[0]["source"] == {"shard": LAMBDA_SHARD, "seq": "1",
                                          "created_ms": 1_700_000_000_000}  # fmt: skip
    # The delete is kept in A's table as the tombstone, written under the condition.
    assert table.items["3"][TOMBSTONE] == {"BOOL": True}
    assert stamp_of(table.items["3"]) == Stamp(101, A)
    row = checkpoints.rows[LAMBDA_SHARD]  # one row: the event does not say the shard
    assert row.sequence_number == "4"
    counters = fwd.metrics.counters
    assert counters["forwarded"] == 2 and counters["tombstones"] == 1
    assert counters["skipped_not_local"] == 1 and counters["tombstones_written"] == 1
    # The tombstone's own write comes back through the stream: not forwarded again.
    assert lambda_active_forward.handle(stream_event(table.stream[4:]), fwd) == {
        "batchItemFailures": []
    }
    assert len(staging.records) == 3 and counters["skipped_own_tombstones"] == 1
    assert checkpoints.rows[LAMBDA_SHARD].sequence_number == "5"


def test_a_forwarder_that_cannot_send_reports_the_first_change_and_checkpoints_nothing() -> None:
    table, checkpoints = FakeItemsTable(), MemoryCheckpointStore()
    staging = ScriptedSink(shard_count=1)
    for call in (1, 2):
        staging.fail_call(call, RetryableRequestError("throttled", "ThrottlingException"))
    fwd = forwarder(table, staging, checkpoints)
    table.put(item("1", 100, A, v="a"))
    table.put(item("2", 100, A, v="b"))
    out = lambda_active_forward.handle(stream_event(table.stream), fwd)
    assert out == {"batchItemFailures": [{"itemIdentifier": "1"}]}
    assert staging.records == [] and checkpoints.rows == {} and checkpoints.writes == 0
    assert fwd.metrics.counters["failed_batches"] == 1
    # Lambda delivers the batch again: now it goes through.
    assert lambda_active_forward.handle(stream_event(table.stream), fwd) == {
        "batchItemFailures": []
    }
    assert [r["pk"] for r in sent(staging)] == ["1", "2"]
    assert checkpoints.rows[LAMBDA_SHARD].sequence_number == "2"


def test_a_failed_tombstone_write_fails_the_batch_before_anything_is_sent() -> None:
    throttled = RetryableRequestError("throttled", "Throttling")
    table = FakeItemsTable(fail={1: throttled, 2: throttled})
    staging, checkpoints = ScriptedSink(shard_count=1), MemoryCheckpointStore()
    fwd = forwarder(table, staging, checkpoints)
    table.put(item("1", 100, A, v="a"))
    table.delete(None, {"pk": {"S": "1"}})
    out = lambda_active_forward.handle(stream_event(table.stream), fwd)
    assert out == {"batchItemFailures": [{"itemIdentifier": "1"}]}
    assert staging.records == [] and checkpoints.writes == 0 and "1" not in table.items


def test_forwarder_empty_events_succeed() -> None:
    fwd = forwarder(FakeItemsTable(), ScriptedSink(), MemoryCheckpointStore())
    assert lambda_active_forward.handle({"Records": []}, fwd) == {"batchItemFailures": []}


# ---------------------------------------------------------------------- the applier


def staged(image: dict, seq: int, created_ms: int = 1_700_000_000_000) -> bytes:
    """The staging record A's forwarder sends for ``image`` (read at ``seq`` of A's stream)."""
    stamp = stamp_of(image)
    assert stamp is not None
    change = ChangeRecord(LAMBDA_SHARD, str(seq), None, {"pk": image["pk"]}, image, None,
                          approximate_ms=created_ms)  # type: ignore[arg-type]  # fmt: skip
    return encode(image, A, stamp, change)


def kinesis_event(docs: list[bytes], first: int = 100, shard: str = SHARD) -> dict:
    """A Kinesis event as Lambda delivers it: one shard, data base64, arrival in seconds."""
    return {
        "Records": [
            {
                "eventSource": "aws:kinesis",
                "eventID": f"{shard}:{first + i}",
                "eventSourceARN": f"arn:aws:kinesis:{B}:1:stream/p-staging",
                "awsRegion": B,
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "sequenceNumber": str(first + i),
                    "partitionKey": "k",
                    "data": base64.b64encode(doc).decode(),
                    "approximateArrivalTimestamp": 1700000000.5 + i,
                },
            }
            for i, doc in enumerate(docs)
        ]
    }


def applier(table: FakeItemsTable, checkpoints, letters=None, lag=lag_metric) -> Applier:
    return Applier(
        stream="p-staging", table="p-items", region=B, other_region=A, direction=f"{A}->{B}",
        writer=ConditionalWriter(table, "p-items", backoff=FAST, sleep=lambda s: None,
                                 max_in_flight=1),
        checkpoints=checkpoints, dead_letters=letters or Letters(),
        clock_ms=lambda: 1_700_000_002_500, lag_sink=lag,
    )  # fmt: skip


def emf(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_the_applier_applies_last_writer_wins(capsys: pytest.CaptureFixture[str]) -> None:
    table, checkpoints = FakeItemsTable(), MemoryCheckpointStore()
    table.put(item("1", 200, B, v="b-newer"))  # B wrote key 1 after A's version below
    app = applier(table, checkpoints)
    docs = [
        staged(item("1", 150, A, v="a-older"), 1),  # older than B's: superseded
        staged(item("2", 100, A, v="first"), 2),
        staged(item("2", 300, A, v="second"), 3),  # the same key, later: squashed to it
        staged(item("3", 100, A, v="x"), 4, created_ms=1_700_000_001_000),
    ]
    assert lambda_active_apply.handle(kinesis_event(docs), app) == {"batchItemFailures": []}
    values = {k: v["v"]["S"] for k, v in table.items.items()}
    assert values == {"1": "b-newer", "2": "second", "3": "x"}
    counters = app.metrics.counters
    assert counters["superseded"] == 1 and counters["applied"] == 2 and counters["squashed"] == 1
    assert checkpoints.rows[SHARD].sequence_number == "103"  # shard from eventID, per shard
    lines = emf(capsys.readouterr().out)
    lag = [line for line in lines if "replication_lag_ms" in line]
    assert len(lag) == 1  # the poller's lag line, as an EMF metric
    assert lag[0]["replication_lag_ms"] == 1_500 and lag[0]["Direction"] == f"{A}->{B}"
    assert lag[0]["_aws"]["Timestamp"] == 1_700_000_002_500
    assert lag[0]["_aws"]["CloudWatchMetrics"][0]["Metrics"] == [
        {"Name": "replication_lag_ms", "Unit": "Milliseconds"}
    ]
    batch = next(line for line in lines if "applied" in line)
    assert batch["applied"] == 2 and batch["Stream"] == "p-staging"


def test_a_redelivered_event_changes_nothing() -> None:
    table, checkpoints = FakeItemsTable(), MemoryCheckpointStore()
    app = applier(table, checkpoints, lag=lambda line: None)
    docs = [staged(item("1", 100, A, v="a"), 1), staged(item("2", 100, A, v="b"), 2)]
    assert lambda_active_apply.handle(kinesis_event(docs), app) == {"batchItemFailures": []}
    before = {k: dict(v) for k, v in table.items.items()}
    table.put(item("2", 400, B, v="b-local"))  # B writes key 2 meanwhile
    before["2"] = dict(table.items["2"])
    for event in (kinesis_event(docs), kinesis_event(docs[1:], first=101)):
        assert lambda_active_apply.handle(event, app) == {"batchItemFailures": []}
    assert table.items == before  # the replay wrote the same versions, the older one refused
    assert checkpoints.rows[SHARD].sequence_number == "101"


def test_a_failed_write_reports_the_first_record_and_checkpoints_nothing() -> None:
    throttled = RetryableRequestError("throttled", "Throttling")
    table = FakeItemsTable(fail=dict.fromkeys(range(1, 10), throttled))
    checkpoints = MemoryCheckpointStore()
    app = applier(table, checkpoints, lag=lambda line: None)
    docs = [staged(item("1", 100, A, v="a"), 1), staged(item("2", 100, A, v="b"), 2)]
    out = lambda_active_apply.handle(kinesis_event(docs, first=500), app)
    assert out == {"batchItemFailures": [{"itemIdentifier": "500"}]}
    assert checkpoints.rows == {} and checkpoints.writes == 0 and table.items == {}
    assert app.metrics.counters["failed_batches"] == 1


def test_a_malformed_record_is_dead_lettered_and_the_batch_moves_on() -> None:
    letters, table = Letters(), FakeItemsTable()
    app = applier(table, MemoryCheckpointStore(), letters, lag=lambda line: None)
    out = lambda_active_apply.handle(
        kinesis_event([b"not json", staged(item("1", 100, A, v="a"), 1)]), app
    )
    assert out == {"batchItemFailures": []}
    assert [d.record.data for d in letters.letters] == [b"not json"]  # decoded from base64
    assert set(table.items) == {"1"}


def test_applier_empty_events_succeed() -> None:
    app = applier(FakeItemsTable(), MemoryCheckpointStore())
    assert lambda_active_apply.handle({"Records": []}, app) == {"batchItemFailures": []}


# ---------------------------------------------------------------------- environment


class Client:
    class meta:  # noqa: N801 - the shape of a boto3 client
        events = None


@pytest.mark.parametrize(
    ("module", "env"), [(lambda_active_forward, FORWARD_ENV), (lambda_active_apply, APPLY_ENV)]
)
def test_environment_is_checked_and_named(module: Any, env: dict[str, str]) -> None:
    for name in env:
        partial = {k: v for k, v in env.items() if k != name}
        with pytest.raises(ReplicatorUsageError, match=name):
            module.build(partial, clients=lambda s, r: Client())
    with pytest.raises(ReplicatorUsageError, match="TABLE_NAME, STAGING_STREAM"):
        module.build({"AWS_REGION": A})
    for name, value in (("MAX_IN_FLIGHT", "many"), ("MAX_ATTEMPTS", "0")):
        with pytest.raises(ReplicatorUsageError, match=name):
            module.build({**env, name: value}, clients=lambda s, r: Client())
    other = "TARGET_REGION" if module is lambda_active_forward else "SOURCE_REGION"
    with pytest.raises(ReplicatorUsageError, match=other):
        module.build({**env, other: env["AWS_REGION"]}, clients=lambda s, r: Client())


def test_build_wires_the_forwarder_across_regions_under_the_pollers_scope() -> None:
    made: list[tuple[str, str | None]] = []

    def clients(service: str, region: str | None) -> Client:
        made.append((service, region))
        return Client()

    fwd = lambda_active_forward.build({**FORWARD_ENV, "MAX_ATTEMPTS": "5", "MAX_IN_FLIGHT": "3"},
                                      clients=clients)  # fmt: skip
    assert sorted(made) == sorted(
        [("kinesis", B), ("dynamodb", A), ("dynamodb", B), ("s3", A)]
    )  # staging and checkpoints in the other region; the table and dead letters here
    assert fwd.region == A and fwd.other_region == B and fwd.table == "p-items"
    assert fwd.sender.stream == "p-staging" and fwd.sender.backoff.max_attempts == 5
    assert fwd.writer.max_in_flight == 3 and fwd.writer.table == "p-items"
    assert fwd.checkpoints.scope == FORWARD_SCOPE.format(table="p-items", region=A)
    assert fwd.checkpoints.table == "p-checkpoints" and fwd.dead_letters.bucket == "dl"


def test_build_wires_the_applier_in_its_own_region_under_the_pollers_scope() -> None:
    made: list[tuple[str, str | None]] = []

    def clients(service: str, region: str | None) -> Client:
        made.append((service, region))
        return Client()

    app = lambda_active_apply.build(APPLY_ENV, clients=clients)
    assert sorted(made) == [("dynamodb", B), ("s3", B)]
    assert app.region == B and app.other_region == A and app.direction == f"{A}->{B}"
    assert app.stream == "p-staging" and app.table == "p-items"
    assert app.writer.max_in_flight == 8 and app.writer.backoff.max_attempts == 8
    assert app.checkpoints.scope == APPLY_SCOPE.format(stream="p-staging", region=B)
    assert app.lag_sink is lag_metric


def test_the_handlers_import_no_xrh_beyond_the_contract() -> None:
    """Nothing but xrh.active_active (standard library only), which the core imports anyway;
    and nothing is built at import time."""
    code = (
        "import sys, replicator.runners.lambda_active_forward as f, "
        "replicator.runners.lambda_active_apply as a, replicator.adapters.lww_table, "
        "replicator.adapters.dynamodb, replicator.adapters.kinesis, replicator.adapters.s3; "
        "assert f._state == {} and a._state == {}; "
        "print(sorted(m for m in sys.modules if m == 'xrh' or m.startswith('xrh.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.replace("'", '"')) == ["xrh", "xrh.active_active"]


# ---------------------------------------------------------------------- the template


def _lint(path: Path) -> subprocess.CompletedProcess:
    # The project's own cfn-lint (the dev extra's), not whichever one PATH finds first.
    own = Path(sys.executable).parent / "cfn-lint"
    exe = str(own) if own.exists() else shutil.which("cfn-lint") or "cfn-lint"
    return subprocess.run([exe, str(path)], capture_output=True, text=True)


def _template() -> dict:
    from cfnlint.decode import decode

    template, problems = decode(str(TEMPLATE))
    assert not problems
    return template


def test_template_passes_cfn_lint() -> None:
    result = _lint(TEMPLATE)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("good", "bad"),
    [
        ("SSEAlgorithm: AES256", "SSEAlgorithm: ROT13"),
        ("Value: !Ref ForwardFunction", "Value: !Ref ForwardFunctio"),  # a dangling reference
    ],
)
def test_cfn_lint_catches_a_planted_fault(tmp_path: Path, good: str, bad: str) -> None:
    broken = tmp_path / "broken.yaml"
    text = TEMPLATE.read_text()
    assert good in text
    broken.write_text(text.replace(good, bad, 1))
    result = _lint(broken)
    assert result.returncode != 0 and bad.split()[-1] in result.stdout


def _actions(function: dict) -> list[str]:
    return sorted(a for s in function["Policies"][0]["Statement"] for a in s["Action"])


def _statement(function: dict, resource_part: str) -> dict:
    statements = function["Policies"][0]["Statement"]
    return next(s for s in statements if resource_part in str(s["Resource"]))


def test_template_forwarder_mapping_and_permissions() -> None:
    template = _template()
    function = template["Resources"]["ForwardFunction"]["Properties"]
    assert function["Handler"] == "replicator.runners.lambda_active_forward.handler"
    variables = function["Environment"]["Variables"]
    assert set(variables) == set(lambda_active_forward.REQUIRED) - {"AWS_REGION"}
    assert variables["TARGET_REGION"] == {"Ref": "OtherRegion"}
    mapping = function["Events"]["Stream"]
    assert mapping["Type"] == "DynamoDB"
    props = mapping["Properties"]
    assert props["Stream"] == {"Ref": "TableStreamArn"}
    assert props["StartingPosition"] == "TRIM_HORIZON"
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["BisectBatchOnFunctionError"] is True and props["ParallelizationFactor"] == 1
    assert props["MaximumRetryAttempts"] == -1  # a transient failure makes a shard wait
    assert props["MaximumRecordAgeInSeconds"] == 86400  # the table stream's fixed retention
    assert _actions(function) == sorted([  # least privilege: what the handler and mapping call
        "dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator",
        "dynamodb:ListStreams", "dynamodb:PutItem", "kinesis:PutRecords", "dynamodb:UpdateItem",
        "s3:PutObject", "sqs:SendMessage",
    ])  # fmt: skip
    put = _statement(function, "stream/${StagingStreamName}")
    assert put["Action"] == ["kinesis:PutRecords"] and "${OtherRegion}" in str(put["Resource"])
    checkpoint = _statement(function, "CheckpointTableName")
    assert "${OtherRegion}" in str(checkpoint["Resource"])
    keys = checkpoint["Condition"]["ForAllValues:StringEquals"]["dynamodb:LeadingKeys"]
    assert keys == [
        {"Fn::Sub": FORWARD_SCOPE.format(table="${TableName}", region="${AWS::Region}")}
    ]
    statements = function["Policies"][0]["Statement"]
    table = next(s for s in statements if s["Action"] == ["dynamodb:PutItem"])
    assert table["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:dynamodb:${AWS::Region}:"
        "${AWS::AccountId}:table/${TableName}"
    }  # repairs: local only
    alarm = template["Resources"]["ForwardIteratorAgeAlarm"]["Properties"]
    assert alarm["Dimensions"][0]["Value"] == {"Ref": "ForwardFunction"}


def test_template_applier_mapping_and_permissions() -> None:
    template = _template()
    function = template["Resources"]["ApplyFunction"]["Properties"]
    assert function["Handler"] == "replicator.runners.lambda_active_apply.handler"
    variables = function["Environment"]["Variables"]
    assert set(variables) == set(lambda_active_apply.REQUIRED) - {"AWS_REGION"}
    assert variables["SOURCE_REGION"] == {"Ref": "OtherRegion"}
    mapping = function["Events"]["Stream"]
    assert mapping["Type"] == "Kinesis"
    props = mapping["Properties"]
    assert "${AWS::Region}" in str(props["Stream"]) and "${StagingStreamName}" in str(
        props["Stream"]
    )
    assert props["StartingPosition"] == "TRIM_HORIZON"
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["BisectBatchOnFunctionError"] is True and props["ParallelizationFactor"] == 1
    assert props["MaximumRetryAttempts"] == -1
    assert props["MaximumRecordAgeInSeconds"] == {"Ref": "StagingStreamRetentionSeconds"}
    assert template["Parameters"]["StagingStreamRetentionSeconds"]["Default"] == 86400
    assert _actions(function) == sorted([
        "kinesis:GetRecords", "kinesis:GetShardIterator", "kinesis:DescribeStream",
        "kinesis:DescribeStreamSummary", "kinesis:ListShards", "kinesis:ListStreams",
        "dynamodb:PutItem", "dynamodb:UpdateItem", "s3:PutObject", "sqs:SendMessage",
    ])  # fmt: skip
    checkpoint = _statement(function, "CheckpointTableName")
    assert "${AWS::Region}" in str(checkpoint["Resource"])
    keys = checkpoint["Condition"]["ForAllValues:StringEquals"]["dynamodb:LeadingKeys"]
    assert keys == [
        {"Fn::Sub": APPLY_SCOPE.format(stream="${StagingStreamName}", region="${AWS::Region}")}
    ]
    alarm = template["Resources"]["ApplyIteratorAgeAlarm"]["Properties"]
    assert alarm["Dimensions"][0]["Value"] == {"Ref": "ApplyFunction"}
    discarded = template["Resources"]["DiscardedBatchAlarm"]["Properties"]
    assert discarded["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["FailureQueue", "QueueName"]}
