"""The postgres-cdc pipeline's wiring: the capture process's command line, the processes a run
starts and the order they drain in (capture first), and the context's producer of transactions."""

from __future__ import annotations

import json
import sys
import time
from types import SimpleNamespace

from loadgen.context import LoadContext
from loadgen.options import load_options
from loadgen.postgres_load import PostgresProducer, postgres_producer
from loadgen.replicators import (
    CAPTURE,
    ReplicatorProcesses,
    log_name,
    replicator_command,
    sides_to_start,
)
from xrh.config import parse_config

ARGV = ["--endpoint-url", "http://127.0.0.1:9", "--pipeline", "postgres-cdc", "--prefix", "pg-1"]


def pg(**kw) -> SimpleNamespace:
    return SimpleNamespace(pipeline="postgres-cdc", **kw)


def test_capture_runs_before_side_a_and_writes_its_own_output():
    assert sides_to_start("postgres-cdc") == (CAPTURE, "a")
    assert sides_to_start("kinesis") == ("a",)
    assert log_name(CAPTURE) == "capture-output.log" and log_name("a") == "replicator-a.log"


def test_the_capture_command(tmp_path):
    config = parse_config(ARGV, environ={})
    endpoint = ["--endpoint-url", "http://127.0.0.1:9"]
    command = replicator_command(config, load_options(pg(drain_timeout="40")), tmp_path, CAPTURE,
                                 endpoint)  # fmt: skip
    assert command[:4] == [sys.executable, "-m", "xrh", "capture"]
    text = " ".join(command)
    assert f"--run-dir {tmp_path} --prefix pg-1 --endpoint-url http://127.0.0.1:9" in text
    assert "--drain-timeout 40.0" in text and "--capture" not in text
    notify = replicator_command(config, load_options(pg(capture="notify")), tmp_path, CAPTURE,
                                endpoint)  # fmt: skip
    assert "--capture notify" in " ".join(notify)
    # --replicator sample: the sample is the seed's notify capture; A's copier stays reference
    sample = load_options(pg(replicator="sample"))
    assert "--capture notify" in " ".join(replicator_command(config, sample, tmp_path, CAPTURE,
                                                             endpoint))  # fmt: skip
    copier = replicator_command(config, sample, tmp_path, "a", endpoint)
    assert copier[3] == "replicate" and "--behaviour" not in copier
    # a URL's password is never on a command line
    secret = load_options(pg(postgres_url="postgresql://u:s3cret@h/db"))
    assert "s3cret" not in " ".join(replicator_command(config, secret, tmp_path, CAPTURE, endpoint))


WAITER = """
import signal, sys, time
def drained(*_):
    with open(sys.argv[1], "a") as out:
        out.write(f"{sys.argv[2]} {time.monotonic()}\\n")
    sys.exit(0)
signal.signal(signal.SIGUSR1, drained)
with open(sys.argv[1] + ".ready", "a") as out:
    out.write(sys.argv[2] + "\\n")
while True:
    time.sleep(0.05)
"""


def test_capture_drains_before_the_replicator_gets_sigusr1(tmp_path):
    order = tmp_path / "order"
    processes = ReplicatorProcesses(lambda side: [sys.executable, "-c", WAITER, str(order), side],
                                    tmp_path, lambda text: None)  # fmt: skip
    try:
        for side in sides_to_start("postgres-cdc"):
            processes.start(side, check=False)
        ready = tmp_path / "order.ready"  # both have their SIGUSR1 handler
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (not ready.exists() or len(ready.read_text().split()) < 2):
            time.sleep(0.05)
        assert processes.drain(5, time.sleep, lambda: None) is None
        assert [line.split()[0] for line in order.read_text().splitlines()] == [CAPTURE, "a"]
        assert (tmp_path / "capture-output.log").exists()
    finally:
        processes.stop()


class NullLedger:
    def register(self, producer): ...

    def write(self, rows): ...

    def final(self, producer): ...


def test_the_context_builds_producers_of_transactions(tmp_path):
    config = parse_config([*ARGV, "--runs-dir", str(tmp_path)], environ={})
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "postgres.json").write_text(json.dumps({"url": "postgresql://x@h/p"}))
    options = load_options(pg(seed=1, statements_per_txn="2", rate_per_user="25"))
    context = LoadContext(config, options, NullLedger(), "l", "run")
    first, pacer = postgres_producer(context)
    second, _ = postgres_producer(context)
    assert isinstance(first, PostgresProducer) and pacer.rate == 25.0
    assert (first.id, second.id) == ("run/lu1", "run/lu2") and context.producers == [first, second]
    assert first.settings.table == "public.pg_1" and first.settings.statements_per_txn == 2
    first.add(3)
    again = postgres_producer(LoadContext(config, options, NullLedger(), "l", "run"))[0]
    again.add(3)
    assert first._buffer == again._buffer  # a seed reproduces the drawn transactions
    assert first.conn is None  # nothing connects before a transaction runs
