"""Last-writer-wins conditional writes to one table, concurrent across keys (pure).

Both halves of the active-active replicator write the items table with a condition: the
applier (versions from the other region) and the forwarder (repairs and tombstones in its own
region). The condition is the contract's order, (timestamp, region), never the bare
timestamp::

    attribute_not_exists(pk) OR last_update_timestamp < :ts
        OR (last_update_timestamp = :ts AND last_updater_region <= :r)

so a write lands only over an older version (or the same stamp: a later record of one origin's
stamp wins, as it did in the origin table, and a replay writes the same item again). A failed
condition is an answer, not an error: the table holds a newer version (``superseded``).
Because every write is conditional on the order, applying a set of versions in any order and
any number of times leaves the largest: writes of different keys can run concurrently, and a
batch can be replayed whole.

:class:`ConditionalWriter` writes one version per key (squash first: :func:`squash`), up to
``max_in_flight`` keys at a time (threads, like :class:`~replicator.core.table_writes.
BatchWriter`), retrying throttles, 5xx and unknown outcomes with exponential backoff and full
jitter (a conditional full-item write is idempotent, so a write that may have landed is simply
sent again). Invalid items come back in ``dead``; a terminal error or a refused lease fence
stops the writes that have not started. The sink (:class:`LwwTableSink`) is the seam to
DynamoDB: ``replicator.adapters.lww_table.DynamoLwwTable``, or the fake in
:mod:`replicator.core.lww_fakes`.
"""

from __future__ import annotations

import random as _random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from replicator.core.putrecords import Backoff
from replicator.errors import (
    InvalidRequestError,
    ReplicatorError,
    RetryableRequestError,
    SinkError,
    TerminalRequestError,
    UnknownOutcomeError,
)
from xrh.active_active import Stamp


class LwwTableSink(Protocol):
    """Conditional single-item writes (the adapter raises the replicator's SinkErrors)."""

    calls: int

    def put_if_newer(
        self,
        table: str,
        item: dict[str, Any],
        stamp: Stamp,
        guard: Callable[[], object] | None,
        strict: bool = False,
        order: int | None = None,
    ) -> bool:
        """PutItem under the (timestamp, region) condition: False if the condition failed;
        ``strict``: not over an equal stamp either, unless ``order`` is given and the held
        version's :data:`~xrh.active_active.SOURCE_SEQ` is smaller."""
        ...


@dataclass(frozen=True, slots=True)
class StampedWrite:
    """One version of one key: ``item`` in wire form, stamped ``stamp``; ``ref`` the caller's."""

    pk: str
    item: dict[str, Any]
    stamp: Stamp
    ref: Any = None
    #: not over a version with the same stamp: a repair or a local tombstone puts back or
    #: derives a version that a later same-stamp write of its region has already replaced
    strict: bool = False
    #: with ``strict``: over a version of the same stamp after all when that version's origin
    #: stream position (:data:`xrh.active_active.SOURCE_SEQ`) is smaller than this one's
    order: int | None = None


def squash(writes: Sequence[StampedWrite]) -> list[StampedWrite]:
    """Per key, the version with the largest stamp, equal stamps resolved by position (the later
    one): what applying all of them in order under the condition would leave."""
    best: dict[str, StampedWrite] = {}
    for w in writes:
        held = best.get(w.pk)
        if held is None or w.stamp >= held.stamp:
            best[w.pk] = w
    return list(best.values())


@dataclass(slots=True)
class WriteReport:
    written: list[StampedWrite] = field(default_factory=list)
    superseded: list[StampedWrite] = field(default_factory=list)
    dead: list[tuple[StampedWrite, str]] = field(default_factory=list)
    unwritten: list[StampedWrite] = field(default_factory=list)
    calls: int = 0
    retries: int = 0
    error: SinkError | None = None
    fenced: ReplicatorError | None = None

    @property
    def complete(self) -> bool:
        """Every write landed, lost to a newer version, or is dead."""
        return not self.unwritten and self.fenced is None and self.error is None


class ConditionalWriter:
    """Writes one version per key under the last-writer-wins condition (see the module doc)."""

    def __init__(
        self,
        sink: LwwTableSink,
        table: str,
        *,
        backoff: Backoff | None = None,
        max_in_flight: int = 4,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] = _random.random,
    ) -> None:
        self.sink = sink
        self.table = table
        self.backoff = backoff or Backoff()
        self.max_in_flight = max(1, max_in_flight)
        self.sleep = sleep
        self.random = random
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def write(
        self, writes: Sequence[StampedWrite], guard: Callable[[], object] | None = None
    ) -> WriteReport:
        """Write each version (distinct keys: ValueError otherwise); ``guard`` (a lease fence's
        check) runs before every call, serialised, and is handed to the sink for its last word."""
        if len({w.pk for w in writes}) != len(writes):
            raise ValueError("ConditionalWriter.write: keys must be distinct (squash first)")
        report = WriteReport()
        if not writes:
            return report
        stop = threading.Event()
        guard_lock = threading.Lock()

        def locked_guard() -> object:
            with guard_lock:
                return guard() if guard is not None else None

        def one(w: StampedWrite) -> None:
            self._one(w, report, stop, locked_guard if guard is not None else None)

        if self.max_in_flight == 1 or len(writes) == 1:
            for w in writes:
                one(w)
        else:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self.max_in_flight, "lww-write")
                pool = self._pool
            for future in [pool.submit(one, w) for w in writes]:
                future.result()
        return report

    def _one(
        self,
        w: StampedWrite,
        report: WriteReport,
        stop: threading.Event,
        guard: Callable[[], object] | None,
    ) -> None:
        failures = 0
        while True:
            if stop.is_set():
                self._add(report.unwritten, w)
                return
            if failures:
                self.sleep(self.backoff.delay(failures, self.random()))
            try:
                if guard is not None:
                    guard()
                with self._lock:
                    report.calls += 1
                    report.retries += int(failures > 0)
                landed = self.sink.put_if_newer(self.table, w.item, w.stamp, guard, w.strict,
                                                w.order)  # fmt: skip
            except InvalidRequestError as exc:
                self._add(report.dead, (w, f"invalid: {exc.code or ''} {exc}".strip()))
                return
            except (RetryableRequestError, UnknownOutcomeError):
                failures += 1
                if failures >= self.backoff.max_attempts:
                    self._add(report.unwritten, w)
                    return
                continue
            except TerminalRequestError as exc:
                report.error = exc
                stop.set()
                self._add(report.unwritten, w)
                return
            except ReplicatorError as exc:  # the fence refused: write nothing more
                report.fenced = exc
                stop.set()
                self._add(report.unwritten, w)
                return
            self._add(report.written if landed else report.superseded, w)
            return

    def _add(self, bucket: list, value: Any) -> None:
        with self._lock:
            bucket.append(value)
