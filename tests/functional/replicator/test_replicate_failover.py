"""Failover: switching the active region makes A stand down and B take over where B's stream
stands; records that came from A are not sent back to A in a loop. Pollers stop on SIGUSR1."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from test_replicate_poller import poller_cmd, produce, read_stream, start, stop

from replicator.adapters.dynamodb import set_active_region
from xrh.aws import AwsClients
from xrh.config import HarnessConfig, Side
from xrh.resources import ResourceNames

pytestmark = pytest.mark.functional


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_failover_switch_no_loss_bounded_duplicates(
    provisioned: HarnessConfig, tmp_path: Path
) -> None:
    config = provisioned
    names = ResourceNames(config.prefix)
    clients = AwsClients(config)
    ka, kb = clients.client("kinesis", Side.A), clients.client("kinesis", Side.B)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    ttl = ["--active-region-ttl", "0.5"]
    procs = [
        start(poller_cmd(config, run_dir, "ra", "a", *ttl), tmp_path / "ra.out"),
        start(poller_cmd(config, run_dir, "rb", "b", *ttl), tmp_path / "rb.out"),
    ]
    try:
        produce(ka, names.stream, 0, 800)  # traces p-000000 .. p-000799 originate in A
        assert wait_for(lambda: sum(map(len, read_stream(kb, names.stream).values())) >= 800, 30)
        time.sleep(1.0)  # B's standby poller consumes the copies without sending them back
        for side in (Side.A, Side.B):
            set_active_region(
                clients.client("dynamodb", side),
                names.active_region_table,
                names.stream,
                config.region_b,
            )
        time.sleep(1.5)  # > cache bound + one batch
        produce(kb, names.stream, 100_000, 800)  # after failover producers write to B
        for p in procs:
            p.send_signal(signal.SIGUSR1)  # drain and exit
        codes = [p.wait(timeout=60) for p in procs]
    finally:
        stop(procs)
    logs = "\n".join((tmp_path / f"{w}.out").read_text() for w in ("ra", "rb"))
    assert codes == [0, 0], logs

    in_a = Counter(t for ts in read_stream(ka, names.stream).values() for t in ts)
    in_b = Counter(t for ts in read_stream(kb, names.stream).values() for t in ts)
    from_a = {f"p-{i:06d}" for i in range(800)}
    from_b = {f"p-{i:06d}" for i in range(100_000, 100_800)}
    assert from_a <= set(in_b)  # A's records reached B before the switch
    assert from_b <= set(in_a)  # B's records reach A after it
    looped_back = sum(in_a[t] - 1 for t in from_a)
    assert looped_back == 0, f"{looped_back} records of A were sent back to A"
    assert all(in_b[t] == 1 for t in from_b)  # B's own records are not copied into B again
