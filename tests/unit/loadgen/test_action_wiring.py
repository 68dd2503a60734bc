"""The action log's wiring: its options and defaults, options of other pipelines refused, what a
master sends its workers, the context building an action producer on the actions stream, and
the two consumers the orchestrator starts and drains (both sides, each with its own flags)."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from loadgen.actions import ActionRecords
from loadgen.context import LoadContext
from loadgen.options import DEFAULT_LAZY_RATE, load_options, public_dict, wire_options
from loadgen.producers import Producer
from loadgen.replicators import ReplicatorProcesses, replicator_command, sides_to_start
from xrh.action_log import CONSUMERS, parse_action
from xrh.config import parse_config
from xrh.errors import UsageError


def actions(**kw) -> SimpleNamespace:
    return SimpleNamespace(pipeline="action-log", **kw)


def test_defaults_and_given_values():
    options = load_options(actions())
    assert options.ops == (("put", 40.0), ("update", 40.0), ("delete", 10.0), ("batch", 10.0))
    assert (options.rate_per_user, options.batch_size, options.lazy_rate) == (10.0, 500, 2000.0)
    assert DEFAULT_LAZY_RATE == 2000.0
    shown = public_dict(options)
    assert (shown["ops"], shown["lazy_rate"]) == ("put=40,update=40,delete=10,batch=10", 2000.0)
    assert "batch_writes" not in shown and "lazy_rate" not in public_dict(load_options(
        SimpleNamespace(pipeline="dynamodb")))  # fmt: skip
    given = load_options(actions(ops="batch=1,update=2", lazy_rate="150.5", batch_size="100"))
    assert given.ops == (("update", 2.0), ("batch", 1.0))
    assert (given.lazy_rate, given.batch_size) == (150.5, 100)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (actions(lazy_rate="0"), "--lazy-rate 0.0: actions per second, above 0"),
        (actions(lazy_rate="inf"), "--lazy-rate inf: actions per second, above 0"),
        (actions(lazy_rate="fast"), "--lazy-rate 'fast': not a number"),
        (actions(ops="merge=1"), "--ops 'merge=1': unknown operation 'merge'"),
        (actions(batch_size="501"), "--batch-size 501: PutRecords takes at most 500 records"),
        (actions(batch_writes="0.5"), "--batch-writes '0.5': applies to --pipeline dynamodb "
         "only (this run's pipeline is action-log)"),
        (actions(bootstrap_items="9"), "--bootstrap-items '9': applies to --pipeline dynamodb"),
        (SimpleNamespace(lazy_rate="5"), "--lazy-rate '5': applies to --pipeline action-log "
         "only (this run's pipeline is kinesis)"),
        (SimpleNamespace(pipeline="dynamodb", lazy_rate="5"), "--lazy-rate '5': applies to "
         "--pipeline action-log only"),
        (SimpleNamespace(pipeline="dynamodb", ops="batch=1"), "unknown operation 'batch'"),
        (SimpleNamespace(ops="put=1"), "--ops 'put=1': applies to --pipeline dynamodb, "
         "action-log and active-active only"),
    ],
)  # fmt: skip
def test_errors_name_the_option_and_value(options, message):
    with pytest.raises(UsageError) as err:
        load_options(options)
    assert message in str(err.value)
    assert err.value.exit_code == 3


def test_workers_get_the_masters_options():
    parsed = actions(ops="put=1,batch=3", lazy_rate="77", keys=50, seed=4)
    master = load_options(parsed)
    sent = json.loads(json.dumps(wire_options(parsed, master)))
    worker = load_options(SimpleNamespace(**sent), "action-log")
    for field in ("ops", "lazy_rate", "keyspace", "seed", "rate_per_user", "batch_size"):
        assert getattr(worker, field) == getattr(master, field), field


class ListLedger:
    def __init__(self) -> None:
        self.rows: list[tuple] = []

    def register(self, producer): ...

    def write(self, rows):
        self.rows.extend(rows)

    def final(self, producer): ...


def test_the_context_builds_an_action_producer_on_the_actions_stream_in_a():
    argv = ["--endpoint-url", "http://127.0.0.1:9", "--pipeline", "action-log", "--prefix", "al"]
    config = parse_config(argv, environ={})  # never called: nothing is sent
    context = LoadContext(config, load_options(actions(seed=2)), ListLedger(), "l", "run")
    producer, pacer = context.new_producer()
    assert isinstance(producer, Producer) and isinstance(producer._records, ActionRecords)
    assert pacer.rate == 10.0 and producer.id == "run/lu1"
    s = producer.settings
    assert (s.stream, s.region, s.pipeline, s.batch_size) == (
        "al-actions", config.region_a, "action-log", 500)  # fmt: skip
    producer.add(20)
    got = [parse_action(entry.data) for entry in producer._buffer]
    assert [a.trace for a in got] == [f"run/lu1-{i:09d}" for i in range(1, 21)]
    # seeded: a second context with the same seed builds the same actions
    again = LoadContext(config, load_options(actions(seed=2)), ListLedger(), "l", "run2")
    twin, _ = again.new_producer()
    twin.add(20)
    assert [e.partition_key for e in twin._buffer] == [e.partition_key for e in producer._buffer]


def test_the_orchestrator_starts_a_fast_and_a_lazy_consumer(tmp_path):
    config = parse_config(["--pipeline", "action-log", "--prefix", "al",
                           "--endpoint-url", "http://127.0.0.1:9"], environ={})  # fmt: skip
    options = load_options(actions(lazy_rate="250", replicator="sample"))
    assert sides_to_start("action-log") == ("a", "b") and sides_to_start("kinesis") == ("a",)
    flags = ["--endpoint-url", "http://127.0.0.1:9"]
    fast = replicator_command(config, options, tmp_path, "a", flags)
    lazy = replicator_command(config, options, tmp_path, "b", flags)
    for side, cmd in (("a", fast), ("b", lazy)):
        assert cmd[:4] == [sys.executable, "-m", "xrh", "replicate"]
        text = " ".join(cmd[4:])
        assert f"--pipeline action-log --side {side} --run-dir {tmp_path} --prefix al" in text
        assert "--endpoint-url http://127.0.0.1:9" in text and "--behaviour sample" in text
        assert "--scan-segments" not in text
    assert fast[fast.index("--consumer") + 1] == "fast" and "--max-rate" not in fast
    assert lazy[lazy.index("--consumer") + 1] == "lazy"
    assert lazy[lazy.index("--max-rate") + 1] == "250"
    assert {CONSUMERS["fast"], CONSUMERS["lazy"]} == {"a", "b"} and CONSUMERS["lazy"] == "b"
    kinesis = parse_config(["--prefix", "kk", "--endpoint-url", "http://127.0.0.1:9"], environ={})
    plain = replicator_command(kinesis, load_options(SimpleNamespace()), tmp_path, "a", flags)
    assert "--consumer" not in plain and "--max-rate" not in plain


# A consumer stand-in: on SIGUSR1 it notes that it drained and exits 0; "crash" exits 1 at once.
CONSUMER = """
import pathlib, signal, sys, time
side, out, crash = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3] == "crash"
def drained(*_):
    (out / side).write_text("drained")
    sys.exit(0)
signal.signal(signal.SIGUSR1, drained)
(out / f"{side}.ready").write_text("")
if crash:
    sys.exit(1)
for _ in range(600):
    time.sleep(0.1)
"""


def processes(tmp_path: Path, crash: set[str]) -> ReplicatorProcesses:
    out = tmp_path / "signals"
    out.mkdir()

    def command(side: str) -> list[str]:
        mode = "crash" if side in crash else "run"
        return [sys.executable, "-c", CONSUMER, side, str(out), mode]

    return ReplicatorProcesses(command, tmp_path, lambda text: None)


def wait_ready(tmp_path: Path, *sides: str) -> None:
    for _ in range(200):
        if all((tmp_path / "signals" / f"{s}.ready").exists() for s in sides):
            return
        time.sleep(0.05)
    raise AssertionError(f"consumers {sides} never started")


def test_drain_signals_both_consumers_and_waits_for_both(tmp_path):
    procs = processes(tmp_path, crash=set())
    try:
        for side in sides_to_start("action-log"):
            procs.start(side, check=False)
        wait_ready(tmp_path, "a", "b")
        assert procs.running_sides() == ["a", "b"]
        assert procs.drain(10, time.sleep, lambda: None) is None
        assert {p.read_text() for p in (tmp_path / "signals").glob("[ab]")} == {"drained"}
        assert [p.returncode for p in procs.processes] == [0, 0]
    finally:
        procs.stop()


def test_a_consumer_gone_before_the_drain_makes_the_drain_fail(tmp_path):
    """The lazy consumer died during the load: the fast one drains, and the run is told that
    side B has nothing left to drain (its table would miss what it never applied)."""
    procs = processes(tmp_path, crash={"b"})
    try:
        procs.start("a", check=False)
        procs.start("b", check=False)
        wait_ready(tmp_path, "a", "b")
        for _ in range(100):
            if procs.processes[1].poll() is not None:
                break
            time.sleep(0.05)
        assert procs.running_sides() == ["a"]
        reason = procs.drain(10, time.sleep, lambda: None)
        assert reason == "the replicator of side B exited early (codes [1]); see replicator-b.log"
        assert (tmp_path / "signals" / "a").read_text() == "drained"
    finally:
        procs.stop()


def test_a_side_restarted_after_a_kill_still_drains(tmp_path):
    """A drill killed side A's consumer and started a new one: the side is live, so the drain
    waits for the new one and succeeds (the killed one is not held against it)."""
    procs = processes(tmp_path, crash=set())
    try:
        procs.start("a", check=False)
        procs.start("b", check=False)
        wait_ready(tmp_path, "a", "b")
        first = procs.processes[0]
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        (tmp_path / "signals" / "a.ready").unlink()
        procs.start("a", check=False)
        wait_ready(tmp_path, "a")
        assert procs.drain(10, time.sleep, lambda: None) is None
    finally:
        procs.stop()


def state(process) -> str:
    """The process's state letter from /proc (T: stopped)."""
    return Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def wait_state(process, want: bool) -> None:
    for _ in range(100):
        if (state(process) == "T") == want:
            return
        time.sleep(0.02)
    raise AssertionError(f"process {process.pid} stopped={not want}, expected {want}")


def test_drill_steps_act_on_the_named_sides_consumer(tmp_path):
    """The action log's drills freeze, thaw, kill and restart one consumer by its side (the
    lazy one is 'b'); the other side's consumer is left alone."""
    from loadgen.errors import OrchestrationError

    procs = processes(tmp_path, crash=set())
    try:
        fast = procs.start("a", check=False)
        lazy = procs.start("b", check=False)
        wait_ready(tmp_path, "a", "b")
        procs.freeze("b")
        wait_state(lazy, True)
        assert state(fast) != "T"
        procs.thaw("b")
        wait_state(lazy, False)
        procs.kill("b")
        assert lazy.returncode == -signal.SIGKILL and fast.poll() is None
        with pytest.raises(OrchestrationError, match="no running replicator of side B to kill"):
            procs.kill("b")
        procs.start("b", check=False)
        assert procs.running_sides() == ["a", "b"] and procs.first_of("b") is not lazy
    finally:
        procs.stop()
