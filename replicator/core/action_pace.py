"""Pace and lag of the ``action-log`` consumers (pure; clock and sleep passed in).

The lazy consumer applies the log at a bounded rate (the seed's "KCL application that consumes
lazily at the performance the user requires"): :class:`TokenBucket` bounds the actions applied
per second across all the shards of one process. The price of going slowly is lag, and a
Kinesis stream forgets: an action older than the stream's retention (24 hours by default) is
trimmed before a consumer that far behind reads it, and the table can never be whole again.
:class:`LagRecorder` appends each shard's lag to the run directory's ``consumer-lag.jsonl``
(:data:`xrh.action_log.LAG_FILE`, for verify's lag report) and warns once a shard is behind by
more than :data:`WARN_FRACTION` of the retention, while there is still time to act.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

#: Warn when a shard's MillisBehindLatest passes this fraction of the stream's retention.
WARN_FRACTION = 0.8
DEFAULT_RETENTION_HOURS = 24


class TokenBucket:
    """At most ``rate`` actions per second on average, bursts of at most ``burst`` (default one
    second's worth). :meth:`acquire` takes ``n`` tokens, going into debt if there are fewer, and
    sleeps until the debt is paid, so a batch larger than the burst still waits its share
    instead of being refused. Safe to share between threads (the wait holds the lock: callers
    queue, which is the point)."""

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, not {rate}")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self.clock = clock
        self.sleep = sleep
        self.tokens = self.burst
        self.waited_s = 0.0
        self._at = clock()
        self._lock = threading.Lock()

    def acquire(self, n: int) -> float:
        """Take ``n`` tokens; the seconds slept waiting for them."""
        if n <= 0:
            return 0.0
        with self._lock:
            now = self.clock()
            self.tokens = min(self.burst, self.tokens + (now - self._at) * self.rate)
            self._at = now
            self.tokens -= n
            if self.tokens >= 0:
                return 0.0
            wait = -self.tokens / self.rate
            self.sleep(wait)
            self.waited_s += wait
            return wait


def unlimited(n: int) -> float:
    """No rate limit (the fast consumer's default)."""
    return 0.0


class LagRecorder:
    """Lag samples of one consumer process, and the warning when it falls dangerously behind.

    ``append(line)`` appends one JSON line to the lag file; ``warn(message)`` tells the person
    running it (stderr); ``log(event, **fields)`` the process log."""

    def __init__(
        self,
        consumer: str,
        *,
        retention_hours: float,
        append: Callable[[str], None],
        warn: Callable[[str], None],
        log: Callable[..., None],
        clock_ms: Callable[[], int],
    ) -> None:
        self.consumer = consumer
        self.retention_ms = int(retention_hours * 3_600_000)
        self.threshold_ms = int(self.retention_ms * WARN_FRACTION)
        self.append = append
        self.warn = warn
        self.log = log
        self.clock_ms = clock_ms
        self.warned: set[str] = set()  # shards above the threshold (warned once per crossing)
        self.samples = 0

    def sample(self, shard_id: str, millis_behind: int | None, applied_arrival_ms: int | None):
        """One sample of one shard (about once a second)."""
        now = self.clock_ms()
        self.append(
            json.dumps(
                {
                    "ts_ms": now,
                    "consumer": self.consumer,
                    "shard_id": shard_id,
                    "millis_behind_latest": millis_behind,
                    "applied_arrival_ms": applied_arrival_ms,
                },
                sort_keys=True,
            )
            + "\n"
        )
        self.samples += 1
        if millis_behind is None:
            return
        if millis_behind > self.threshold_ms and shard_id not in self.warned:
            self.warned.add(shard_id)
            hours = millis_behind / 3_600_000
            message = (
                f"WARNING: {self.consumer} consumer: shard {shard_id} is {hours:.1f} h behind, "
                f"over {WARN_FRACTION:.0%} of the stream's {self.retention_ms / 3_600_000:g} h "
                "retention: actions trimmed before they are applied are lost for good (raise "
                "--max-rate, add workers, or extend the retention)"
            )
            self.log("lag_warning", level="WARNING", shard_id=shard_id,
                     millis_behind_latest=millis_behind, threshold_ms=self.threshold_ms)  # fmt: skip
            self.warn(message)
        elif millis_behind <= self.threshold_ms and shard_id in self.warned:
            self.warned.discard(shard_id)
            self.log("lag_recovered", shard_id=shard_id, millis_behind_latest=millis_behind)
