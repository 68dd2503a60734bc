"""Failover with A's replicator frozen across the switch (it still holds records it has not
copied): ``xrh failover --to b`` hands over without loss (records written to A just after the
switch included), without sending A's late copies back to A (no loop), and every watermark
claim of both directions holds; the seed's switch (``activeRegion`` only) loses the records
in flight."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_replicate_poller import poller_cmd, produce, read_stream, start, stop

from replicator.adapters.dynamodb import set_active_region
from xrh.aws import AwsClients
from xrh.config import HarnessConfig, Side
from xrh.contracts import WatermarkClaim, parse_iso_ms
from xrh.resources import ResourceNames

pytestmark = pytest.mark.functional
FROM_A = {f"p-{i:06d}" for i in range(1000)}  # 400 copied before the freeze, 600 in flight
FROM_B = {f"p-{i:06d}" for i in range(100_000, 100_400)}  # written to B after the switch
#: written to A just after the switch (producer requests that began before it)
STRAGGLERS = {f"p-{i:06d}" for i in range(2_000, 2_050)}


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


@dataclass
class Outcome:
    in_a: Counter
    in_b: Counter
    arrivals: dict[str, dict[str, tuple[int, int]]]  # side -> trace -> (commit ms, arrival ms)
    claims: list[WatermarkClaim]
    logs: str
    counters: dict[str, dict[str, int]]  # worker -> replicator counters
    completed: bool = False  # A's replicator marked its handover complete (B did not time out)


def arrivals_of(client, stream: str) -> dict[str, tuple[int, int]]:
    """trace -> (commit ms, first arrival ms) of every record of a stream."""
    out: dict[str, tuple[int, int]] = {}
    for shard in client.list_shards(StreamName=stream)["Shards"]:
        it = client.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        for _ in range(1000):
            r = client.get_records(ShardIterator=it, Limit=10000)
            for rec in r["Records"]:
                payload = json.loads(rec["Data"])
                arrival = int(rec["ApproximateArrivalTimestamp"].timestamp() * 1000)
                commit = parse_iso_ms(payload["commitTimestamp"])
                out.setdefault(payload["trace"], (commit, arrival))
            it = r.get("NextShardIterator")
            if it is None or (not r["Records"] and r.get("MillisBehindLatest", 0) == 0):
                break
    return out


def run_failover(
    config: HarnessConfig, tmp_path: Path, switch: Callable[[], None], stragglers: bool = False
) -> Outcome:
    """Both replicators run; A's is frozen while A takes 600 more records and ``switch`` makes
    B active; producers then write to B (``stragglers``: 50 more land in A first); A's
    replicator wakes up; both drain."""
    names = ResourceNames(config.prefix)
    clients = AwsClients(config)
    ka, kb = clients.client("kinesis", Side.A), clients.client("kinesis", Side.B)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    ttl = ["--active-region-ttl", "0.5", "--handover-grace", "2"]
    procs = [
        start(poller_cmd(config, run_dir, "ra", "a", *ttl), tmp_path / "ra.out"),
        start(poller_cmd(config, run_dir, "rb", "b", *ttl), tmp_path / "rb.out"),
    ]
    try:
        produce(ka, names.stream, 0, 400)  # p-000000 .. p-000399 originate in A
        assert wait_for(lambda: sum(map(len, read_stream(kb, names.stream).values())) >= 400, 30)
        procs[0].send_signal(signal.SIGSTOP)  # A's replicator falls behind ...
        produce(ka, names.stream, 400, 600)  # ... while A takes 600 more records
        time.sleep(0.01)
        switch()
        if stragglers:
            produce(ka, names.stream, 2_000, 50)
        produce(kb, names.stream, 100_000, 400)  # producers now write to B
        time.sleep(0.6)  # frozen longer than A's cache bound (0.5 s): A wakes up to the switch
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
    claims_file = run_dir / "claims.jsonl"
    claims = [
        WatermarkClaim.from_line(x)
        for x in (claims_file.read_text().splitlines() if claims_file.exists() else [])
    ]
    metrics = json.loads((run_dir / "replicator-metrics.json").read_text())
    return Outcome(
        Counter(t for ts in read_stream(ka, names.stream).values() for t in ts),
        Counter(t for ts in read_stream(kb, names.stream).values() for t in ts),
        {"a": arrivals_of(ka, names.stream), "b": arrivals_of(kb, names.stream)},
        claims,
        logs,
        {w: v["counters"] for w, v in metrics["workers"].items()},
        '"handover_complete"' in (run_dir / "replicator-ra.log").read_text(),
    )


def false_claims(config: HarnessConfig, outcome: Outcome) -> list[tuple[WatermarkClaim, str]]:
    """Each claim (t, W) of direction X -> Y against the data: every record that originated in
    X, committed by W and arrived in X before t, must be in Y (by the end of the run)."""
    side_of = {config.region_a: "a", config.region_b: "b"}
    origin = {"a": FROM_A | STRAGGLERS, "b": FROM_B}
    held = {"a": outcome.in_a, "b": outcome.in_b}
    bad = []
    for claim in outcome.claims:
        source, target = side_of[claim.source_region], side_of[claim.target_region]
        for trace in sorted(origin[source] & set(outcome.arrivals[source])):
            commit, arrival = outcome.arrivals[source][trace]
            covered = commit <= claim.watermark_ms and arrival < claim.claimed_at_ms
            if covered and not held[target][trace]:
                bad.append((claim, trace))
                break
    return bad


def test_xrh_failover_hands_over_without_loss_and_every_claim_holds(
    provisioned: HarnessConfig, tmp_path: Path
) -> None:
    config = provisioned

    def xrh_failover() -> None:
        cmd = [
            sys.executable, "-m", "xrh", "failover", "--to", "b",
            "--endpoint-url-a", config.endpoint_url_a, "--endpoint-url-b", config.endpoint_url_b,
            "--prefix", config.prefix, "--runs-dir", str(tmp_path / "runs"),
        ]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=dict(os.environ))
        assert done.returncode == 0, done.stdout + done.stderr
        assert "is active for" in done.stdout

    outcome = run_failover(config, tmp_path, xrh_failover, stragglers=True)
    in_a, in_b = outcome.in_a, outcome.in_b
    assert set(in_b) >= FROM_A, f"{len(FROM_A - set(in_b))} of A's records never reached B"
    late = STRAGGLERS - set(in_b)
    assert not late, f"{len(late)} records written to A just after the switch never reached B"
    assert set(in_a) >= FROM_B, f"{len(FROM_B - set(in_a))} of B's records never reached A"
    # No loop: the 600 records A copied late are recorded by A and never sent back by B.
    looped_back = sum(in_a[t] - 1 for t in FROM_A | STRAGGLERS)
    assert looped_back == 0, f"{looped_back} of A's records came back to A"
    assert max(in_b[t] for t in FROM_A) == 1
    assert all(in_b[t] == 1 for t in FROM_B)  # B's own records are not copied into B again
    assert all(in_a[t] == 1 for t in FROM_B)
    assert outcome.counters["ra"]["handover_copies_recorded"] >= 650
    assert outcome.counters["rb"]["handover_skipped_copies"] == 650
    assert outcome.completed  # B waited for A's handover, not for its timeout

    directions = {(c.source_region, c.target_region) for c in outcome.claims}
    assert (config.region_a, config.region_b) in directions  # A -> B, before and after
    assert (config.region_b, config.region_a) in directions  # B -> A, once B is active
    for direction in directions:
        marks = [
            c.watermark_ms
            for c in sorted(outcome.claims, key=lambda c: c.claimed_at_ms)
            if (c.source_region, c.target_region) == direction
        ]
        assert marks == sorted(marks), direction  # never backwards
    assert not false_claims(config, outcome)
    # The check itself catches a claim the data does not back (planted: one record removed).
    newest = max(commit for commit, _ in outcome.arrivals["a"].values())
    planted = WatermarkClaim(
        int(time.time() * 1000), newest, "s", config.region_a, config.region_b, "planted"
    )
    missing = Counter(in_b)
    del missing["p-000500"]
    assert false_claims(config, Outcome(in_a, missing, outcome.arrivals, [planted], "", {}))
    print(
        f"failover: {outcome.counters['rb']['handover_skipped_copies']} late copies not sent "
        f"back; B held {outcome.counters['rb'].get('handover_held_batches', 0)} batches"
    )


def test_the_seeds_switch_loses_the_records_in_flight(
    provisioned: HarnessConfig, tmp_path: Path
) -> None:
    """The seed's failover writes ``activeRegion`` only: A stands down at once and acknowledges
    uncopied the 600 records that reached A before the switch but were not copied yet."""
    config = provisioned
    names = ResourceNames(config.prefix)
    clients = AwsClients(config)

    def seed_switch() -> None:
        for side in (Side.A, Side.B):
            set_active_region(
                clients.client("dynamodb", side),
                names.active_region_table,
                names.stream,
                config.region_b,
            )

    outcome = run_failover(config, tmp_path, seed_switch)
    lost = FROM_A - set(outcome.in_b)
    assert lost == {f"p-{i:06d}" for i in range(400, 1000)}, f"{len(lost)} lost"
    assert set(outcome.in_a) >= FROM_B  # B -> A works from the switch on
    print(f"seed's switch: {len(lost)} records lost")
