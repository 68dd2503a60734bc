"""Locust glue: options, users, load shapes, orchestration hooks, the web UI tab.

The only module besides ``locustfile.py`` that imports locust (which monkey-patches with gevent:
import locust before boto3 in any process that runs users). The workload itself is
:mod:`loadgen.producers`, plain Python; orchestration is :mod:`loadgen.orchestrator`.

Roles (DESIGN.md, "Ledger"):

- local runner: starts everything on test start, writes the ledger itself, and on test stop
  drains, verifies and keeps verify's exit code for the ``quitting`` listener;
- master: the same, but its users run on workers: it sends them ``xrh_setup`` (endpoints, run,
  prefix) before they spawn, writes their ledger rows (``xrh_ledger`` messages) and on stop asks
  them (``xrh_stop``) for their final batches, waiting for all of them (bounded) before verify;
- worker: builds producers from ``xrh_setup`` and forwards rows to the master.

The master or local runner also keeps Locust's CSV stats in the run directory
(:class:`RunStatsCsv`), whether or not ``--csv`` asked for a copy elsewhere.
"""

from __future__ import annotations

import atexit
import contextlib
import csv
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gevent
from locust import LoadTestShape, User, task
from locust.runners import MasterRunner, WorkerRunner
from locust.user.task import LOCUST_STATE_STOPPING, LOCUST_STATE_WAITING

from loadgen.context import LoadContext
from loadgen.ledger import MESSAGE_TYPE, LedgerForwarder
from loadgen.options import LOAD_PIPELINES, LoadOptions, add_options, load_options, wire_options
from loadgen.orchestrator import Orchestrator, config_from_wire, config_to_wire
from loadgen.shapes import shape_at
from xrh.config import Side, add_common_options, config_from_options
from xrh.errors import EXIT_UNKNOWN, EXIT_USAGE, HarnessError, UsageError

SETUP = "xrh_setup"
STOP = "xrh_stop"
REGION = "xrh_region"  # master -> workers: producers write to this region from now (failover)
STOP_TIMEOUT_S = 15.0
STATS_CSV_PREFIX = "locust"  # locust_stats.csv, _stats_history.csv, _failures.csv, _exceptions.csv


class PartialFailure(Exception):
    """Some entries of a PutRecords request failed (shown in Locust's failures)."""


class RunStatsCsv:
    """Locust's CSV stats in the run directory (DESIGN.md, "Run directory"), written by
    Locust's own :class:`~locust.stats.StatsCSVFileWriter`: its loop appends a history row
    per request name every second while the run goes; :meth:`close` stops it and writes the
    final totals, failures and exceptions (in a distributed run, after the workers' last
    stats reports have reached the master)."""

    def __init__(self, environment: Any, run_path: Path) -> None:
        from locust.stats import PERCENTILES_TO_REPORT, StatsCSVFileWriter

        self.base = str(run_path / STATS_CSV_PREFIX)
        self._writer = StatsCSVFileWriter(
            environment, PERCENTILES_TO_REPORT, self.base, full_history=True
        )
        self._loop: Any = gevent.spawn(self._writer.stats_writer)

    def close(self) -> None:
        """Stop the history loop and write the final snapshot (idempotent)."""
        if self._loop is None:
            return
        loop, self._loop = self._loop, None
        loop.kill(block=True)
        w = self._writer
        w.close_files()
        for suffix, write in (("_stats.csv", w.requests_csv), ("_failures.csv", w.failures_csv),
                              ("_exceptions.csv", w.exceptions_csv)):  # fmt: skip
            with open(self.base + suffix, "w") as handle:  # as Locust's own writer opens them
                write(csv.writer(handle))


@dataclass
class Node:
    """What one Locust process knows about the run (kept on the environment as ``xrh``)."""

    environment: Any
    options: LoadOptions
    orchestrator: Orchestrator | None = None
    context: LoadContext | None = None
    forwarder: LedgerForwarder | None = None
    flusher: Any = None
    stats_csv: RunStatsCsv | None = None
    exit_code: int | None = None
    error: str | None = None
    starting: bool = False  # test start is setting the run up (endpoint, provision, replicator)
    stopped_while_starting: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    request_records: dict[str, int] = field(default_factory=dict)  # records sent per request name
    report: Any = field(init=False, default=None)  # KinesisRequests: each PutRecords request
    _reporting: bool = field(init=False, default=False)

    def say(self, text: str) -> None:
        print(f"[xrh] {text}", file=sys.stderr, flush=True)

    def __post_init__(self) -> None:
        self.report = KinesisRequests(self)

    def report_item(self, name: str, ms: float, size: int, exc: BaseException | None) -> None:
        """One DynamoDB request (PutItem, UpdateItem, DeleteItem, BatchWriteItem); its length
        is the request's size in bytes (the HTTP body botocore sent)."""
        self.environment.events.request.fire(request_type="dynamodb", name=name, response_time=ms,
                                             response_length=size, exception=exc, context={})  # fmt: skip
        if name.split(" ")[0] != "BatchWriteItem":  # one item a request; a batch's is not told
            self.count_records(name, 1)

    def count_records(self, name: str, records: int) -> None:
        """Records (items, actions) sent per request name, shown beside Locust's request stats
        in the web UI's replication tab. A worker sends its counts to the master with each
        stats report (Locust's ``report_to_master`` event)."""
        self.request_records[name] = self.request_records.get(name, 0) + records
        if not self._reporting and isinstance(self.environment.runner, WorkerRunner):
            self._reporting = True
            self.environment.events.report_to_master.add_listener(self._send_records)

    def _send_records(self, client_id: str, data: dict[str, Any], **_: Any) -> None:
        data["xrh_request_records"], self.request_records = self.request_records, {}

    def close_stats_csv(self) -> None:
        stats, self.stats_csv = self.stats_csv, None
        if stats is not None:
            try:
                stats.close()
            except OSError as exc:  # the run's verdict stands; say what is missing
                self.say(f"could not write Locust's CSV stats to {stats.base}_*.csv: {exc}")

    def pool_size(self) -> int:
        users = getattr(self.environment.parsed_options, "num_users", None) or 10
        return max(10, min(1000, int(users) + 4))


@dataclass
class KinesisRequests:
    """PutRecords requests as Locust requests (perf_counter timing, ms): the response length
    is the bytes of the records sent (:class:`~loadgen.kinesis_sink.TimedSink` measures them),
    and the records of each request are counted (:meth:`Node.count_records`)."""

    node: Node

    def sized(self, ms: float, n: int, size: int, results: Any, exc: BaseException | None) -> None:
        if exc is None and results is not None:
            failed = [r.error_code for r in results if not r.ok]
            if failed:
                exc = PartialFailure(f"{len(failed)} of {n} entries failed ({failed[0]})")
        self.node.environment.events.request.fire(
            request_type="kinesis", name="PutRecords", response_time=ms,
            response_length=size, exception=exc, context={},
        )  # fmt: skip
        self.node.count_records("PutRecords", n)

    def __call__(self, ms: float, n: int, results: Any, exc: BaseException | None) -> None:
        """A report without the request's bytes (a sink other than TimedSink): length 0."""
        self.sized(ms, n, 0, results, exc)


def _node(environment: Any) -> Node | None:
    return getattr(environment, "xrh", None)


# ------------------------------------------------------------------------ users and shapes


class ProducerUser(User):
    """A producer of the run's pipeline: records (kinesis: batched into PutRecords), table
    writes (dynamodb: :mod:`loadgen.items`) or actions (action-log: :mod:`loadgen.actions`).

    A stop never cuts a request off. Locust's own :meth:`User.stop` (``locust/user/users.py``,
    called by ``Runner.stop_users``) kills a user whose state says "waiting" instead of waiting
    for it, but the kill (``GreenletExit``) is delivered later, asynchronously (gevent's
    ``Greenlet.kill``), and lands in whatever the greenlet does next, which for a producer
    whose pause has just ended is its next PutRecords: a Locust failure and a batch of
    ``unknown`` records. So the user never waits in Locust's
    ``wait()`` (``wait_time`` is 0): it waits inside its task, on the :class:`ProducerLoop`'s
    stop event, which :meth:`stop` sets; a graceful stop only marks the user stopping, so it
    finishes the request in flight, stops at once if it was waiting, and sends its final
    batch in ``on_stop``. ``environment.stop_timeout`` (:data:`STOP_TIMEOUT_S`) still bounds
    that: Locust kills a user that has not finished by then (a hanging endpoint), and its
    request's records are ledgered ``unknown``.
    """

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self._loop: Any = None

    def wait_time(self) -> float:
        return 0.0  # the producer waits inside its task, where a stop wakes it (see above)

    def on_start(self) -> None:
        node = _node(self.environment)
        if node is None or node.context is None:
            from locust.exception import StopUser

            raise StopUser("the run is not set up (see the errors above)")
        from gevent.event import Event

        from loadgen.producers import ProducerLoop

        producer, pacer = node.context.new_producer()
        self._loop = ProducerLoop(producer, pacer, Event())

    @task
    def produce(self) -> None:
        self._loop.turn()

    def stop(self, force: bool = False) -> bool:
        """Locust's stop, except that a graceful stop never kills: it marks the user
        stopping (Locust's ``TaskSet`` raises ``StopUser`` before the next task and after the
        zero wait) and wakes the producer's wait."""
        if self._loop is not None:
            self._loop.request_stop()
        if not force and self._state in (LOCUST_STATE_WAITING, LOCUST_STATE_STOPPING):
            self._state = LOCUST_STATE_STOPPING
            return False
        return super().stop(force)

    def on_stop(self) -> None:
        if self._loop is not None:
            self._loop.close()


KinesisProducerUser = ProducerUser  # its name before the dynamodb pipeline (kept for imports)


class XrhShape(LoadTestShape):
    """``--load-shape`` as Locust's load shape (the curves: :func:`loadgen.shapes.shape_at`)."""

    use_common_options = True

    def tick(self) -> tuple[int, float] | None:
        opts = self.runner.environment.parsed_options
        users = int(getattr(opts, "num_users", None) or 1)
        return shape_at(
            str(getattr(opts, "load_shape", "steady") or "steady"), self.get_run_time(), users,
            float(getattr(opts, "spawn_rate", None) or users), getattr(opts, "run_time", None),
        )  # fmt: skip


# ------------------------------------------------------------------------ event listeners


def register(events: Any) -> None:
    """Hook into Locust's events (called once by locustfile.py)."""
    events.init_command_line_parser.add_listener(_add_parser_options)
    events.init.add_listener(_on_init)
    events.test_start.add_listener(_on_test_start)
    events.test_stop.add_listener(_on_test_stop)
    events.quitting.add_listener(_on_quitting)


def _add_parser_options(parser: Any) -> None:
    add_common_options(parser, web_ui=True)
    add_options(parser, web_ui=True)


def _fail_usage(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(EXIT_USAGE)


def _on_init(environment: Any, **_: Any) -> None:
    parsed = environment.parsed_options
    if parsed is None:
        return
    try:
        base = config_from_options(parsed)
        if base.pipeline not in LOAD_PIPELINES:
            raise UsageError(f"--pipeline {base.pipeline}: the load generator drives "
                             f"{', '.join(LOAD_PIPELINES)} only, not yet {base.pipeline}")  # fmt: skip
        options = load_options(parsed, base.pipeline)
    except UsageError as exc:
        _fail_usage(str(exc))
        return
    node = Node(environment, options)
    environment.xrh = node
    if not getattr(parsed, "stop_timeout", None):
        # Let a user finish the PutRecords in flight when the run stops, so its records end
        # "ok" or "fail" in the ledger rather than "unknown" (waiting users stop at once).
        # Honoured by the local runner and the master, which sends it to its workers with
        # every spawn message (a worker's own value is replaced by the master's).
        environment.stop_timeout = STOP_TIMEOUT_S
    ctrl_c_to_main_greenlet()
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        runner.register_message(SETUP, _on_setup)
        runner.register_message(STOP, _on_stop_request, concurrent=True)
        runner.register_message(REGION, _on_region)
        return
    node.orchestrator = Orchestrator(base, options, say=node.say)
    atexit.register(node.orchestrator.close)
    if isinstance(runner, MasterRunner):
        runner.register_message(MESSAGE_TYPE, _on_ledger_message)
        node.orchestrator.write_to = lambda side: runner.send_message(REGION, {"side": side})
    else:
        node.orchestrator.write_to = lambda side: _write_to(node, side)
    if environment.web_ui is not None:
        from loadgen.webui import install, run_status

        install(environment.web_ui.app, lambda: run_status(node.orchestrator, node.error),
                environment=environment, orchestrator=lambda: node.orchestrator,
                request_counts=lambda: node.request_records)  # fmt: skip


def ctrl_c_to_main_greenlet() -> None:
    """Ctrl-C reaches Locust's main greenlet, never a user in the middle of a request.

    Python raises SIGINT's ``KeyboardInterrupt`` in whatever frame runs when the signal comes,
    and under gevent that is often a user's greenlet busy in PutRecords: that greenlet dies
    there (its batch ``unknown``, the request a Locust failure) and only then does gevent pass
    the exception on to the main greenlet, where Locust handles Ctrl-C by stopping the users.
    gevent's signal handler runs in a greenlet of its own from the event loop; it hands the
    ``KeyboardInterrupt`` straight to the main greenlet (as gevent does for errors it cannot
    handle), so Ctrl-C stops the users as gracefully as ``--run-time`` does."""
    main = gevent.get_hub().parent

    def on_sigint() -> None:
        gevent.kill(main, KeyboardInterrupt)

    # Outside the main thread this fails and Python's own handling stays.
    with contextlib.suppress(ValueError, OSError):
        gevent.signal_handler(signal.SIGINT, on_sigint)


def _on_ledger_message(environment: Any, msg: Any, **_: Any) -> None:
    node = _node(environment)
    state = node.orchestrator.state if node and node.orchestrator else None
    if state is None:
        if node is not None:
            node.say(f"ledger rows from {msg.data.get('worker')} arrived with no run in progress")
        return
    state.collector.on_message(msg.data)


def _on_test_start(environment: Any, **_: Any) -> None:
    node = _node(environment)
    runner = environment.runner
    if node is None or isinstance(runner, WorkerRunner) or node.orchestrator is None:
        return
    try:
        # the web UI may change them
        node.options = load_options(environment.parsed_options, node.orchestrator.base.pipeline)
        node.orchestrator.options = node.options
        node.starting, node.stopped_while_starting = True, False
        try:
            state = node.orchestrator.begin()
        finally:
            node.starting = False
    except (HarnessError, OSError) as exc:
        _abort(
            node,
            f"could not start the run: {exc}",
            EXIT_USAGE if isinstance(exc, UsageError) else EXIT_UNKNOWN,
        )
        return
    except Exception as exc:
        _abort(node, f"could not start the run: {type(exc).__name__}: {exc}", EXIT_UNKNOWN)
        return
    node.exit_code = None
    if node.stopped_while_starting:
        # Locust's --run-time clock runs during set-up; a run that ended before it produced
        # anything proves nothing, so it is "unknown", never a silent success.
        _abort(
            node,
            "the run ended while it was still being set up (before any load): "
            "give a longer --run-time",
            EXIT_UNKNOWN,
        )
        return
    try:
        node.stats_csv = RunStatsCsv(environment, state.run.path)
    except OSError as exc:
        node.say(f"could not open Locust's CSV stats in {state.run.path}: {exc}")
    if isinstance(runner, MasterRunner):
        workers = [client.id for client in runner.clients.all]
        state.collector.expect(workers)
        runner.send_message(SETUP, {"config": config_to_wire(state.config), "run": state.run.run_id,
                                    "options": wire_options(environment.parsed_options,
                                                            node.options)})  # fmt: skip
        node.say(f"{len(workers)} worker(s) set up")
    else:
        node.context = LoadContext(state.config, node.options, state.ledger, "l", state.run.run_id,
                                   pool_size=node.pool_size(), report=node.report,
                                   item_report=node.report_item)  # fmt: skip
    node.say("producing...")


def _abort(node: Node, message: str, code: int) -> None:
    node.say(message)
    node.error = message
    node.exit_code = code
    node.close_stats_csv()
    if node.orchestrator is not None:
        node.orchestrator.abort(message)
    gevent.spawn(node.environment.runner.quit)


def _on_test_stop(environment: Any, **_: Any) -> None:
    node = _node(environment)
    if node is None:
        return
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        _worker_final(node)
        return
    orch = node.orchestrator
    if node.starting:
        node.stopped_while_starting = True  # test start aborts the run once set-up returns
        return
    if orch is None or orch.state is None:
        return
    try:
        workers_ok = True
        if isinstance(runner, MasterRunner):
            workers_ok = _collect_final_batches(node, runner)
        elif node.context is not None:
            node.context.close_all(lambda p, e: node.say(f"producer {p}: final batch failed: {e}"))
        node.exit_code = orch.finish(workers_ok=workers_ok, sleep=gevent.sleep)
    except Exception as exc:  # reported, and the run ends "unknown"
        node.say(f"the run could not finish: {type(exc).__name__}: {exc}")
        node.error = str(exc)
        node.exit_code = EXIT_UNKNOWN
        orch.abort(str(exc))
    finally:
        node.context = None
        node.close_stats_csv()


def _collect_final_batches(node: Node, runner: Any) -> bool:
    state = node.orchestrator.state  # type: ignore[union-attr]
    collector = state.collector
    runner.send_message(STOP, {"run": state.run.run_id})
    timeout = node.options.final_batch_timeout_s
    node.say(
        f"waiting for {len(collector.missing)} worker(s)' final ledger batches (max {timeout:.0f}s)..."
    )
    ok = collector.wait(timeout, sleep=gevent.sleep)
    if not ok:
        node.say(
            f"ledger incomplete: missing final batches from {sorted(collector.missing) or '-'}"
            f"{'; ' + '; '.join(collector.problems) if collector.problems else ''}"
        )
    return ok


# ------------------------------------------------------------------------ worker side


def _on_setup(environment: Any, msg: Any, **_: Any) -> None:
    node = _node(environment)
    if node is None:
        return
    runner = environment.runner
    config = config_from_wire(msg.data["config"])
    try:  # the master's options (older masters sent none: this worker's own)
        sent = msg.data.get("options")
        parsed = SimpleNamespace(**sent) if sent is not None else environment.parsed_options
        node.options = load_options(parsed, config.pipeline)
    except UsageError as exc:
        node.say(f"worker options: {exc}")
    worker = f"w{getattr(runner, 'worker_index', 0)}"
    node.forwarder = LedgerForwarder(
        runner.client_id, lambda d: runner.send_message(MESSAGE_TYPE, d)
    )
    node.context = LoadContext(config, node.options, node.forwarder, worker, msg.data["run"],
                               pool_size=node.pool_size(), report=node.report,
                               item_report=node.report_item)  # fmt: skip
    node.flusher = gevent.spawn(_flush_loop, node.forwarder)


def _write_to(node: Node, side: str) -> None:
    """This process's producers write to region ``side`` from their next request on."""
    if node.context is not None:
        node.context.write_to(Side(side))
        node.say(f"producers now write to region {side.upper()}")


def _on_region(environment: Any, msg: Any, **_: Any) -> None:
    node = _node(environment)
    if node is not None:
        _write_to(node, str(msg.data["side"]))


def _flush_loop(forwarder: LedgerForwarder) -> None:
    while True:
        gevent.sleep(0.5)
        forwarder.flush()


def _on_stop_request(environment: Any, msg: Any, **_: Any) -> None:
    """The master wants this worker's final batch: stop the users (which closes their
    producers and fires test_stop, which sends it), or send it now if already stopped."""
    node = _node(environment)
    if node is None:
        return
    if environment.runner.user_count:
        environment.runner.stop()
    _worker_final(node)


def _worker_final(node: Node) -> None:
    if node.forwarder is None:
        return
    if node.context is not None:
        node.context.close_all(lambda p, e: node.say(f"producer {p}: final batch failed: {e}"))
    if node.flusher is not None:
        node.flusher.kill(block=False)
        node.flusher = None
    forwarder, node.forwarder, node.context = node.forwarder, None, None
    forwarder.close()
    node.say(f"sent final ledger batch ({forwarder.sent_rows} rows)")


def _on_quitting(environment: Any, **_: Any) -> None:
    node = _node(environment)
    if node is None:
        return
    orch = node.orchestrator
    if orch is not None and orch.state is not None:
        # Ctrl-C or SIGTERM during the run: stop producing and still finish it.
        try:
            environment.runner.stop()
        except Exception as exc:  # noqa: BLE001 - whatever happens, clean up below
            node.say(f"stopping the runner failed: {exc}")
    node.close_stats_csv()
    if orch is not None:
        orch.close()
    if (
        node.exit_code is None
        and orch is not None
        and not isinstance(environment.runner, WorkerRunner)
    ):
        # No verdict was reached (the run never started or never finished): not a success.
        node.say("the run ended without a verdict: exit code 2 (unknown)")
        node.exit_code = EXIT_UNKNOWN
    if node.exit_code is not None:
        environment.process_exit_code = node.exit_code
    time.sleep(0)
