"""Read a whole DynamoDB table by parallel scan (Segment / TotalSegments), for the table
pipelines. Each segment pages in its own thread; pages pass through a bounded queue to the one
thread that writes the store, so memory holds a few pages, not the table. Throttling backs off
with the passed-in sleep; the deadline leaves unfinished segments named (verdict unknown).

Items are stored as canonical JSON of the wire form (attribute-value maps) with a 64-bit hash,
keyed by the JSON of their key attributes. Canonical: keys sorted, binaries as base64, the
members of sets sorted (DynamoDB keeps sets unordered, so two regions may list them apart).
"""

from __future__ import annotations

import base64
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
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return not self.unfinished

    def to_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "segments": self.segments,
            "items": self.items,
            "calls": self.calls,
            "throttles": self.throttles,
            "seconds": round(self.seconds, 3),
            "items_per_s": round(self.items / self.seconds) if self.seconds > 0 else None,
            "complete": self.complete,
            "unfinished_segments": sorted(self.unfinished),
        }


_SETS = frozenset({"SS", "NS", "BS"})
_NESTED = frozenset({"SS", "NS", "BS", "M", "L"})


def _wire_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    raise TypeError(f"not a DynamoDB wire value: {type(value).__name__}")


def _canonical_value(value: Any) -> Any:
    """One attribute value with its sets sorted, recursively (copies only what it changes)."""
    if not isinstance(value, dict) or not (value.keys() & _NESTED):
        return value
    out = dict(value)
    for name in value.keys() & _NESTED:
        member = value[name]
        if name in _SETS:
            out[name] = sorted(member, key=lambda v: v if isinstance(v, str) else _wire_default(v))
        elif name == "M":
            out[name] = {k: _canonical_value(v) for k, v in member.items()}
        else:
            out[name] = [_canonical_value(v) for v in member]
    return out


def canonical_json(item: dict[str, Any]) -> str:
    """The canonical JSON of an item (or key, or stream image) in wire form."""
    for value in item.values():
        if isinstance(value, dict) and value.keys() & _NESTED:
            item = {k: _canonical_value(v) for k, v in item.items()}
            break
    return json.dumps(item, sort_keys=True, separators=(",", ":"), default=_wire_default)


def key_json(item: dict[str, Any], key_names: tuple[str, ...]) -> str:
    return canonical_json({k: item.get(k) for k in key_names})


def item_row(item: dict[str, Any], key_names: tuple[str, ...]) -> tuple[str, int, str]:
    body = canonical_json(item)
    return key_json(item, key_names), hash64(body.encode()), body


def traced_item_row(
    item: dict[str, Any], key_names: tuple[str, ...], trace_attr: str = "trace"
) -> tuple[str, int, str, str | None]:
    """:func:`item_row` plus the item's trace (None when it has no string ``trace_attr``)."""
    key, digest, body = item_row(item, key_names)
    trace = item.get(trace_attr)
    return key, digest, body, trace.get("S") if isinstance(trace, dict) else None


def scan_table(
    api: DynamoDbApi,
    table: str,
    key_names: tuple[str, ...],
    on_rows: Callable[[list[tuple]], None],
    *,
    segments: int = 4,
    deadline: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    backoff: Backoff = Backoff(),  # noqa: B008 - frozen value
    page_limit: int | None = None,
    row_of: Callable[[dict[str, Any], tuple[str, ...]], tuple] = item_row,
) -> ScanStats:
    """Every item of ``table`` as ``row_of(item, key_names)`` rows handed to ``on_rows`` (in
    the calling thread, page by page)."""
    stats = ScanStats(table, segments)
    started = time.perf_counter()
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
                pages.put((segment, [row_of(i, key_names) for i in page.get("Items", [])]))
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
    stats.seconds = time.perf_counter() - started
    if error is not None:
        if is_connection_error(error):
            raise EndpointUnreachable(f"table {table}: endpoint not reachable ({error})") from error
        raise error
    return stats
