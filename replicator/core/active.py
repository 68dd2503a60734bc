"""Which region is active for a stream: the seed's table ``{"streamName", "activeRegion"}``.

A lookup failure raises ActiveRegionLookupError and the batch fails (it is retried, never
acknowledged uncopied). :class:`CachedActiveRegion` keeps an answer for at most ``ttl_s``
seconds, so switching the active region takes effect within ``ttl_s`` plus one batch.
Failures are never cached.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class ActiveRegionLookup(Protocol):
    def active_region(self, stream: str) -> str: ...


class CachedActiveRegion:
    def __init__(
        self, lookup: ActiveRegionLookup, ttl_s: float, clock: Callable[[], float]
    ) -> None:
        if ttl_s < 0:
            raise ValueError("ttl_s must be >= 0")
        self.lookup = lookup
        self.ttl_s = ttl_s
        self.clock = clock
        self._cache: dict[str, tuple[str, float]] = {}

    def active_region(self, stream: str) -> str:
        now = self.clock()
        hit = self._cache.get(stream)
        if hit is not None and now - hit[1] < self.ttl_s:
            return hit[0]
        region = self.lookup.active_region(stream)  # raises ActiveRegionLookupError
        self._cache[stream] = (region, now)
        return region


class StaticActiveRegion:
    """A fixed answer, or an exception to raise (tests)."""

    def __init__(self, region: str | None = None, error: Exception | None = None) -> None:
        self.region = region
        self.error = error
        self.calls = 0

    def active_region(self, stream: str) -> str:
        self.calls += 1
        if self.error is not None:
            raise self.error
        assert self.region is not None
        return self.region
