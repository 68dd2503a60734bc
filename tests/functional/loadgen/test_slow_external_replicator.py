"""`--replicator external` with a correct replicator that copies everything late (a Lambda
with some iterator age): verify must wait for the target while it makes progress, then call
the run valid and say how long it waited. Before settle, 16,035 of 24,035 records were "lost".

The reference replicator stands in for the external one and is started only once verify has
begun, so the target is certainly behind when verify first reads it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
from test_locust_runs import LOCUST, ROOT, _reap, report

pytestmark = pytest.mark.functional


def test_late_external_replicator_is_waited_for_and_the_run_is_valid(endpoint, provisioned,
                                                                     tmp_path):  # fmt: skip
    urls = ["--endpoint-url-a", endpoint.url_of("a"), "--endpoint-url-b", endpoint.url_of("b")]
    locust = subprocess.Popen(
        [*LOCUST, "--headless", "-u", "4", "-r", "4", "-t", "6s", "--rate-per-user", "50",
         "--replicator", "external", "--prefix", provisioned.prefix, "--settle-seconds", "20",
         *urls],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    lines: list[str] = []
    verifying = threading.Event()

    def watch() -> None:
        for line in locust.stderr:  # type: ignore[union-attr]
            lines.append(line)
            if "verifying..." in line:
                verifying.set()

    reader = threading.Thread(target=watch, daemon=True)
    reader.start()
    replicator = None
    try:
        assert verifying.wait(90), "".join(lines[-40:])
        time.sleep(2)  # verify's first read finds the target empty
        (tmp_path / "external").mkdir()
        replicator = subprocess.Popen(
            [sys.executable, "-m", "xrh", "replicate", "--side", "a", "--prefix",
             provisioned.prefix, *urls, "--until-drained", "--quiet-seconds", "2",
             "--run-dir", str(tmp_path / "external")],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        assert locust.wait(120) == 0, "".join(lines[-40:])
    finally:
        _reap([p for p in (locust, replicator) if p is not None], 30)
        reader.join(5)
    result = report(tmp_path)
    assert result["verdict"] == "valid", result["reasons"]
    assert result["anomalies"]["lost"]["count"] == 0
    settle = result["details"]["settle"]
    assert settle["missing_after_first_read"] > 0 and settle["missing_after_settle"] == 0
    assert settle["waited_s"] >= 2
