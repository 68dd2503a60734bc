"""The bootstrap copy's ownership: its state row, segment rows, heartbeat, take-over and fence.

One process at a time owns the copy. The state row (:class:`BootstrapRow`, in B's checkpoint
table) is taken with a conditional write: created if absent, or taken over only while
``copying`` and its heartbeat is older than the lease duration (its owner is dead or cut off).
The owner renews the heartbeat (conditional on owner and the counter it last saw, like a shard
lease) through :class:`CopyLease`, whose fence (:class:`~replicator.core.fence.LeaseFence`)
every write of the copy checks, so a paused owner cannot write after a successor took over.
Segment rows (:class:`SegmentProgress`) record each segment's progress and never move back.

:class:`BootstrapStore` is the seam (boto3: :class:`replicator.adapters.dynamodb_bootstrap.
DynamoBootstrapStore`; in memory, with the same conditions: :class:`MemoryBootstrapStore`).
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from replicator.core.fence import LeaseFence
from replicator.errors import LeaseLost, ReplicatorError

#: Row ids in the checkpoint table, equal to ``xrh.contracts.BOOTSTRAP_SHARD_ID`` and
#: ``BOOTSTRAP_SEGMENT_PREFIX`` (the replicator package does not import ``xrh``; a test holds
#: them equal, and this module's rows to :class:`xrh.contracts.BootstrapRow`).
BOOTSTRAP_SHARD_ID = "#bootstrap"
BOOTSTRAP_SEGMENT_PREFIX = "#bootstrap/segment-"


def segment_row_id(segment: int) -> str:
    return f"{BOOTSTRAP_SEGMENT_PREFIX}{segment:04d}"


class BootstrapState(enum.Enum):
    COPYING = "copying"  # a parallel scan copy is under way: live apply waits
    COMPLETE = "complete"  # every segment copied: live apply replays the stream from its start


@dataclass(frozen=True, slots=True)
class BootstrapRow:
    """The state row as :class:`xrh.contracts.BootstrapRow` reads it (same attributes:
    ``state`` S, ``owner`` S, ``heartbeatMs`` N, ``startedAtMs`` N, ``completedAtMs`` N,
    ``segments`` N, ``itemsCopied`` N, ``copySeconds`` N; and ``leaseCounter`` N, the fencing
    token, which verify does not read)."""

    state: BootstrapState
    owner: str
    heartbeat_ms: int
    started_at_ms: int
    segments: int
    items_copied: int = 0
    completed_at_ms: int | None = None
    copy_seconds: float | None = None

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> BootstrapRow:
        """From a plain (deserialised) item."""

        def num(name: str) -> float | None:
            value = item.get(name)
            return None if value is None else float(value)

        completed = num("completedAtMs")
        return cls(
            state=BootstrapState(str(item["state"])),
            owner=str(item.get("owner", "")),
            heartbeat_ms=int(num("heartbeatMs") or 0),
            started_at_ms=int(num("startedAtMs") or 0),
            segments=int(num("segments") or 0),
            items_copied=int(num("itemsCopied") or 0),
            completed_at_ms=None if completed is None else int(completed),
            copy_seconds=num("copySeconds"),
        )


@dataclass(frozen=True, slots=True)
class SegmentProgress:
    """A segment row: ``lastKey`` (after the last acknowledged page), ``done``, ``items``."""

    segment: int
    last_key: dict[str, Any] | None = None
    done: bool = False
    items: int = 0  # items written to B from this segment (acknowledged pages only)
    dead: int = 0  # items of this segment dead-lettered


@dataclass(frozen=True, slots=True)
class Taken:
    """The state row as this owner took it, with the lease counter (fencing token)."""

    row: BootstrapRow
    counter: int


class BootstrapStore(Protocol):
    """The state row and segment rows in the target's checkpoint table (conditional writes).

    - ``take``: create the row (``copying``, this owner, ``segments``) if absent, or take it
      over while ``copying`` if its owner is this one or its heartbeat is older than
      ``now_ms - lease_ms``; keeps ``startedAtMs`` and ``segments``; bumps the counter. None
      when the condition failed (complete, or another live owner).
    - ``renew``: heartbeat and ``itemsCopied``, conditional on owner, counter and ``copying``;
      the new counter, or None if the row is not ours any more.
    - ``save_segment``: a segment row; never moves backwards (``items`` grows, ``done`` stays).
      False when the condition failed.
    - ``complete``: ``copying`` -> ``complete`` conditional on owner and counter.
    - ``release``: heartbeat 0 (a successor need not wait for the lease), conditional on owner.

    Read or write failures raise ReplicatorError."""

    calls: int

    def read(self) -> BootstrapRow | None: ...

    def segments(self) -> dict[int, SegmentProgress]: ...

    def take(self, owner: str, now_ms: int, lease_ms: int, segments: int) -> Taken | None: ...

    def renew(self, owner: str, now_ms: int, counter: int, items_copied: int) -> int | None: ...

    def save_segment(self, progress: SegmentProgress) -> bool: ...

    def complete(
        self, owner: str, counter: int, now_ms: int, items_copied: int, copy_seconds: float
    ) -> bool: ...

    def release(self, owner: str, counter: int) -> bool: ...


class CopyLease:
    """The state row as a lease: renewed by the copy's main thread, checked before every write
    by the segment threads (one lock: two renewals with the same counter would fence us out).
    Losing it sets ``halt`` (the segment threads stop)."""

    def __init__(
        self,
        store: BootstrapStore,
        owner: str,
        counter: int,
        *,
        lease_ms: int,
        guard_ms: int,
        renew_interval_s: float,
        clock_ms: Callable[[], int],
        halt: threading.Event,
        log: Callable[..., None],
    ) -> None:
        self.store = store
        self.owner = owner
        self.lease_ms = lease_ms
        self.renew_interval_s = renew_interval_s
        self.clock_ms = clock_ms
        self.halt = halt
        self.log = log
        self.lock = threading.Lock()
        self.items = 0
        self.fence = LeaseFence(
            BOOTSTRAP_SHARD_ID,
            counter=counter,
            expires_at_ms=clock_ms() + lease_ms,
            duration_ms=lease_ms,
            guard_ms=guard_ms,
            renew=self._renew,
            clock_ms=clock_ms,
        )
        self.last_renew_ms = clock_ms()

    @property
    def counter(self) -> int:
        return self.fence.counter

    @property
    def lost(self) -> bool:
        return self.fence.lost

    def lose(self) -> None:
        self.fence.mark_lost()
        self.halt.set()

    def _renew(self, now_ms: int, seen: int) -> int | None:
        return self.store.renew(self.owner, now_ms, seen, self.items)

    def check(self) -> int:
        """The guard of every write: raises LeaseLost / LeaseUnconfirmed (retry later)."""
        with self.lock:
            try:
                return self.fence.check()
            except LeaseLost:
                self.halt.set()
                raise

    def heartbeat(self, items: int) -> None:
        """The regular renewal (every ``renew_interval_s``), carrying the items copied."""
        if self.fence.lost or self.clock_ms() - self.last_renew_ms < self.renew_interval_s * 1000:
            return
        with self.lock:
            self.items = items
            now = self.clock_ms()
            try:
                counter = self._renew(now, self.fence.counter)
            except ReplicatorError as exc:
                self.log("bootstrap_heartbeat_failed", error=str(exc))
                return
            self.last_renew_ms = now
            if counter is None:
                self.lose()
            else:
                self.fence.renewed(counter, now + self.lease_ms)


# --------------------------------------------------------------------------- in-memory store


class MemoryBootstrapStore:
    """BootstrapStore in memory, with the conditions of the DynamoDB adapter (for tests)."""

    def __init__(self) -> None:
        self.row: dict[str, Any] | None = None
        self.rows: dict[int, SegmentProgress] = {}
        self.calls = 0
        self.saves: list[SegmentProgress] = []
        self._lock = threading.Lock()

    def read(self) -> BootstrapRow | None:
        with self._lock:
            self.calls += 1
            return None if self.row is None else BootstrapRow.from_item(self.row)

    def segments(self) -> dict[int, SegmentProgress]:
        with self._lock:
            self.calls += 1
            return dict(self.rows)

    def take(self, owner: str, now_ms: int, lease_ms: int, segments: int) -> Taken | None:
        with self._lock:
            self.calls += 1
            row = self.row
            if row is not None and not (
                row["state"] == BootstrapState.COPYING.value
                and (row["owner"] == owner or row["heartbeatMs"] < now_ms - lease_ms)
            ):
                return None
            if row is None:
                row = self.row = {"startedAtMs": now_ms, "segments": segments, "leaseCounter": 0,
                                  "itemsCopied": 0}  # fmt: skip
            row.update(state=BootstrapState.COPYING.value, owner=owner, heartbeatMs=now_ms)
            row["leaseCounter"] += 1
            return Taken(BootstrapRow.from_item(row), row["leaseCounter"])

    def _mine(self, owner: str, counter: int) -> bool:
        row = self.row
        return (
            row is not None
            and row["state"] == BootstrapState.COPYING.value
            and row["owner"] == owner
            and row["leaseCounter"] == counter
        )

    def renew(self, owner: str, now_ms: int, counter: int, items_copied: int) -> int | None:
        with self._lock:
            self.calls += 1
            if not self._mine(owner, counter):
                return None
            assert self.row is not None
            self.row.update(heartbeatMs=now_ms, itemsCopied=items_copied)
            self.row["leaseCounter"] += 1
            return self.row["leaseCounter"]

    def save_segment(self, progress: SegmentProgress) -> bool:
        with self._lock:
            self.calls += 1
            old = self.rows.get(progress.segment)
            if old is not None and (old.done or old.items > progress.items):
                return False
            self.rows[progress.segment] = progress
            self.saves.append(progress)
            return True

    def complete(
        self, owner: str, counter: int, now_ms: int, items_copied: int, copy_seconds: float
    ) -> bool:
        with self._lock:
            self.calls += 1
            if not self._mine(owner, counter):
                return False
            assert self.row is not None
            self.row.update(state=BootstrapState.COMPLETE.value, heartbeatMs=now_ms,
                            completedAtMs=now_ms, itemsCopied=items_copied,
                            copySeconds=copy_seconds)  # fmt: skip
            return True

    def release(self, owner: str, counter: int) -> bool:
        with self._lock:
            self.calls += 1
            if not self._mine(owner, counter):
                return False
            assert self.row is not None
            self.row["heartbeatMs"] = 0
            return True
