"""The dynamodb pipeline's Lambda handler over fakes (batchItemFailures, the bootstrap gate)
and its SAM template through cfn-lint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from replicator.core.putrecords import Backoff
from replicator.core.table_apply import BootstrapGate, TableApplier
from replicator.core.table_fakes import FakeTableSink
from replicator.core.table_writes import BatchWriter
from replicator.errors import ReplicatorUsageError
from replicator.runners.lambda_dynamodb import build, handle

TEMPLATE = Path(__file__).resolve().parents[3] / "deploy" / "dynamodb-template.yaml"


def event(n: int, first: int = 100, keys: int = 3) -> dict:
    records = []
    for i in range(n):
        key = {"pk": {"S": f"k{i % keys}"}}
        records.append({
            "eventID": f"e{i}", "eventName": "MODIFY" if i else "INSERT",
            "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
            "eventSourceARN": "arn:aws:dynamodb:us-east-1:1:table/t/stream/2024",
            "dynamodb": {"Keys": key, "NewImage": {**key, "v": {"N": str(i)}},
                         "SequenceNumber": str(first + i), "ApproximateCreationDateTime": 1.7e9,
                         "StreamViewType": "NEW_AND_OLD_IMAGES"},
        })  # fmt: skip
    return {"Records": records}


def applier(sink: FakeTableSink, state: list[str | None]) -> TableApplier:
    return TableApplier(
        table="t", source_region="us-east-1", target_region="us-west-2",
        writer=BatchWriter(sink, "t", backoff=Backoff(0, 0, 2), sleep=lambda s: None,
                           max_in_flight=1),
        checkpoints=None, dead_letters=None, clock_ms=lambda: 0,
        gate=BootstrapGate(lambda: state[0], clock=lambda: 0.0, ttl_s=0.0),
    )  # fmt: skip


def test_a_batch_is_applied_and_nothing_is_reported() -> None:
    sink = FakeTableSink()
    assert handle(event(7), applier(sink, ["complete"])) == {"batchItemFailures": []}
    assert {k: v["v"]["N"] for k, v in sink.items("t").items()} == {
        '{"pk":{"S":"k0"}}': "6",
        '{"pk":{"S":"k1"}}': "4",
        '{"pk":{"S":"k2"}}': "5",
    }
    assert sink.calls == 1


def test_while_copying_the_whole_batch_fails_from_its_first_change() -> None:
    sink, state = FakeTableSink(), ["copying"]
    rep = applier(sink, state)
    assert handle(event(5), rep) == {"batchItemFailures": [{"itemIdentifier": "100"}]}
    assert sink.calls == 0
    state[0] = "complete"
    assert handle(event(5), rep) == {"batchItemFailures": []}


def test_a_failed_write_reports_the_first_change() -> None:
    sink = FakeTableSink(unprocessed=lambda r, call: True)
    out = handle(event(4, first=500), applier(sink, ["complete"]))
    assert out == {"batchItemFailures": [{"itemIdentifier": "500"}]}


def test_empty_events_succeed() -> None:
    assert handle({"Records": []}, applier(FakeTableSink(), ["copying"])) == {
        "batchItemFailures": []
    }


def test_environment_is_checked_and_named() -> None:
    with pytest.raises(ReplicatorUsageError, match="TABLE_NAME"):
        build({"TARGET_REGION": "us-west-2"})
    env = {"TABLE_NAME": "t", "TARGET_REGION": "us-west-2", "CHECKPOINT_TABLE": "cp",
           "DEAD_LETTER_BUCKET": "b", "AWS_REGION": "us-east-1"}  # fmt: skip
    with pytest.raises(ReplicatorUsageError, match="MAX_IN_FLIGHT"):
        build({**env, "MAX_IN_FLIGHT": "many"}, clients=lambda s, r: None)
    with pytest.raises(ReplicatorUsageError, match="REQUIRE_BOOTSTRAP"):
        build({**env, "REQUIRE_BOOTSTRAP": "maybe"}, clients=lambda s, r: None)

    class Client:
        class meta:  # noqa: N801 - the shape of a boto3 client
            events = None

    rep = build({**env, "REQUIRE_BOOTSTRAP": "false"}, clients=lambda s, r: Client())
    assert rep.gate() is None and rep.checkpoints is None and rep.writer.max_in_flight == 4


def test_the_handler_imports_no_xrh() -> None:
    code = (
        "import sys, replicator.runners.lambda_dynamodb, replicator.adapters.table, "
        "replicator.adapters.streams, replicator.adapters.s3; "
        "sys.exit(1 if any(m == 'xrh' or m.startswith('xrh.') for m in sys.modules) else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_template_passes_cfn_lint_and_bounds_retries_by_the_stream_retention() -> None:
    from cfnlint.decode import decode

    own = Path(sys.executable).parent / "cfn-lint"
    result = subprocess.run(
        [str(own) if own.exists() else "cfn-lint", str(TEMPLATE)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    template, problems = decode(str(TEMPLATE))
    assert not problems
    resources = template["Resources"]
    function = resources["ApplyFunction"]["Properties"]
    assert function["Handler"] == "replicator.runners.lambda_dynamodb.handler"
    mapping = function["Events"]["Stream"]
    assert mapping["Type"] == "DynamoDB"
    props = mapping["Properties"]
    assert props["StartingPosition"] == "TRIM_HORIZON"
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["BisectBatchOnFunctionError"] is True and props["ParallelizationFactor"] == 1
    assert props["MaximumRecordAgeInSeconds"] == 86400  # the stream's retention
    assert props["MaximumRetryAttempts"] == -1  # the copy makes batches wait for hours
    actions = sorted(
        a for s in function["Policies"][0]["Statement"] for a in s["Action"]
    )  # least privilege: nothing beyond what the handler and the mapping call
    assert actions == sorted([
        "dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator",
        "dynamodb:ListStreams", "dynamodb:BatchWriteItem", "dynamodb:GetItem",
        "s3:PutObject", "sqs:SendMessage",
    ])  # fmt: skip
