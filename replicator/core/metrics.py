"""Replicator counters and per-shard lag (pure), rendered as CloudWatch embedded metric format.

EMF lines are JSON objects with an ``_aws`` block; CloudWatch Logs turns them into metrics
without API calls, which is why the Lambda and the poller both log them.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

NAMESPACE = "XrhReplicator"
COUNTERS = (
    "records_in",
    "records_copied",
    "bytes_copied",
    "batches",
    "requests",
    "retried_entries",
    "throttled_requests",
    "dead_lettered",
    "no_commit_timestamp",
    "stood_down_batches",
    "stood_down_records",
    "failed_batches",
    "lookup_failures",
    "checkpoint_writes",
    "checkpoint_conflicts",
    "checkpoint_errors",
    "claims",
    "get_records_calls",
    "active_region_lookups",
)


@dataclass
class ShardLag:
    millis_behind_latest: int | None = None
    commit_lag_ms: int | None = None  # now - commitTimestamp of the last record copied
    last_sequence_number: str | None = None
    updated_ms: int | None = None


@dataclass
class Metrics:
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    shards: dict[str, ShardLag] = field(default_factory=dict)
    watermark_ms: int | None = None
    #: bounded-memory distributions (e.g. ``apply_lag_ms``), shown in the snapshot by name
    histograms: dict[str, LagHistogram] = field(default_factory=dict)

    def add(self, name: str, value: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + value

    def lag(self, shard_id: str) -> ShardLag:
        return self.shards.setdefault(shard_id, ShardLag())

    def histogram(self, name: str) -> LagHistogram:
        return self.histograms.setdefault(name, LagHistogram())

    def snapshot(self) -> dict[str, Any]:
        return {
            "counters": dict(self.counters),
            "shards": {k: asdict(v) for k, v in sorted(self.shards.items())},
            "watermark_ms": self.watermark_ms,
            **{name: h.summary() for name, h in sorted(self.histograms.items())},
        }


class LagHistogram:
    """Percentiles of non-negative millisecond values in bounded memory.

    Values go into log-spaced buckets (each ``ratio`` times wider than the last, so a
    percentile is within ``ratio - 1`` (2 %) of the true value; about 1,100 buckets cover
    0 ms to a year, kept sparse); count and max are exact. Negative values (a writer's clock
    ahead of ours) count as 0 and are counted in ``negative``.
    """

    __slots__ = ("ratio", "count", "max", "negative", "_buckets", "_log_ratio")

    def __init__(self, ratio: float = 1.02) -> None:
        if ratio <= 1.0:
            raise ValueError(f"ratio must be above 1, not {ratio}")
        self.ratio = ratio
        self._log_ratio = math.log(ratio)
        self.count = 0
        self.max: int | None = None
        self.negative = 0
        self._buckets: dict[int, int] = {}

    def add(self, value_ms: int | float, count: int = 1) -> None:
        if value_ms < 0:
            self.negative += count
            value_ms = 0
        index = 0 if value_ms < 1 else 1 + int(math.log(value_ms) / self._log_ratio)
        self._buckets[index] = self._buckets.get(index, 0) + count
        self.count += count
        value = int(value_ms)
        if self.max is None or value > self.max:
            self.max = value

    def percentile(self, q: float) -> int | None:
        """The q-th percentile (0..100): the upper bound of its bucket, at most the max."""
        if not self.count:
            return None
        rank = max(1, math.ceil(self.count * q / 100))
        seen = 0
        for index in sorted(self._buckets):
            seen += self._buckets[index]
            if seen >= rank:
                upper = 0 if index == 0 else math.ceil(self.ratio**index)
                return min(upper, self.max or 0)
        return self.max  # pragma: no cover - rank <= count

    def summary(self) -> dict[str, int | None]:
        return {
            "count": self.count,
            "p50": self.percentile(50),
            "p90": self.percentile(90),
            "p99": self.percentile(99),
            "max": self.max,
        }


def emf_line(
    metrics: dict[str, int | float], dimensions: dict[str, str], timestamp_ms: int, **extra: Any
) -> str:
    """One CloudWatch embedded-metric-format log line."""
    payload: dict[str, Any] = {
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": [sorted(dimensions)],
                    "Metrics": [
                        {"Name": name, "Unit": "Milliseconds" if name.endswith("_ms") else "Count"}
                        for name in sorted(metrics)
                    ],
                }
            ],
        },
        **dimensions,
        **metrics,
        **extra,
    }
    return json.dumps(payload, sort_keys=True, default=str)
