"""Producers write where the application would: to the active region.

Applications switch to the new active region after a failover (`xrh failover --to b`), so
the load generator does too, through one :class:`WriteTarget` per process that a drill's
failover step (or a worker told by its master) switches. Each producer request is pinned to
the region that was active when it began: its retries go there too, and its ledger rows name
that region (DESIGN.md, "Ledger": verify judges each record in the direction its region
gives).
"""

from __future__ import annotations

from collections.abc import Sequence

from replicator.core.putrecords import EntryResult, PutEntry, PutRecordsSink
from xrh.config import HarnessConfig, Side


class WriteTarget:
    """The region producers of this process write to (A until a failover says otherwise)."""

    def __init__(self, config: HarnessConfig, side: Side = Side.A) -> None:
        self.config = config
        self.side = side

    def switch(self, side: Side) -> None:
        self.side = side


class RoutedSink:
    """A producer's sink for both regions; :meth:`pin` chooses one for the next request."""

    def __init__(self, sinks: dict[Side, PutRecordsSink], target: WriteTarget) -> None:
        self._sinks = sinks
        self._target = target
        self._pinned = target.side

    def pin(self) -> str:
        """Pin the next request (and its retries) to the active region; returns its name."""
        return self.pin_to(self._target.side)

    def pin_to(self, side: Side) -> str:
        """Pin the next request (and its retries) to ``side``, whatever region is active (the
        active-active pipeline writes both regions); returns its name."""
        self._pinned = side
        return self._target.config.region(side)

    def put_records(self, stream: str, entries: Sequence[PutEntry]) -> Sequence[EntryResult]:
        return self._sinks[self._pinned].put_records(stream, entries)
