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
from replicator.errors import ActiveRegionLookupError, ReplicatorUsageError
from replicator.runners.lambda_handler import build, handle

TEMPLATE = Path(__file__).resolve().parents[3] / "deploy" / "template.yaml"


def event(n: int) -> dict:
    return {
        "Records": [
            {
                "eventID": f"shardId-000000000001:{100 + i}",
                "kinesis": {
                    "sequenceNumber": str(100 + i),
                    "partitionKey": f"k{i % 2}",
                    "data": base64.b64encode(json.dumps({"i": i}).encode()).decode(),
                    "approximateArrivalTimestamp": 1700000000.5,
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
    for needed in (
        "ReportBatchItemFailures",
        "BisectBatchOnFunctionError: true",
        "MaximumRetryAttempts",
        "OnFailure",
    ):
        assert needed in text


def test_cfn_lint_catches_a_planted_fault(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    text = TEMPLATE.read_text()
    assert "BillingMode: PAY_PER_REQUEST" in text
    broken.write_text(text.replace("BillingMode: PAY_PER_REQUEST", "BillingMode: SOMETIMES"))
    result = _lint(broken)
    assert result.returncode != 0 and "SOMETIMES" in result.stdout
