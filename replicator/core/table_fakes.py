"""An in-memory, scriptable BatchWriteItem sink (no boto3, no network) for tests.

moto never throttles nor leaves items unprocessed (REFERENCE.md, "moto"), so the batch-write
engine (:mod:`replicator.core.table_writes`) is tested against this fake: leave 30 % of the
requests unprocessed, throttle the 2nd call, refuse any call that holds a poisoned item.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from replicator.core.table_writes import MAX_BATCH, WriteRequest, key_id
from replicator.errors import InvalidRequestError, ReplicatorError, SinkError


@dataclass
class FakeTableSink:
    """Tables as dicts of ``key_id -> item``.

    - ``fail_calls``: 1-based call number -> the SinkError that call raises (nothing written);
    - ``unprocessed``: (request, call number) -> True to leave that request unprocessed;
    - ``invalid``: request -> a message if DynamoDB would refuse it (the whole call then fails
      with a ValidationException, as the service does);
    - ``delay_s``: time each call takes (to observe concurrency: ``max_in_flight_seen``).
    """

    tables: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    fail_calls: dict[int, SinkError] = field(default_factory=dict)
    unprocessed: Callable[[WriteRequest, int], bool] | None = None
    invalid: Callable[[WriteRequest], str | None] | None = None
    delay_s: float = 0.0
    calls: int = 0
    max_in_flight_seen: int = 0
    requests_sent: int = 0
    batches: list[list[WriteRequest]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight = 0

    def items(self, table: str) -> dict[str, dict[str, Any]]:
        return self.tables.setdefault(table, {})

    def batch_write(
        self,
        table: str,
        requests: Sequence[WriteRequest],
        guard: Callable[[], object] | None = None,
    ) -> list[WriteRequest]:
        if not 1 <= len(requests) <= MAX_BATCH:
            raise InvalidRequestError(f"{len(requests)} requests", "ValidationException")
        if len({key_id(r.key) for r in requests}) != len(requests):
            raise InvalidRequestError("duplicate key in one call", "ValidationException")
        if guard is not None:
            guard()  # a ReplicatorError propagates: nothing sent
        with self._lock:
            self.calls += 1
            call = self.calls
            self._in_flight += 1
            self.max_in_flight_seen = max(self.max_in_flight_seen, self._in_flight)
            self.requests_sent += len(requests)
            self.batches.append(list(requests))
        try:
            if self.delay_s:
                time.sleep(self.delay_s)
            if call in self.fail_calls:
                raise self.fail_calls[call]
            if self.invalid is not None:
                for r in requests:
                    message = self.invalid(r)
                    if message is not None:
                        raise InvalidRequestError(message, "ValidationException")
            left = []
            with self._lock:
                rows = self.items(table)
                for r in requests:
                    if self.unprocessed is not None and self.unprocessed(r, call):
                        left.append(r)
                    elif r.item is None:
                        rows.pop(key_id(r.key), None)
                    else:
                        rows[key_id(r.key)] = r.item
            return left
        finally:
            with self._lock:
                self._in_flight -= 1


def refusing(error: ReplicatorError) -> Callable[[], object]:
    """A guard that always refuses with ``error`` (a lost lease)."""

    def guard() -> object:
        raise error

    return guard
