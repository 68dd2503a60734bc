"""Keyspace distributions, checked statistically with seeded random sources."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from loadgen.errors import LoadgenUsageError
from loadgen.keyspace import KeyspaceSpec

N = 50_000


def draw(spec: KeyspaceSpec, n: int = N, seed: int = 11) -> Counter[int]:
    keyspace = spec.build(random.Random(seed))
    return Counter(keyspace.next_key() for _ in range(n))


def test_uniform_covers_the_keyspace_evenly():
    counts = draw(KeyspaceSpec(size=20))
    assert set(counts) == set(range(20))
    expected = N / 20
    chi2 = sum((c - expected) ** 2 / expected for c in counts.values())
    assert chi2 < 43.8  # 19 degrees of freedom, p = 0.001


def test_zipf_follows_rank_weights():
    size, skew = 100, 1.2
    counts = draw(KeyspaceSpec(size=size, distribution="zipf", skew=skew))
    total = sum(1 / (r + 1) ** skew for r in range(size))
    for rank in (0, 1, 4):
        p = 1 / (rank + 1) ** skew / total
        sd = math.sqrt(N * p * (1 - p))
        assert abs(counts[rank] - N * p) < 5 * sd
    assert counts[0] > counts[1] > counts[9]


def test_hot_key_gets_its_share_and_others_are_uniform():
    counts = draw(KeyspaceSpec(size=101, distribution="hot", hot_share=0.7))
    p = 0.7
    assert abs(counts[0] - N * p) < 5 * math.sqrt(N * p * (1 - p))
    rest = [counts[k] for k in range(1, 101)]
    assert min(rest) > 0 and max(rest) < 3 * (N * 0.3 / 100)


def test_seeded_keyspaces_repeat():
    spec = KeyspaceSpec(size=1000, distribution="zipf")
    a = spec.build(random.Random(1))
    b = spec.build(random.Random(1))
    assert [a.next_key() for _ in range(100)] == [b.next_key() for _ in range(100)]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"distribution": "pareto"},
        {"size": 0},
        {"distribution": "zipf", "skew": 0},
        {"distribution": "hot", "hot_share": 1.5},
    ],
)
def test_bad_keyspace_options_are_usage_errors(kwargs):
    with pytest.raises(LoadgenUsageError):
        KeyspaceSpec(**kwargs)
