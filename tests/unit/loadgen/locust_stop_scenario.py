"""Stop real Locust runners over producers whose requests take a few milliseconds of gevent I/O.

Run as a script (``python tests/unit/loadgen/locust_stop_scenario.py ...``) by
``test_locust_stop.py``: it imports locust, which monkey-patches the whole process with gevent,
so it never runs inside the pytest process. No endpoint and no network: the sink answers
every request with success after a random cooperative sleep, the ledger is in memory.

For each round it starts a :class:`~locust.runners.LocalRunner` with ``--users`` producers
(``KinesisProducerUser``, the real user class), lets them produce for a random moment and
stops the runner the way a run ends (``runner.stop()``, with the stop timeout the locustfile
sets). ``--hang-before-stop S``: every request begun from S seconds before the stop on hangs
(an endpoint that stopped answering), so the stop timeout has to cut them off.
``--sigint-after A B``: instead of stopping after a while, a shell sends the process SIGINT
(Ctrl-C) after A to B seconds and the runner is stopped once the main greenlet has the
KeyboardInterrupt, as Locust's ``main()`` does; ``--busy`` makes requests CPU work, so the
signal usually comes while a user runs. It prints one
JSON line: requests, requests cut off (by the exception that reached the sink: GreenletExit...),
Locust's failures (by repr), ledger rows by status, the errors of ``unknown`` rows, producers
without a final batch, and the longest stop.
"""

import locust  # noqa: I001 - must be first: gevent monkey-patching

import argparse
import json
import logging
import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import gevent
from locust.env import Environment

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from loadgen import locust_users  # noqa: E402
from loadgen.keyspace import KeyspaceSpec  # noqa: E402
from loadgen.kinesis_sink import TimedSink  # noqa: E402
from loadgen.locust_users import STOP_TIMEOUT_S, KinesisProducerUser  # noqa: E402
from loadgen.producers import Pacer, Producer, ProducerSettings  # noqa: E402
from loadgen.templates import compile_template  # noqa: E402
from replicator.core.putrecords import EntryResult  # noqa: E402

assert locust  # imported for its monkey-patching


class SlowSink:
    """Every request succeeds after ``latency()`` seconds of cooperative waiting (``busy``:
    of CPU work, like botocore's serialising and signing, then a yield), or hangs (a minute)
    once ``hanging()`` says the endpoint hangs."""

    def __init__(self, latency, hanging, log: list, busy: bool = False) -> None:
        self.latency = latency
        self.hanging = hanging
        self.log = log
        self.busy = busy
        self.sequence = 0

    def put_records(self, stream, entries):
        try:
            if self.hanging():
                gevent.sleep(60.0)
            elif self.busy:
                until = time.perf_counter() + self.latency()
                while time.perf_counter() < until:
                    pass
                gevent.sleep(0)
            else:
                gevent.sleep(self.latency())
        except BaseException as exc:
            self.log.append(type(exc).__name__)
            raise
        out = []
        for _ in entries:
            self.sequence += 1
            out.append(EntryResult("shardId-000000000000", str(self.sequence), None, None))
        return out


class MemoryLedger:
    def __init__(self) -> None:
        self.rows: list[tuple] = []
        self.registered: set[str] = set()
        self.finals: set[str] = set()

    def register(self, producer: str) -> None:
        self.registered.add(producer)

    def write(self, rows) -> None:
        self.rows.extend(rows)

    def final(self, producer: str) -> None:
        self.finals.add(producer)


class Context:
    """What ``KinesisProducerUser.on_start`` asks for: ``new_producer()``."""

    def __init__(self, args, ledger: MemoryLedger, report, rng: random.Random) -> None:
        self.args, self.ledger, self.report, self.rng = args, ledger, report, rng
        self.cut: list[str] = []
        self.hanging = False
        self.count = 0
        self.template = compile_template('{"n": {{random.number(9)}}}')

    def new_producer(self):
        self.count += 1
        pid = f"p{self.count}"
        rng = random.Random(self.rng.random())
        lo, hi = self.args.latency_ms
        latency = lambda: rng.uniform(lo, hi) / 1000  # noqa: E731
        sink = SlowSink(latency, lambda: self.hanging, self.cut, busy=self.args.busy)
        sink = TimedSink(sink, self.report)
        producer = Producer(
            pid, self.template.bind(rng=rng, producer=pid), KeyspaceSpec(size=50).build(rng),
            sink, self.ledger, ProducerSettings("s", "r", batch_size=self.args.batch,
                                                linger_s=self.args.linger),
        )  # fmt: skip
        return producer, Pacer(self.args.rate)


def one_round(args, rng: random.Random) -> dict:
    env = Environment(user_classes=[KinesisProducerUser], stop_timeout=args.stop_timeout)
    failures: list[str] = []

    def on_request(exception=None, **_):
        if exception is not None:
            failures.append(repr(exception))

    env.events.request.add_listener(on_request)
    ledger = MemoryLedger()
    context = Context(args, ledger, None, rng)

    def report(ms, n, results, exc):
        env.events.request.fire(request_type="kinesis", name="PutRecords", response_time=ms,
                                response_length=n, exception=exc, context={})  # fmt: skip

    context.report = report
    env.xrh = SimpleNamespace(context=context)
    runner = env.create_local_runner()
    runner.start(args.users, spawn_rate=args.users, wait=False)
    sigint = False
    if args.sigint_after is not None:
        # Ctrl-C from outside the process, at a moment nobody here chose.
        delay = rng.uniform(*args.sigint_after)
        kill = subprocess.Popen(["sh", "-c", f"sleep {delay:.3f}; kill -INT {os.getpid()}"])
        try:
            gevent.sleep(delay + 10)
        except KeyboardInterrupt:  # where Locust's main() handles it: stop the users
            sigint = True
        kill.wait()
    else:
        gevent.sleep(rng.uniform(*args.run_s))
    if args.hang_before_stop is not None:  # from now on the endpoint answers nothing
        context.hanging = True
        gevent.sleep(args.hang_before_stop)
    started = time.monotonic()
    runner.stop()
    stopped_in = time.monotonic() - started
    runner.quit()
    statuses = Counter(row[11] for row in ledger.rows)
    return {
        "requests": runner.stats.total.num_requests,
        "cut_off": context.cut,
        "failures": failures,
        "statuses": dict(statuses),
        "unknown_errors": sorted({row[16] for row in ledger.rows if row[11] == "unknown"}),
        "without_final": sorted(ledger.registered - ledger.finals),
        "stop_s": stopped_in,
        "sigint_in_main": sigint,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--rate", type=float, default=400.0)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--linger", type=float, default=0.01)
    parser.add_argument("--latency-ms", type=float, nargs=2, default=(0.5, 4.0))
    parser.add_argument("--run-s", type=float, nargs=2, default=(0.15, 0.35))
    parser.add_argument("--stop-timeout", type=float, default=STOP_TIMEOUT_S)
    parser.add_argument("--hang-before-stop", type=float, default=None)
    parser.add_argument("--busy", action="store_true")
    parser.add_argument("--sigint-after", type=float, nargs=2, default=None)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # Locust's own notices; the result is the JSON line
    rng = random.Random(args.seed)
    if args.sigint_after is not None:
        # What the locustfile's init listener does for Ctrl-C (older code: Python's default).
        route = getattr(locust_users, "ctrl_c_to_main_greenlet", None)
        if route is not None:
            route()
    total: dict = {"rounds": 0, "requests": 0, "cut_off": Counter(), "failures": Counter(),
                   "statuses": Counter(), "unknown_errors": set(), "without_final": [],
                   "max_stop_s": 0.0, "sigints_in_main": 0}  # fmt: skip
    for _ in range(args.rounds):
        got = one_round(args, rng)
        total["rounds"] += 1
        total["requests"] += got["requests"]
        total["cut_off"].update(got["cut_off"])
        total["failures"].update(got["failures"])
        total["statuses"].update(got["statuses"])
        total["unknown_errors"].update(got["unknown_errors"])
        total["without_final"] += got["without_final"]
        total["max_stop_s"] = max(total["max_stop_s"], got["stop_s"])
        total["sigints_in_main"] += got["sigint_in_main"]
    total["unknown_errors"] = sorted(total["unknown_errors"])
    print(json.dumps(total))


if __name__ == "__main__":
    main()
