"""SIGTERM: the poller finishes the batch in flight, checkpoints and releases its leases, so a
successor starts at once from where it stopped; nothing is lost across the hand-over."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest
from replicator_pipeline import Pipeline
from test_replicate_poller import poller_cmd, produce, read_stream, start, stop

from replicator.adapters.leases import LeaseTable
from xrh.config import Side

pytestmark = pytest.mark.functional


def test_sigterm_checkpoints_and_releases_leases(pipeline: Pipeline, tmp_path: Path) -> None:
    config, names, clients, ka, kb, run_dir = pipeline
    first = start(
        poller_cmd(config, run_dir, "first", "a", "--lease-seconds", "60"), tmp_path / "first.out"
    )
    try:
        produce(ka, names.stream, 0, 1000)
        deadline = time.monotonic() + 30
        while (
            time.monotonic() < deadline
            and sum(map(len, read_stream(kb, names.stream).values())) < 1000
        ):
            time.sleep(0.2)
        first.send_signal(signal.SIGTERM)
        code = first.wait(timeout=30)
    finally:
        stop([first])
    assert code == 0, (tmp_path / "first.out").read_text()
    leases, _ = LeaseTable(
        clients.client("dynamodb", Side.A), names.lease_table, names.stream, "x"
    ).list()
    assert leases and all(lease.owner is None for lease in leases.values()), leases
    assert all(lease.checkpoint for lease in leases.values())

    # Its leases would not expire for 60 s: a successor can only start now because they were released.
    produce(ka, names.stream, 1000, 500)
    second = start(
        poller_cmd(config, run_dir, "second", "a", "--until-drained"), tmp_path / "second.out"
    )
    try:
        assert second.wait(timeout=60) == 0, (tmp_path / "second.out").read_text()
    finally:
        stop([second])
    target = [t for ts in read_stream(kb, names.stream).values() for t in ts]
    assert {f"p-{i:06d}" for i in range(1500)} <= set(target)
    assert len(target) - len(set(target)) < 500  # a resend from the checkpoint, not a replay of all


def test_a_drain_requested_while_the_process_starts_drains_it(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    """SIGUSR1 sent the moment the process exists (it is still importing boto3): its default
    action would end the process (-10); the request is kept and the replicator drains."""
    config, names, clients, ka, kb, run_dir = pipeline
    produce(ka, names.stream, 0, 200)
    command = [sys.executable, "-m", "xrh", "replicate", *poller_cmd(config, run_dir, "early")[3:]]
    early = start(command, tmp_path / "early.out")
    try:
        # as soon as the interpreter catches SIGUSR1 (its first lines ran; boto3 and the
        # clients are still to come): before that, no program can keep a signal
        deadline = time.monotonic() + 10
        while not _catches(early.pid, signal.SIGUSR1) and time.monotonic() < deadline:
            time.sleep(0.002)
        early.send_signal(signal.SIGUSR1)
        code = early.wait(timeout=60)
    finally:
        stop([early])
    out = (tmp_path / "early.out").read_text()
    assert code == 0 and "drained" in out, out
    assert "SIGUSR1 arrived while starting" in out, out  # kept, not seen after the imports
    target = [t for ts in read_stream(kb, names.stream).values() for t in ts]
    assert {f"p-{i:06d}" for i in range(200)} <= set(target)


def _catches(pid: int, signum: int) -> bool:
    """Whether the process has a handler for ``signum`` (its SigCgt mask in /proc)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = next(
        (line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), "0"
    )
    return bool(int(mask, 16) >> (signum - 1) & 1)
