"""Read a whole DynamoDB table by parallel scan (Segment / TotalSegments), for the table
pipelines. Each segment pages in its own thread; pages pass through a bounded queue to the one
thread that writes the store, so memory holds a few pages, not the table. Throttling backs off
with the passed-in sleep; the deadline leaves unfinished segments named (verdict unknown).

Items are stored as canonical JSON of the wire form (attribute-value maps) with a 64-bit hash,
keyed by the JSON of their key attributes.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from verify.errors import EndpointUnreachable
from verify.kinesis_reader import THROTTLE_CODES, Backoff, error_code, is_connection_error
from verify.model import hash64


class DynamoDbApi(Protocol):
    def scan(self, **kwargs: Any) -> dict[str, Any]: ...


@dataclass(slots=True)
class ScanStats:
    table: str
    segments: int
    items: int = 0
    calls: int = 0
    throttles: int = 0
    unfinished: list[int] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.unfinished


def item_row(item: dict[str, Any], key_names: tuple[str, ...]) -> tuple[str, int, str]:
    body = json.dumps(item, sort_keys=True, separators=(",", ":"))
    key = json.dumps({k: item.get(k) for k in key_names}, sort_keys=True, separators=(",", ":"))
    return key, hash64(body.encode()), body


def scan_table(
    api: DynamoDbApi,
    table: str,
    key_names: tuple[str, ...],
    on_rows: Callable[[list[tuple[str, int, str]]], None],
    *,
    segments: int = 4,
    deadline: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    backoff: Backoff = Backoff(),  # noqa: B008 - frozen value
    page_limit: int | None = None,
) -> ScanStats:
    stats = ScanStats(table, segments)
    pages: queue.Queue[tuple[int, Any]] = queue.Queue(maxsize=2 * segments)
    lock = threading.Lock()

    def worker(segment: int) -> None:
        kwargs: dict[str, Any] = {"TableName": table, "Segment": segment, "TotalSegments": segments}
        if page_limit:
            kwargs["Limit"] = page_limit
        attempt = 0
        try:
            while True:
                if clock() >= deadline:
                    pages.put((segment, "unfinished"))
                    return
                try:
                    page = api.scan(**kwargs)
                except Exception as exc:
                    if error_code(exc) in THROTTLE_CODES:
                        with lock:
                            stats.throttles += 1
                        sleep(backoff.delay(attempt))
                        attempt += 1
                        continue
                    raise
                attempt = 0
                with lock:
                    stats.calls += 1
                pages.put((segment, [item_row(i, key_names) for i in page.get("Items", [])]))
                start = page.get("LastEvaluatedKey")
                if not start:
                    pages.put((segment, "done"))
                    return
                kwargs["ExclusiveStartKey"] = start
        except Exception as exc:  # handed to the writer thread, raised there
            pages.put((segment, exc))

    threads = [threading.Thread(target=worker, args=(s,), daemon=True) for s in range(segments)]
    for thread in threads:
        thread.start()
    running, error = segments, None
    while running:
        segment, payload = pages.get()
        if isinstance(payload, list):
            stats.items += len(payload)
            if payload and error is None:
                on_rows(payload)
            continue
        running -= 1
        if payload == "unfinished":
            stats.unfinished.append(segment)
        elif isinstance(payload, Exception) and error is None:
            error = payload
    for thread in threads:
        thread.join()
    if error is not None:
        if is_connection_error(error):
            raise EndpointUnreachable(f"table {table}: endpoint not reachable ({error})") from error
        raise error
    return stats
