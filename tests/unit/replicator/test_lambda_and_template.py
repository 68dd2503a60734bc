"""Lambda handler over fakes (batchItemFailures) and the SAM template through cfn-lint."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from replicator.core.active import StaticActiveRegion
from replicator.core.batch import ShardReplicator
from replicator.core.checkpoint import MemoryCheckpointStore
from replicator.core.fakes import ScriptedSink
from replicator.core.putrecords import Backoff, PutRecordsSender
from replicator.errors import ActiveRegionLookupError, CheckpointError, ReplicatorUsageError
from replicator.runners.lambda_handler import build, build_publisher, handle

TEMPLATE = Path(__file__).resolve().parents[3] / "deploy" / "template.yaml"


def event(n: int, shard: int = 1, arrival: float = 1700000000.5, first: int = 100) -> dict:
    return {
        "Records": [
            {
                "eventID": f"shardId-{shard:012d}:{first + i}",
                "kinesis": {
                    "sequenceNumber": str(first + i),
                    "partitionKey": f"k{i % 2}",
                    "data": base64.b64encode(json.dumps({"i": i}).encode()).decode(),
                    "approximateArrivalTimestamp": arrival,
                },
            }
            for i in range(n)
        ]
    }


def replicator(active, sink=None) -> ShardReplicator:
    return ShardReplicator(
        stream="s", source_region="us-east-1", target_region="us-east-2",
        sender=PutRecordsSender(sink or ScriptedSink(), "s", backoff=Backoff(0, 0, 2), sleep=lambda s: None),
        active=active, checkpoints=MemoryCheckpointStore(), dead_letters=None,
        clock_ms=lambda: 0,
    )  # fmt: skip


def test_success_reports_no_failures_and_copies_in_order() -> None:
    sink = ScriptedSink()
    assert handle(event(5), replicator(StaticActiveRegion("us-east-1"), sink)) == {
        "batchItemFailures": []
    }
    assert [json.loads(r.entry.data)["i"] for r in sink.records] == [0, 1, 2, 3, 4]


def test_lookup_failure_reports_the_first_record() -> None:
    rep = replicator(StaticActiveRegion(error=ActiveRegionLookupError("down")))
    assert handle(event(3), rep) == {"batchItemFailures": [{"itemIdentifier": "100"}]}


def test_partial_failure_reports_the_first_unacknowledged() -> None:
    sink = ScriptedSink(
        fail_entry=lambda e, call: "InternalFailure" if json.loads(e.data)["i"] == 3 else None
    )
    out = handle(event(5), replicator(StaticActiveRegion("us-east-1"), sink))
    assert out == {"batchItemFailures": [{"itemIdentifier": "103"}]}


def test_missing_environment_is_named() -> None:
    with pytest.raises(ReplicatorUsageError, match="STREAM_NAME"):
        build({"TARGET_REGION": "us-east-2"})


def test_lambda_handler_imports_no_xrh() -> None:
    code = (
        "import sys, replicator.runners.lambda_handler, replicator.adapters.kinesis, "
        "replicator.adapters.dynamodb, replicator.adapters.s3; "
        "sys.exit(1 if any(m == 'xrh' or m.startswith('xrh.') for m in sys.modules) else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def _lint(path: Path) -> subprocess.CompletedProcess:
    # The project's own cfn-lint (the dev extra's), not whichever one PATH finds first.
    own = Path(sys.executable).parent / "cfn-lint"
    exe = str(own) if own.exists() else shutil.which("cfn-lint") or "cfn-lint"
    return subprocess.run([exe, str(path)], capture_output=True, text=True)


def test_template_passes_cfn_lint() -> None:
    result = _lint(TEMPLATE)
    assert result.returncode == 0, result.stdout + result.stderr
    text = TEMPLATE.read_text()
    for needed in ("ReportBatchItemFailures", "BisectBatchOnFunctionError: true"):
        assert needed in text


def test_transient_failures_are_retried_without_a_bound_that_drops_data() -> None:
    """A bounded retry count or record age makes Lambda discard a batch after a long outage
    (only metadata reaches the on-failure destination) while later batches move the
    checkpoint and the watermark past it. Poison leaves through the handler's dead letters."""
    from cfnlint.decode import decode

    template, problems = decode(str(TEMPLATE))
    assert not problems
    resources = template["Resources"]
    mapping = resources["ReplicatorFunction"]["Properties"]["Events"]["Stream"]["Properties"]
    assert mapping["MaximumRetryAttempts"] == -1
    assert mapping["MaximumRecordAgeInSeconds"] == -1
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["ParallelizationFactor"] == 1  # one batch per shard at a time, in order
    alarm = resources["IteratorAgeAlarm"]["Properties"]  # a waiting shard is seen, not lost
    assert alarm["MetricName"] == "IteratorAge"
    assert alarm["Dimensions"][0]["Value"] == {"Ref": "ReplicatorFunction"}


class FakeKinesis:
    def __init__(self, shards: list[str]) -> None:
        self.shards = shards
        self.calls = 0

    def list_shards(self, **kwargs) -> dict:
        self.calls += 1
        return {"Shards": [{"ShardId": s, "SequenceNumberRange": {}} for s in self.shards]}


def test_handler_publishes_the_stream_watermark_and_never_moves_it_back() -> None:
    """Per invocation: min over the shards' checkpoint rows, published only when it rises."""
    rep = replicator(StaticActiveRegion("us-east-1"))
    kinesis = FakeKinesis(["shardId-000000000001", "shardId-000000000002"])
    env = {"AWS_REGION": "us-east-1", "WATERMARK_INTERVAL_S": "0"}
    publisher = build_publisher(env, rep, clients=lambda service, region: kinesis)
    handle(event(3, shard=1, arrival=1700000100.0), rep, publisher)
    assert rep.checkpoints.watermark() is None  # shard 2 has no row yet: no claim
    handle(event(3, shard=2, arrival=1700000050.0), rep, publisher)
    margin_and_delay = 11_000  # WatermarkSettings defaults: D 10 s + margin 1 s
    assert rep.checkpoints.watermark() == 1700000050_000 - margin_and_delay
    handle(event(3, shard=2, arrival=1700000200.0, first=200), rep, publisher)
    assert rep.checkpoints.watermark() == 1700000100_000 - margin_and_delay
    handle(event(3, shard=1, arrival=1700000090.0), rep, publisher)  # a retried, older batch
    assert rep.checkpoints.watermark() == 1700000100_000 - margin_and_delay
    assert kinesis.calls == 1  # the shard list is cached in the warm container
    assert rep.metrics.counters["claims"] == 2


def test_a_failed_claim_never_fails_the_batch() -> None:
    class UnreadableRows(MemoryCheckpointStore):
        def load(self):
            raise CheckpointError("checkpoint table throttled")

    rep = replicator(StaticActiveRegion("us-east-1"))
    rep.checkpoints = UnreadableRows()
    logged = []
    rep.log = lambda event, **fields: logged.append(event)
    publisher = build_publisher(
        {"AWS_REGION": "us-east-1", "WATERMARK_INTERVAL_S": "0"},
        rep,
        clients=lambda service, region: FakeKinesis(["shardId-000000000001"]),
    )
    assert handle(event(2), rep, publisher) == {"batchItemFailures": []}
    assert rep.checkpoints.rows and logged == ["claim_failed"]


def test_cfn_lint_catches_a_planted_fault(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    text = TEMPLATE.read_text()
    assert "BillingMode: PAY_PER_REQUEST" in text
    broken.write_text(text.replace("BillingMode: PAY_PER_REQUEST", "BillingMode: SOMETIMES"))
    result = _lint(broken)
    assert result.returncode != 0 and "SOMETIMES" in result.stdout
