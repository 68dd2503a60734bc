"""Keyspaces: which key each record gets, so that keys repeat and per-key order is tested.

Keys are integers ``0 .. size-1``; the partition key is ``str(key)`` (DESIGN.md, "Records and
identity"). The random source is passed in, so a seeded run draws the same keys.

- ``uniform``: every key equally likely;
- ``zipf``: key of rank r (0-based) has weight ``1 / (r+1)**skew`` (skew > 0): a few keys get
  most records, the long tail still appears;
- ``hot``: one key (0) gets ``share`` of the records, the rest are uniform over the others.
"""

from __future__ import annotations

import random as _random
from bisect import bisect_left
from dataclasses import dataclass
from itertools import accumulate
from typing import Protocol

from loadgen.errors import LoadgenUsageError

DISTRIBUTIONS = ("uniform", "zipf", "hot")
#: zipf keeps a cumulative table of this many keys at most (memory stays under ~10 MB).
MAX_ZIPF_KEYS = 1_000_000


class Keyspace(Protocol):
    size: int

    def next_key(self) -> int: ...


@dataclass(frozen=True, slots=True)
class KeyspaceSpec:
    """What the options ask for; :meth:`build` makes one keyspace per random source."""

    size: int = 10_000
    distribution: str = "uniform"
    skew: float = 1.1
    hot_share: float = 0.5

    def __post_init__(self) -> None:
        if self.distribution not in DISTRIBUTIONS:
            raise LoadgenUsageError(
                f"--key-distribution {self.distribution!r}: choose one of {', '.join(DISTRIBUTIONS)}"
            )
        if not 1 <= self.size <= 10**15:
            raise LoadgenUsageError(f"--keys {self.size}: must be 1..10^15")
        if self.distribution == "zipf":
            if not 1 <= self.size <= MAX_ZIPF_KEYS:
                raise LoadgenUsageError(
                    f"--keys {self.size}: zipf takes at most {MAX_ZIPF_KEYS} keys"
                )
            if not self.skew > 0:
                raise LoadgenUsageError(f"--key-skew {self.skew}: must be above 0")
        if self.distribution == "hot":
            if not 0 <= self.hot_share <= 1:
                raise LoadgenUsageError(f"--hot-key-share {self.hot_share}: must be within 0..1")
            if self.size < 2 and self.hot_share < 1:
                raise LoadgenUsageError("--keys must be at least 2 for a hot key with share < 1")

    def build(self, rng: _random.Random) -> Keyspace:
        if self.distribution == "uniform":
            return Uniform(self.size, rng)
        if self.distribution == "zipf":
            return Zipf(self.size, self.skew, rng)
        return HotKey(self.size, self.hot_share, rng)


class Uniform:
    def __init__(self, size: int, rng: _random.Random) -> None:
        self.size = size
        self._randrange = rng.randrange

    def next_key(self) -> int:
        return self._randrange(self.size)


_ZIPF_TABLES: dict[tuple[int, float], list[float]] = {}


def _zipf_table(size: int, skew: float) -> list[float]:
    """Cumulative weights, shared by every producer in the process (they are immutable)."""
    table = _ZIPF_TABLES.get((size, skew))
    if table is None:
        cum = list(accumulate(1.0 / (r + 1) ** skew for r in range(size)))
        total = cum[-1]
        table = [c / total for c in cum]
        _ZIPF_TABLES[(size, skew)] = table
    return table


class Zipf:
    def __init__(self, size: int, skew: float, rng: _random.Random) -> None:
        self.size = size
        self._cum = _zipf_table(size, skew)
        self._random = rng.random

    def next_key(self) -> int:
        return min(bisect_left(self._cum, self._random()), self.size - 1)


class HotKey:
    HOT = 0

    def __init__(self, size: int, share: float, rng: _random.Random) -> None:
        self.size = size
        self._share = share
        self._random = rng.random
        self._randrange = rng.randrange

    def next_key(self) -> int:
        if self.size == 1 or self._random() < self._share:
            return self.HOT
        return 1 + self._randrange(self.size - 1)
