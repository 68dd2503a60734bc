"""The dynamodb pipeline's main job, short: load with a bootstrap, the reference replicator,
verify. Under partial failures and lost answers in both regions it must end valid (a write
whose answer was lost is `unknown` in the ledger, never lost or phantom); every other anomaly
check is shown catching planted faults in tests/unit/verify/test_table_verify.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_locust_runs import report, run_locust

pytestmark = pytest.mark.functional
FAULTS = (
    "a:PutItem:lost-answer=0.03,a:BatchWriteItem:partial=0.1,"
    "b:BatchWriteItem:partial=0.1,b:BatchWriteItem:lost-answer=0.05"
)


def test_main_job_under_partial_failures_and_lost_answers_is_valid(tmp_path: Path):
    code, _, err = run_locust(
        tmp_path, "--pipeline", "dynamodb", "--headless", "-u", "6", "-r", "6", "-t", "10s",
        "--bootstrap-items", "2000", "--faults", FAULTS, "--seed", "7", "--settle-seconds", "15",
        timeout=180,
    )  # fmt: skip
    got = report(tmp_path)
    assert got["verdict"] == "valid", (got["reasons"], err[-3000:])
    assert code == 0, err[-3000:]
    assert got["counts"]["unknown"] > 0  # lost answers reached the ledger as unknown
    assert got["details"]["faults"]["by_kind"].get("lost-answer", 0) > 0
    assert got["details"]["bootstrap"]["state"] == "complete"
    assert got["counts"]["source_records"] == got["counts"]["target_records"] > 2000
