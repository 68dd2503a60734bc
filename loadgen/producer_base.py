"""What both pipelines' producers share: the lingering buffer, the commit-timestamp cache, the
ledger rows of a request and the close that ledgers what was never sent.

:class:`loadgen.producers.Producer` (stream records) and :class:`loadgen.items.ItemProducer`
(table writes) differ in what they buffer and how they send it; the driving loop
(:func:`loadgen.producers.step`) sees them through this one interface.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from loadgen.ledger import LedgerSink
from xrh.contracts import parse_iso_ms

#: the rendered payload's commitTimestamp (a regex: cheaper than parsing the JSON per record)
COMMIT_TS_FIELD = re.compile(r'"commitTimestamp"\s*:\s*"([^"]*)"')

Buffered = TypeVar("Buffered")


def parse_commit_ts(text: str) -> int | None:
    """Epoch ms of an ISO-8601 commitTimestamp; None if it is not one (ledgered as NULL)."""
    try:
        return parse_iso_ms(text)
    except ValueError:
        return None


@dataclass(slots=True)
class ProducerStats:
    records: int = 0  # rendered and buffered
    acknowledged: int = 0  # writes whose final state is written
    failed: int = 0
    unknown: int = 0
    requests: int = 0


class LedgerRows:
    """A request's ledger rows (plain tuples in :data:`loadgen.ledger.COLUMNS` order), handed
    to the ledger in one write once the request is done or before a backoff."""

    __slots__ = ("_ledger", "pending")

    def __init__(self, ledger: LedgerSink) -> None:
        self._ledger = ledger
        self.pending: list[tuple] = []

    def emit(self) -> None:
        if self.pending:
            rows, self.pending = self.pending, []
            self._ledger.write(rows)


class BufferedProducer(Generic[Buffered]):
    """A producer's buffer, sent when it holds ``settings.batch_size`` writes or its oldest has
    waited ``settings.linger_s``; subclasses render into it (``add``) and send it (``flush``).

    :meth:`close` sends what is left and tells the ledger the producer's final batch is in;
    after an interrupted request nothing more is sent (the stop must stay bounded): what is
    still buffered goes to :meth:`_not_sent`, one ``fail`` row each."""

    def __init__(self, producer_id: str, settings: Any, ledger: LedgerSink,
                 clock: Callable[[], float]) -> None:  # fmt: skip
        self.id = producer_id
        self.settings = settings
        self._ledger = ledger
        self._clock = clock
        self._buffer: list[Buffered] = []
        self._oldest: float | None = None
        self._seq = 0
        self._ts_cache: tuple[str, int | None] = ("", None)
        self.stats = ProducerStats()
        self.closed = False
        self.interrupted = False  # a request was cut off: send nothing more
        ledger.register(producer_id)

    def _parsed_commit_ts(self, text: str) -> int | None:
        """:func:`parse_commit_ts`, cached: consecutive writes mostly share one timestamp."""
        if text == self._ts_cache[0]:
            return self._ts_cache[1]
        value = parse_commit_ts(text)
        self._ts_cache = (text, value)
        return value

    def _buffered_now(self, now: float, count: int) -> None:
        """``count`` writes rendered at ``now`` went into the buffer."""
        if self._oldest is None:
            self._oldest = now
        self.stats.records += count

    def _take_buffer(self) -> list[Buffered]:
        buffered, self._buffer, self._oldest = self._buffer, [], None
        return buffered

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def due(self) -> bool:
        """The buffer is full, or its oldest write waited ``linger_s``."""
        if len(self._buffer) >= self.settings.batch_size:
            return True
        return self._oldest is not None and self._clock() - self._oldest >= self.settings.linger_s

    def linger_left(self) -> float:
        if self._oldest is None:
            return self.settings.linger_s
        return max(0.0, self.settings.linger_s - (self._clock() - self._oldest))

    def flush(self) -> None:
        raise NotImplementedError

    def _not_sent(self, buffered: list[Buffered], reason: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Send what is buffered and tell the ledger this producer's final batch is in."""
        if self.closed:
            return
        try:
            if not self.interrupted:
                self.flush()
        finally:
            try:
                buffered = self._take_buffer()
                if buffered:
                    self._not_sent(buffered, "not sent: the run stopped before it was sent")
            finally:
                self.closed = True
                self._ledger.final(self.id)
