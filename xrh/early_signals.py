"""Drain and stop requests that arrive before a process is ready to act on them.

A replicator process takes a second or more to import boto3 and build its clients (several
on a loaded machine). SIGUSR1's default action ends a process, so a drain requested in that
window (a drill's restarted replicator, the end of a short run) would kill it with -10
instead of draining it. ``python -m xrh`` installs :func:`install` before importing anything
heavy; the command's own handlers, once installed, ask :func:`take` whether a signal came early.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable

_EARLY = (signal.SIGUSR1, signal.SIGTERM)
_pending: set[int] = set()


def install() -> None:
    """Remember SIGUSR1 and SIGTERM until the command installs its own handlers."""
    for signum in _EARLY:
        signal.signal(signum, lambda received, _frame: _pending.add(received))


def take(signum: int) -> bool:
    """Whether ``signum`` arrived before the command's handler was installed (asked once)."""
    if signum in _pending:
        _pending.discard(signum)
        return True
    return False


def restore_defaults() -> None:
    """Commands that install no handler of their own get the default actions back; a signal
    that came early is then acted on as it would have been."""
    early = [s for s in _EARLY if take(s)]
    for signum in _EARLY:
        signal.signal(signum, signal.SIG_DFL)
    for signum in early:
        signal.raise_signal(signum)


def handle(*, stop: Callable[[], None], drain: Callable[[], None]) -> None:
    """A long-running command's handlers: SIGTERM stops, SIGUSR1 drains; a request that came
    while the process was starting is carried out now."""
    signal.signal(signal.SIGTERM, lambda *_: stop())
    signal.signal(signal.SIGUSR1, lambda *_: drain())
    for signum, act in ((signal.SIGTERM, stop), (signal.SIGUSR1, drain)):
        if take(signum):
            print(f"{signal.Signals(signum).name} arrived while starting: carried out now",
                  file=sys.stderr, flush=True)  # fmt: skip
            act()
