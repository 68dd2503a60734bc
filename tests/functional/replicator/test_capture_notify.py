"""``xrh capture --capture notify``, the seed's trigger + LISTEN/NOTIFY design: it loses every
change made while its listener is down (that is what the reproduction is for), and says so."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from test_capture_slot import (
    Writer,
    capture_cmd,
    cdc_config,
    drain,
    read_stream,
    run_dir,
    start,
    stop,
)

from xrh.config import HarnessConfig
from xrh.postgres_server import PostgresServer

pytestmark = pytest.mark.functional
__all__ = ["cdc_config"]


def _traces(writer: Writer) -> set[str]:
    return {t for changes in writer.committed.values() for _, t, _ in changes if t}


def _listening(log: Path, starts: int) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if log.exists() and log.read_text().count('"event": "start"') >= starts:
            time.sleep(0.8)  # LISTEN is sent by the first receive, right after "start"
            return
        time.sleep(0.1)
    raise AssertionError("notify capture did not start")


def test_notify_capture_loses_changes_made_while_not_listening(
    cdc_config: HarnessConfig, postgres_server: PostgresServer
) -> None:
    directory = run_dir()
    out = directory / "capture.out"
    cmd = capture_cmd(cdc_config, directory, postgres_server.url, "--capture", "notify")
    writer = Writer(postgres_server.url, cdc_config.prefix)
    try:
        first = start(cmd, out)
        try:
            _listening(directory / "capture.log", 1)
            writer.mixed(10)
            before = _traces(writer)
            time.sleep(0.5)
        finally:
            stop(first)
        writer.mixed(10, start=10)  # nobody listens: these notifications are gone
        while_down = _traces(writer) - before
        second = start(cmd, out)
        try:
            _listening(directory / "capture.log", 2)
            writer.mixed(10, start=20)
            assert drain(second, out) == 0, out.read_text()
        finally:
            stop(second)
        after = _traces(writer) - before - while_down
        got = {r["data"].get("trace") for r in read_stream(cdc_config)}
        assert before <= got and after <= got
        assert while_down and not (while_down & got)  # every change made while down is lost
        assert "seed behaviour" in (directory / "capture.log").read_text()
    finally:
        writer.close()
