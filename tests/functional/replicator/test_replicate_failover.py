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
    """Switch while A still holds records its replicator has not copied (A's poller is frozen
    over the switch): A still copies what arrived before the switch, B copies from the switch
    on, A's late copies come back to A once (counted, bounded) and nothing loops further."""
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
        produce(ka, names.stream, 0, 400)  # p-000000 .. p-000399 originate in A
        assert wait_for(lambda: sum(map(len, read_stream(kb, names.stream).values())) >= 400, 30)
        procs[0].send_signal(signal.SIGSTOP)  # A's replicator falls behind ...
        produce(ka, names.stream, 400, 600)  # ... while A takes 600 more records
        switch_ms = int(time.time() * 1000) + 1
        time.sleep(0.01)
        for side in (Side.A, Side.B):  # the operator's failover: B active from now on
            set_active_region(
                clients.client("dynamodb", side),
                names.active_region_table,
                names.stream,
                config.region_b,
                since_ms=switch_ms,
                previous_region=config.region_a,
            )
        produce(kb, names.stream, 100_000, 400)  # producers now write to B
        time.sleep(1.0)  # frozen longer than A's cache bound (0.5 s): A wakes up to the switch
        procs[0].send_signal(signal.SIGCONT)
        time.sleep(1.0)  # > cache bound: both pollers see the switch before draining
        for p in procs:
            p.send_signal(signal.SIGUSR1)  # drain and exit
        codes = [p.wait(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
        stop(procs)
    logs = "\n".join((tmp_path / f"{w}.out").read_text() for w in ("ra", "rb"))
    assert codes == [0, 0], logs

    in_a = Counter(t for ts in read_stream(ka, names.stream).values() for t in ts)
    in_b = Counter(t for ts in read_stream(kb, names.stream).values() for t in ts)
    from_a = {f"p-{i:06d}" for i in range(1000)}
    from_b = {f"p-{i:06d}" for i in range(100_000, 100_400)}
    assert from_a <= set(in_b), f"{len(from_a - set(in_b))} of A's records never reached B"
    assert from_b <= set(in_a), f"{len(from_b - set(in_a))} of B's records never reached A"
    # Bounded duplicates: only the 600 records A copied late can come back to A, once each.
    looped_back = sum(in_a[t] - 1 for t in from_a)
    assert looped_back <= 600, f"{looped_back} duplicates in A"
    assert max(in_a[t] for t in from_a) <= 2 and max(in_b[t] for t in from_a) == 1
    assert all(in_b[t] == 1 for t in from_b)  # B's own records are not copied into B again
    assert all(in_a[t] == 1 for t in from_b)
    print(f"failover: {looped_back} of A's records came back to A once (late copies)")
