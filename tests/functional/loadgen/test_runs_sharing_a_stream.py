"""Two Locust runs in a row against one endpoint with the same --prefix, as against LocalStack
or AWS: the second run's stream still holds the first run's records. Traces name their run, so
the first run's records are foreign to the second (counted, never an anomaly) and both runs end
valid; before, the second run's traces collided with the first's."""

from __future__ import annotations

import json
import os
import sqlite3

import pytest
from test_locust_runs import report, run_locust

from xrh.config import parse_config
from xrh.provision import destroy

pytestmark = pytest.mark.functional


def test_two_runs_with_the_same_prefix_against_one_endpoint_are_both_valid(endpoint, tmp_path):
    prefix = f"shared{os.getpid() % 10000}"
    flags = [
        "--headless", "-u", "4", "-r", "4", "-t", "8s", "--rate-per-user", "50",
        "--endpoint-url-a", endpoint.url_of("a"), "--endpoint-url-b", endpoint.url_of("b"),
        "--prefix", prefix, "--settle-seconds", "10", "--drain-timeout", "60",
    ]  # fmt: skip
    try:
        verdicts = []
        for _ in range(2):
            code, _out, err = run_locust(tmp_path, *flags, timeout=240)
            verdicts.append(report(tmp_path))
            assert code == 0, err[-3000:]
        first, second = verdicts
        assert first["verdict"] == second["verdict"] == "valid", second["reasons"]
        assert first["run_id"] != second["run_id"]
        assert first["details"]["foreign"]["records"] == 0
        foreign = second["details"]["foreign"]
        # the first run's records are all in the shared stream, and none is this run's
        assert foreign["in_source"] >= first["counts"]["acknowledged"]
        ledger = sqlite3.connect(tmp_path / "runs" / second["run_id"] / "ledger.sqlite")
        traces = [t for (t,) in ledger.execute("SELECT DISTINCT trace FROM ledger LIMIT 50")]
        assert traces and all(t.startswith(second["run_id"] + "/") for t in traces)
        assert (
            second["counts"]["acknowledged"]
            == ledger.execute(
                "SELECT COUNT(DISTINCT trace) FROM ledger WHERE status = 'ok'"
            ).fetchone()[0]
        )
        report_text = json.dumps(second["anomalies"])
        assert first["run_id"] not in report_text  # no anomaly example names the first run
    finally:
        config = parse_config(["--prefix", prefix], environ={}).with_endpoints(
            endpoint.url_of("a"), endpoint.url_of("b")
        )
        if endpoint.alive():
            destroy(config)
