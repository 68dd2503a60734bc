"""``xrh replicate --pipeline dynamodb`` without an endpoint: the refusals (exit 3), the progress
lines, and the runner's order of things with fakes: a drain asked during the copy waits for
it and keeps the signal's time; a drain timeout during the copy stops it (exit 2)."""

from __future__ import annotations

import io
import threading
import time
from types import SimpleNamespace

import pytest

from replicator.core.bootstrap import BootstrapProgress, BootstrapResult, Outcome
from replicator.runners import cli, options
from replicator.runners.table_cli import TableReplicator
from replicator.runners.table_progress import ProgressView, describe


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--behaviour", "sample"], "no sample behaviour yet"),
        (["--start-at-latest"], "would skip the changes made during the copy"),
        (["--scan-segments", "0"], "--scan-segments 0 is outside 1..1000"),
        (["--scan-page-size", "0"], "--scan-page-size 0 is outside 1..10000"),
    ],
)
def test_refusals_exit_3_with_a_message(extra, message, capsys) -> None:
    assert cli.main(["--pipeline", "dynamodb", *extra]) == 3
    assert message in capsys.readouterr().err


def test_the_stream_read_limit_is_capped_at_what_one_getrecords_returns() -> None:
    assert options.dynamodb_batch_limit(5000) == 1000
    assert options.dynamodb_batch_limit(1000) == 1000
    assert options.dynamodb_batch_limit(200) == 200


class Files:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []

    def log(self, event: str, **fields) -> None:
        self.events.append((event, fields))


def progress(items: int, **kw) -> BootstrapProgress:
    return BootstrapProgress(items, kw.pop("total", 1000), 250.0, 1, 4, 2.0, owner="w1", **kw)


def test_progress_lines_off_a_terminal_and_a_bar_on_one() -> None:
    out, files = io.StringIO(), Files()
    view = ProgressView(files, out, tty=False)
    view(progress(400))
    view(progress(500))  # within 5 s of the last line: no new line
    assert out.getvalue().splitlines() == [
        "bootstrap: 400 / ~1,000 items (40%), 250 items/s, 1/4 segments done"
    ]
    assert files.events[0][0] == "bootstrap_progress" and files.events[0][1]["items_copied"] == 400
    waiting = BootstrapProgress(7, None, 0.0, 0, 4, 1.0, owner="w2", waiting=True)
    assert describe(waiting) == "bootstrap: waiting while w2 copies (7 items copied so far)"
    bar_out = io.StringIO()
    bar = ProgressView(Files(), bar_out, tty=True)
    bar(progress(400))
    bar(progress(1200))  # more than the estimate: the bar grows
    bar.close()
    assert "bootstrap copy" in bar_out.getvalue()


class FakeBootstrap:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.stopped = threading.Event()
        self.result = None

    def run(self) -> BootstrapResult:
        if self.stopped.wait(self.seconds):
            return BootstrapResult(Outcome.STOPPED)
        return BootstrapResult(Outcome.COPIED, items_copied=10, copy_seconds=1.0)

    def request_stop(self) -> None:
        self.stopped.set()


class FakePoller:
    def __init__(self) -> None:
        self.drain_since = None
        self.stop = False
        self.ran = False
        self.exit_reason = ""
        self.settings = SimpleNamespace(max_seconds=None)
        self.ticks = 0

    def request_drain(self, since=None) -> None:
        self.drain_since = since

    def request_stop(self) -> None:
        self.stop = True

    def on_tick(self) -> None:
        self.ticks += 1

    def run(self) -> int:
        self.ran = True
        self.exit_reason = "drained"
        return 0


def replicator(bootstrap, poller, drain_timeout_s: float = 30.0) -> TableReplicator:
    return TableReplicator(
        poller=poller, applier=None, bootstrap=bootstrap, files=Files(), view=None,
        drain_timeout_s=drain_timeout_s,
    )  # fmt: skip


def test_a_drain_during_the_copy_waits_for_it_then_drains_the_stream() -> None:
    poller = FakePoller()
    run = replicator(FakeBootstrap(0.6), poller)
    assert run.gate() is not None
    threading.Timer(0.1, run.request_drain).start()
    assert run.run() == 0
    assert run.gate() is None and poller.ran
    assert poller.drain_since is not None and poller.drain_since == run.drain_at
    assert time.time() - run.drain_at >= 0.4  # the signal's time, not the poller's start


def test_a_drain_timeout_during_the_copy_stops_it_with_exit_2() -> None:
    poller, bootstrap = FakePoller(), FakeBootstrap(30.0)
    run = replicator(bootstrap, poller, drain_timeout_s=0.3)
    run.request_drain()
    t0 = time.monotonic()
    assert run.run() == 2
    assert time.monotonic() - t0 < 5 and bootstrap.stopped.is_set()
    assert not poller.ran and run.gate() is not None and "drain timeout" in run.exit_reason
    assert poller.ticks == 1  # the metrics file written on the way out


def test_sigterm_during_the_copy_exits_0_without_live_apply() -> None:
    poller, bootstrap = FakePoller(), FakeBootstrap(30.0)
    run = replicator(bootstrap, poller)
    threading.Timer(0.1, run.request_stop).start()
    assert run.run() == 0
    assert not poller.ran and bootstrap.stopped.is_set() and poller.stop


def test_the_replay_skips_only_what_a_completed_copy_holds() -> None:
    from replicator.core.bootstrap_ownership import BootstrapRow, BootstrapState
    from replicator.core.bootstrap_report import BootstrapResult, Outcome
    from replicator.runners.table_cli import TableReplicator

    run = TableReplicator(poller=None, applier=None, bootstrap=None, files=None, view=None,
                          drain_timeout_s=1, max_clock_skew_ms=250)  # fmt: skip
    assert run.covered_before() is None  # no copy (yet): apply everything
    row = BootstrapRow(BootstrapState.COMPLETE, "w", 0, started_at_ms=10_000, segments=4)
    for outcome in (Outcome.COPIED, Outcome.ALREADY_COMPLETE):
        run.result = BootstrapResult(outcome, row)
        assert run.covered_before() == 10_000 - 1000 - 250
    for outcome in (Outcome.SKIPPED_LIVE, Outcome.STOPPED):
        run.result = BootstrapResult(outcome, row)
        assert run.covered_before() is None
