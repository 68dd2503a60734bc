"""--until-drained under load that never stops: the poller gives up at --drain-timeout and exits
2 ("could not drain"), which the Locust orchestrator turns into verdict unknown."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from test_replicate_poller import poller_cmd, produce, start, stop

from xrh.aws import AwsClients
from xrh.config import HarnessConfig, Side
from xrh.resources import ResourceNames

pytestmark = pytest.mark.functional


def test_drain_timeout_exits_2_while_records_keep_coming(
    provisioned: HarnessConfig, tmp_path: Path
) -> None:
    stream = ResourceNames(provisioned.prefix).stream
    ka = AwsClients(provisioned).client("kinesis", Side.A)
    stop_producing = threading.Event()

    def keep_producing() -> None:
        start_at = 0
        deadline = time.monotonic() + 30
        while not stop_producing.is_set() and time.monotonic() < deadline:
            produce(ka, stream, start_at, 50)
            start_at += 50
            time.sleep(0.1)

    producer = threading.Thread(target=keep_producing)
    producer.start()
    # The later --quiet-seconds and --drain-timeout win over poller_cmd's defaults.
    cmd = [
        *poller_cmd(provisioned, tmp_path, "w", "a"),
        "--until-drained",
        "--quiet-seconds",
        "3",
        "--drain-timeout",
        "4",
    ]
    poller = start(cmd, tmp_path / "w.out")
    try:
        started = time.monotonic()
        code = poller.wait(timeout=30)
        took = time.monotonic() - started
    finally:
        stop_producing.set()
        producer.join(timeout=30)
        stop([poller])
    assert code == 2, (tmp_path / "w.out").read_text()
    assert took < 20
