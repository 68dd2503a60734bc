"""Which region is active for a stream, and since when.

The seed's table holds ``{"streamName", "activeRegion"}``. A switch (failover) may add
``activeSinceMs`` (epoch ms) and ``previousRegion``; together they make the handover lossless:

- the previous region keeps copying the records that *arrived* in its stream before
  ``activeSinceMs`` (they were written while it was active) and stands down for later ones;
- the new region stands down for records that arrived in its stream before ``activeSinceMs``
  (copies from the previous region) and copies the ones after.

So nothing written before the switch is acknowledged uncopied. The previous region's late
copies land in the new region after the switch; by this rule alone the new region would send
them back once (a record twice in the region it was written to: verify's ``looped``). The
poller's :mod:`replicator.core.handover` prevents that: the previous region records its late
copies and the new region holds what arrived after the switch until it is done, then never
forwards a recorded copy (without it, as in the Lambda handler, they come back once each, and
the previous region stands down for them). Without the two attributes (the seed's item) the
switch takes effect at once.
Arrival times are the streams' ``ApproximateArrivalTimestamp``; ``activeSinceMs`` should come from
a clock in step with them (on AWS, any NTP-synchronised host).

A second switch soon after the first must not forget it: the new region may still be working
off records that arrived after the first switch, among them the first previous region's late
copies. So the item also keeps ``switchHistory``, the earlier switches (newest first, at most
:data:`MAX_EARLIER_SWITCHES`), and a record belongs to the region that was active when it
arrived, under whichever switch was then in force (:meth:`Assignment.switch_at`).

A cached answer may say "stand down" only for records that arrived before it was read: a record
that arrived later might belong to a switch the cache has not seen, so the batch asks again
(``not_before_ms``). Copying on a stale answer is safe (at worst a duplicate); standing down on
one would acknowledge a record uncopied. Steady copying therefore keeps its cache, and only a
standing-by replicator looks the table up once per batch, as the seed did.

A lookup failure raises ActiveRegionLookupError and the batch fails (it is retried, never
acknowledged uncopied). :class:`CachedActiveRegion` keeps an answer for at most ``ttl_s``
seconds, so switching the active region takes effect within ``ttl_s`` plus one batch.
Failures are never cached.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

#: earlier switches an active-region item remembers (a record that arrived before the oldest
#: is taken to belong to that switch's previous region)
MAX_EARLIER_SWITCHES = 8


@dataclass(frozen=True, slots=True)
class Switch:
    """One switch: ``previous_region`` handed the stream over to ``region`` at ``since_ms``."""

    since_ms: int
    previous_region: str | None
    region: str


@dataclass(frozen=True, slots=True)
class Assignment:
    """The active region of a stream and, after a switch, when it began and who was before;
    ``earlier``: the switches before that one, newest first."""

    region: str
    since_ms: int | None = None
    previous_region: str | None = None
    read_at_ms: int | None = None  # wall-clock time of the lookup (None: read just now)
    earlier: tuple[Switch, ...] = ()

    @property
    def switch(self) -> Switch | None:
        """The switch in force now (None: the seed's item, no handover time)."""
        if self.since_ms is None:
            return None
        return Switch(self.since_ms, self.previous_region, self.region)

    def switch_at(self, arrival_ms: int | None) -> Switch | None:
        """The switch in force when a record arrived (None: before every switch remembered,
        or no handover times at all)."""
        current = self.switch
        if current is None or arrival_ms is None:
            return None
        for switch in (current, *self.earlier):
            if arrival_ms >= switch.since_ms:
                return switch
        return None

    def active_at(self, arrival_ms: int | None) -> str | None:
        """The region that was active when a record arrived: the one that copies it."""
        if self.since_ms is None or arrival_ms is None:
            return self.region
        switch = self.switch_at(arrival_ms)
        if switch is not None:
            return switch.region
        oldest = self.earlier[-1] if self.earlier else self.switch
        return oldest.previous_region if oldest is not None else None

    def copies(self, this_region: str, arrival_ms: int | None) -> bool:
        """Whether the replicator in ``this_region`` copies a record that arrived at ``arrival_ms``."""
        return self.active_at(arrival_ms) == this_region

    def with_read_at(self, read_at_ms: int | None) -> Assignment:
        return Assignment(self.region, self.since_ms, self.previous_region, read_at_ms,
                          self.earlier)  # fmt: skip


class ActiveRegionLookup(Protocol):
    def assignment(self, stream: str, *, not_before_ms: int | None = None) -> Assignment:
        """The stream's assignment, read no earlier than ``not_before_ms`` (wall clock)."""
        ...


class CachedActiveRegion:
    def __init__(
        self,
        lookup: ActiveRegionLookup,
        ttl_s: float,
        clock: Callable[[], float],
        wall_clock_ms: Callable[[], int] | None = None,
    ) -> None:
        if ttl_s < 0:
            raise ValueError("ttl_s must be >= 0")
        self.lookup = lookup
        self.ttl_s = ttl_s
        self.clock = clock
        self.wall_clock_ms = wall_clock_ms
        self._cache: dict[str, tuple[Assignment, float]] = {}

    def assignment(self, stream: str, *, not_before_ms: int | None = None) -> Assignment:
        now = self.clock()
        hit = self._cache.get(stream)
        if hit is not None and now - hit[1] < self.ttl_s:
            read_at = hit[0].read_at_ms
            if not_before_ms is None or read_at is None or read_at >= not_before_ms:
                return hit[0]
        read_at_ms = self.wall_clock_ms() if self.wall_clock_ms else None
        found = self.lookup.assignment(stream)  # raises ActiveRegionLookupError
        found = found.with_read_at(read_at_ms)
        self._cache[stream] = (found, now)
        return found

    def active_region(self, stream: str) -> str:
        return self.assignment(stream).region


class StaticActiveRegion:
    """A fixed answer, or an exception to raise (tests)."""

    def __init__(
        self,
        region: str | None = None,
        error: Exception | None = None,
        *,
        since_ms: int | None = None,
        previous_region: str | None = None,
        earlier: tuple[Switch, ...] = (),
    ) -> None:
        self.region = region
        self.error = error
        self.since_ms = since_ms
        self.previous_region = previous_region
        self.earlier = earlier
        self.calls = 0

    def assignment(self, stream: str, *, not_before_ms: int | None = None) -> Assignment:
        self.calls += 1
        if self.error is not None:
            raise self.error
        assert self.region is not None
        return Assignment(self.region, self.since_ms, self.previous_region, None, self.earlier)

    def active_region(self, stream: str) -> str:
        return self.assignment(stream).region
