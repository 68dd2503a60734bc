"""The action-log fast path's Lambda handler over fakes (a Kinesis event as Lambda delivers it
applied to the table, all-or-nothing batchItemFailures, a re-delivery counted once, the
environment) and its SAM template through cfn-lint."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from replicator.core.action_apply import ActionApplier
from replicator.core.action_fakes import FakeActionTable
from replicator.core.action_update import ChainUpdater
from replicator.core.checkpoint import MemoryCheckpointStore
from replicator.core.putrecords import Backoff
from replicator.core.table_writes import BatchWriter
from replicator.errors import ReplicatorUsageError, RetryableRequestError
from replicator.runners.lambda_action_log import build, handle, scope_of

TEMPLATE = Path(__file__).resolve().parents[3] / "deploy" / "action-log-template.yaml"
SHARD = "shardId-000000000003"
ENV = {"STREAM_NAME": "p-actions", "TABLE_NAME": "p-items", "CHECKPOINT_TABLE": "p-checkpoints",
       "DEAD_LETTER_BUCKET": "dl", "AWS_REGION": "us-east-1"}  # fmt: skip


def event(docs: list, first: int = 100, shard: str = SHARD) -> dict:
    """A Kinesis event as Lambda delivers it: one shard, data base64, arrival in seconds."""
    return {
        "Records": [
            {
                "eventSource": "aws:kinesis",
                "eventID": f"{shard}:{first + i}",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:1:stream/p-actions",
                "awsRegion": "us-east-1",
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "sequenceNumber": str(first + i),
                    "partitionKey": "g0",
                    "data": base64.b64encode(
                        doc if isinstance(doc, bytes) else json.dumps(doc).encode()
                    ).decode(),
                    "approximateArrivalTimestamp": 1700000000.5 + i,
                },
            }
            for i, doc in enumerate(docs)
        ]
    }


def put(pk: str, **attrs) -> dict:
    return {"Action": "PutItem", "Data": {"pk": pk, **attrs},
            "commitTimestamp": "2023-11-14T22:13:20.000Z"}  # fmt: skip


def add(pk: str, **counts: int) -> dict:
    return {"Action": "UpdateItem", "Data": {"pk": pk, "Add": counts}}


def applier(table: FakeActionTable, checkpoints: MemoryCheckpointStore, letters=None):
    backoff = Backoff(0, 0, 2)
    return ActionApplier(
        stream="p-actions", table="p-items", source_region="us-east-1",
        target_region="us-east-1",
        updater=ChainUpdater(table, "p-items", backoff=backoff, sleep=lambda s: None),
        writer=BatchWriter(table, "p-items", backoff=backoff, sleep=lambda s: None,
                           max_in_flight=1),
        checkpoints=checkpoints, dead_letters=letters, clock_ms=lambda: 1700000001_000,
        max_in_flight=1,
    )  # fmt: skip


def plain(table: FakeActionTable) -> dict[str, dict]:
    """The items (wire form), bookkeeping attributes dropped."""
    return {
        item["pk"]["S"]: {k: v for k, v in item.items() if not k.startswith("xrh_")}
        for item in table.items("p-items").values()
    }


LOG = [
    put("k1", colour="red"),
    add("k1", n=2),
    add("k2", n=5),
    {
        "Action": "BatchWrite",
        "Data": [{"PutItem": {"pk": "k3", "v": 1}}, {"DeleteItem": {"pk": "k4"}}],
    },  # fmt: skip
    add("k1", n=3),
    add("k2", n=1),
]
FOLD = {
    "k1": {"pk": {"S": "k1"}, "colour": {"S": "red"}, "n": {"N": "5"}},
    "k2": {"pk": {"S": "k2"}, "n": {"N": "6"}},
    "k3": {"pk": {"S": "k3"}, "v": {"N": "1"}},
}


def test_an_event_is_applied_to_the_table_and_checkpointed() -> None:
    table, checkpoints = FakeActionTable(), MemoryCheckpointStore()
    assert handle(event(LOG), applier(table, checkpoints)) == {"batchItemFailures": []}
    assert plain(table) == FOLD
    row = checkpoints.rows[SHARD]  # the shard id comes from eventID, as the poller's
    assert row.sequence_number == "105"
    assert row.commit_ms == 1700000000_000


def test_a_failed_write_reports_the_first_record_and_checkpoints_nothing() -> None:
    throttled = RetryableRequestError("throttled", "Throttling")
    table = FakeActionTable(fail_updates=dict.fromkeys(range(1, 10), throttled))
    checkpoints = MemoryCheckpointStore()
    rep = applier(table, checkpoints)
    out = handle(event([put("k9", v=1), add("k1", n=1), put("k8", v=2)], first=500), rep)
    assert out == {"batchItemFailures": [{"itemIdentifier": "500"}]}  # the first, not k1's 501
    assert checkpoints.rows == {} and checkpoints.writes == 0
    assert rep.metrics.counters["failed_batches"] == 1


def test_a_redelivered_event_does_not_double_an_add() -> None:
    """Lambda retries a batch whose answer it never got (timeout after the writes, a lost
    response): the same event again, then a bisected half of it, then the next one."""
    table, checkpoints = FakeActionTable(), MemoryCheckpointStore()
    rep = applier(table, checkpoints)
    assert handle(event(LOG), rep) == {"batchItemFailures": []}
    assert handle(event(LOG), rep) == {"batchItemFailures": []}
    assert handle(event(LOG[3:], first=103), rep) == {"batchItemFailures": []}
    assert plain(table) == FOLD
    assert rep.metrics.counters["ops_already_applied"] > 0
    handle(event([add("k1", n=10)], first=106), rep)
    assert plain(table)["k1"]["n"] == {"N": "15"}


def test_a_retry_after_a_failed_batch_applies_each_action_once() -> None:
    """The first delivery applied one key's update without hearing back and failed the
    other's; the retry of the whole batch applies each ADD once."""
    table = FakeActionTable(lost_updates={1}, fail_updates={
        n: RetryableRequestError("throttled", "Throttling") for n in range(2, 10)
    })  # fmt: skip
    checkpoints = MemoryCheckpointStore()
    rep = applier(table, checkpoints)
    docs = [add("k2", n=5), add("k1", n=2)]
    assert handle(event(docs), rep) == {"batchItemFailures": [{"itemIdentifier": "100"}]}
    assert checkpoints.rows == {}
    table.fail_updates.clear()
    assert handle(event(docs), rep) == {"batchItemFailures": []}
    assert plain(table) == {"k1": {"pk": {"S": "k1"}, "n": {"N": "2"}},
                            "k2": {"pk": {"S": "k2"}, "n": {"N": "5"}}}  # fmt: skip
    assert checkpoints.rows[SHARD].sequence_number == "101"


def test_a_malformed_action_is_dead_lettered_and_the_batch_moves_on() -> None:
    class Letters:
        def __init__(self) -> None:
            self.letters: list = []

        def put(self, letters) -> None:
            self.letters.extend(letters)

    letters, table = Letters(), FakeActionTable()
    rep = applier(table, MemoryCheckpointStore(), letters)
    out = handle(event([b"not json", add("k1", n=1)]), rep)
    assert out == {"batchItemFailures": []}
    assert [d.record.sequence_number for d in letters.letters] == ["100"]
    assert letters.letters[0].record.data == b"not json"  # decoded from base64
    assert plain(table) == {"k1": {"pk": {"S": "k1"}, "n": {"N": "1"}}}


def test_empty_events_succeed() -> None:
    rep = applier(FakeActionTable(), MemoryCheckpointStore())
    assert handle({"Records": []}, rep) == {"batchItemFailures": []}


class Client:
    class meta:  # noqa: N801 - the shape of a boto3 client
        events = None


def test_environment_is_checked_and_named() -> None:
    for name in ENV:
        env = {k: v for k, v in ENV.items() if k != name}
        with pytest.raises(ReplicatorUsageError, match=name):
            build(env, clients=lambda s, r: Client())
    with pytest.raises(ReplicatorUsageError, match="STREAM_NAME, TABLE_NAME"):
        build({"CHECKPOINT_TABLE": "c", "DEAD_LETTER_BUCKET": "b", "AWS_REGION": "us-east-1"})
    for name, value in (("MAX_IN_FLIGHT", "many"), ("MAX_ATTEMPTS", "0")):
        with pytest.raises(ReplicatorUsageError, match=name):
            build({**ENV, name: value}, clients=lambda s, r: Client())


def test_build_wires_the_own_region_and_the_pollers_checkpoint_scope() -> None:
    from xrh.contracts import checkpoint_scope

    regions = []

    def clients(service: str, region: str | None) -> Client:
        regions.append((service, region))
        return Client()

    rep = build({**ENV, "MAX_IN_FLIGHT": "3", "MAX_ATTEMPTS": "5"}, clients=clients)
    assert set(regions) == {("dynamodb", "us-east-1"), ("s3", "us-east-1")}
    assert rep.table == "p-items" and rep.stream == "p-actions"
    assert rep.source_region == rep.target_region == "us-east-1"
    assert rep.checkpoints.scope == checkpoint_scope("action-log", "p-actions", "us-east-1")
    assert scope_of("p-actions", "us-east-1") == rep.checkpoints.scope
    assert rep.checkpoints.table == "p-checkpoints" and rep.dead_letters.bucket == "dl"
    assert rep.max_in_flight == 3 and rep.writer.max_in_flight == 3
    assert rep.updater.backoff.max_attempts == 5
    assert rep.pace(1000) == 0  # the fast path: no rate limit


def test_the_handler_imports_no_xrh_beyond_the_action_format() -> None:
    """The handler itself needs no xrh; the applier imports the wire format (xrh.action_log
    and xrh.contracts, standard library only), so those two travel in the package."""
    code = (
        "import sys, replicator.runners.lambda_action_log, replicator.adapters.action_table, "
        "replicator.adapters.dynamodb, replicator.adapters.s3; "
        "print(sorted(m for m in sys.modules if m == 'xrh' or m.startswith('xrh.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.replace("'", '"')) == ["xrh", "xrh.action_log", "xrh.contracts"]


def _lint(path: Path) -> subprocess.CompletedProcess:
    # The project's own cfn-lint (the dev extra's), not whichever one PATH finds first.
    own = Path(sys.executable).parent / "cfn-lint"
    exe = str(own) if own.exists() else shutil.which("cfn-lint") or "cfn-lint"
    return subprocess.run([exe, str(path)], capture_output=True, text=True)


def test_template_passes_cfn_lint_and_bounds_retries_by_the_stream_retention() -> None:
    from cfnlint.decode import decode

    result = _lint(TEMPLATE)
    assert result.returncode == 0, result.stdout + result.stderr
    template, problems = decode(str(TEMPLATE))
    assert not problems
    resources = template["Resources"]
    function = resources["ApplyFunction"]["Properties"]
    assert function["Handler"] == "replicator.runners.lambda_action_log.handler"
    assert set(function["Environment"]["Variables"]) == {
        "STREAM_NAME", "TABLE_NAME", "CHECKPOINT_TABLE", "DEAD_LETTER_BUCKET"
    }  # fmt: skip
    mapping = function["Events"]["Stream"]
    assert mapping["Type"] == "Kinesis"
    props = mapping["Properties"]
    assert props["StartingPosition"] == "TRIM_HORIZON"
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["BisectBatchOnFunctionError"] is True and props["ParallelizationFactor"] == 1
    assert props["MaximumRetryAttempts"] == -1  # a transient failure makes a shard wait
    assert props["MaximumRecordAgeInSeconds"] == {"Ref": "StreamRetentionSeconds"}
    assert template["Parameters"]["StreamRetentionSeconds"]["Default"] == 86400
    alarm = resources["IteratorAgeAlarm"]["Properties"]  # a waiting shard is seen
    assert alarm["Dimensions"][0]["Value"] == {"Ref": "ApplyFunction"}
    statements = function["Policies"][0]["Statement"]
    actions = sorted(a for s in statements for a in s["Action"])
    assert actions == sorted([  # least privilege: what the handler and the mapping call
        "kinesis:GetRecords", "kinesis:GetShardIterator", "kinesis:DescribeStream",
        "kinesis:DescribeStreamSummary", "kinesis:ListShards", "kinesis:ListStreams",
        "dynamodb:BatchWriteItem", "dynamodb:UpdateItem", "dynamodb:GetItem",
        "dynamodb:UpdateItem", "s3:PutObject", "sqs:SendMessage",
    ])  # fmt: skip
    checkpoint = next(s for s in statements if "CheckpointTableName" in str(s["Resource"]))
    keys = checkpoint["Condition"]["ForAllValues:StringEquals"]["dynamodb:LeadingKeys"]
    assert keys == [{"Fn::Sub": scope_of("${StreamName}", "${AWS::Region}")}]


def test_cfn_lint_catches_a_planted_fault(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    text = TEMPLATE.read_text()
    assert "SSEAlgorithm: AES256" in text
    broken.write_text(text.replace("SSEAlgorithm: AES256", "SSEAlgorithm: ROT13"))
    result = _lint(broken)
    assert result.returncode != 0 and "ROT13" in result.stdout
