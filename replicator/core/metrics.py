"""Replicator counters and per-shard lag (pure), rendered as CloudWatch embedded metric format.

EMF lines are JSON objects with an ``_aws`` block; CloudWatch Logs turns them into metrics
without API calls, which is why the Lambda and the poller both log them.
"""

from __future__ import annotations

import json
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

    def add(self, name: str, value: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + value

    def lag(self, shard_id: str) -> ShardLag:
        return self.shards.setdefault(shard_id, ShardLag())

    def snapshot(self) -> dict[str, Any]:
        return {
            "counters": dict(self.counters),
            "shards": {k: asdict(v) for k, v in sorted(self.shards.items())},
            "watermark_ms": self.watermark_ms,
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
