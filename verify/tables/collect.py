"""Reading what the table checks judge: both tables, A's stream, then settling.

Both tables are scanned (parallel scan, :func:`verify.table_reader.scan_table`) while A's stream
is read, all three at once; the stream is read once more afterwards, so it covers what A's scan
saw. Then the tables are compared by chunk digests (:mod:`verify.tables.store`). If they
differ, the target may only be late: verify re-reads just the differing keys in both regions
(BatchGetItem, consistent reads), reads A's stream on from where it stopped, and compares
those keys again, for as long as the number of differing keys falls; it gives up after
``settle_s`` without progress, or near the deadline. Anything that could not be read becomes
a reason (verdict unknown), never an anomaly.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from verify.collect import SETTLE_POLL_S, settle_keys
from verify.errors import EndpointUnreachable, VerifyUsageError
from verify.kinesis_reader import THROTTLE_CODES, Backoff, error_code, is_connection_error
from verify.table_reader import scan_table, traced_item_row
from verify.tables.store import TableStore
from verify.tables.stream_reader import TableStreamReader
from xrh.config import HarnessConfig, Side

BATCH_GET = 100  # BatchGetItem's maximum keys per call


@dataclass(frozen=True, slots=True)
class TablePair:
    """What is compared: table A (region A) with table B (region B), their key attributes,
    and A's stream if it has one."""

    table_a: str
    table_b: str
    key_names: tuple[str, ...]
    stream_arn: str | None
    trace_attr: str = "trace"


def describe_pair(
    clients: Any, config: HarnessConfig, table_a: str, table_b: str, *,
    option_a: str = "--table", option_b: str = "--table-b",
) -> TablePair:  # fmt: skip
    """DescribeTable in both regions: key schema (any hash and range key) and A's stream.
    A table that does not exist, or key schemas that differ, is the user's mistake
    (VerifyUsageError naming the option); an endpoint that does not answer is not."""
    described = {}
    for side, name, option in ((Side.A, table_a, option_a), (Side.B, table_b, option_b)):
        region = config.region(side)
        try:
            described[side] = clients.client("dynamodb", side).describe_table(TableName=name)
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                raise VerifyUsageError(
                    f"{option} {name}: no such table in region {side.name} ({region})"
                ) from None
            if is_connection_error(exc):
                raise EndpointUnreachable(
                    f"region {side.name} ({region}) endpoint not reachable: {exc}"
                ) from exc
            raise
    schemas = {
        side: tuple(k["AttributeName"] for k in sorted(
            d["Table"]["KeySchema"], key=lambda k: k["KeyType"] != "HASH"))
        for side, d in described.items()
    }  # fmt: skip
    if schemas[Side.A] != schemas[Side.B]:
        raise VerifyUsageError(
            f"{option_b} {table_b}: its key ({', '.join(schemas[Side.B])}) is not the key of "
            f"{table_a} in region A ({', '.join(schemas[Side.A])})"
        )
    table = described[Side.A]["Table"]
    enabled = table.get("StreamSpecification", {}).get("StreamEnabled")
    arn = table.get("LatestStreamArn") if enabled else None
    return TablePair(table_a, table_b, schemas[Side.A], arn)


def wire_key(key: str) -> dict[str, Any]:
    """A stored key JSON as a request key (binaries back to bytes)."""
    out = {}
    for name, value in json.loads(key).items():
        if isinstance(value, dict) and "B" in value:
            value = {"B": base64.b64decode(value["B"])}
        out[name] = value
    return out


def batch_get(
    api: Any, table: str, keys: list[str], key_names: tuple[str, ...], *, deadline: float,
    clock: Callable[[], float], sleep: Callable[[float], None], trace_attr: str = "trace",
    backoff: Backoff = Backoff(),  # noqa: B008 - frozen value
    row_of: Callable[[dict[str, Any], tuple[str, ...]], tuple] | None = None,
) -> list[tuple] | None:  # fmt: skip
    """The items of ``keys`` now (consistent reads), as store rows (``row_of(item,
    key_names)``, by default :func:`traced_item_row`); None if throttling or unprocessed keys
    outlasted the deadline."""
    if row_of is None:
        row_of = lambda i, k: traced_item_row(i, k, trace_attr)  # noqa: E731
    rows: list[tuple] = []
    for start in range(0, len(keys), BATCH_GET):
        pending: dict[str, Any] = {table: {
            "Keys": [wire_key(k) for k in keys[start : start + BATCH_GET]],
            "ConsistentRead": True}}  # fmt: skip
        attempt = 0
        while pending:
            if clock() >= deadline:
                return None
            try:
                answer = api.batch_get_item(RequestItems=pending)
            except Exception as exc:
                if error_code(exc) not in THROTTLE_CODES:
                    raise
                sleep(backoff.delay(attempt))
                attempt += 1
                continue
            rows += [row_of(i, key_names) for i in answer.get("Responses", {}).get(table, [])]
            pending = answer.get("UnprocessedKeys") or {}
            if pending:
                sleep(backoff.delay(attempt))
                attempt += 1
    return rows


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[str], Callable[..., None]]]:
    """Yields ``task(label) -> update(n=..., description=...)``; rich spinners when enabled."""
    if not enabled:
        yield lambda label: lambda **kw: None
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"),
                  TextColumn("{task.completed}"), TimeElapsedColumn(),
                  transient=True) as bar:  # fmt: skip

        def task(label: str) -> Callable[..., None]:
            task_id = bar.add_task(label, total=None)

            def update(n: int = 0, description: str | None = None) -> None:
                bar.update(task_id, advance=n, description=description or label)

            return update

        yield task


class TableReader:
    """Fills a :class:`TableStore` from both regions and settles; returns the reasons the
    evidence is incomplete (empty when everything was read)."""

    def __init__(
        self, store: TableStore, clients: Any, pair: TablePair, details: dict[str, Any], *,
        segments: int = 4, clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep, progress: bool = False,
        poll_s: float = SETTLE_POLL_S,
    ) -> None:  # fmt: skip
        self.store, self.clients, self.pair, self.details = store, clients, pair, details
        self.segments, self.clock, self.sleep = segments, clock, sleep
        self.progress, self.poll_s = progress, poll_s
        self.stream: TableStreamReader | None = None
        if pair.stream_arn:
            self.stream = TableStreamReader(
                clients.client("dynamodbstreams", Side.A), pair.stream_arn, pair.key_names,
                trace_attr=pair.trace_attr, clock=clock, sleep=sleep,
            )  # fmt: skip

    def read(self, timeout_s: float, settle_s: float) -> list[str]:
        deadline = self.clock() + timeout_s
        timings: dict[str, float] = {}
        self.details["timings_s"] = timings
        t0 = time.perf_counter()
        with _progress(self.progress) as task:
            reasons = self._first_read(deadline, task)
            timings["first_read"] = round(time.perf_counter() - t0, 3)
            if not reasons:
                t1 = time.perf_counter()
                compared = self.store.compare()
                self.details["items_compared"] = self.store.count("a") + self.store.count("b")
                self.details["chunks"] = {
                    "chunks": compared["chunks"],
                    "compared": compared["chunks_compared"],
                    "differing": compared["chunks_differing"],
                    "items_compared_per_key": compared["items_compared_per_key"],
                    "differing_keys": compared["differing_keys"],
                }
                timings["compare"] = round(time.perf_counter() - t1, 3)
                reasons = self._settle(deadline, timeout_s, settle_s, task)
        timings["read"] = round(time.perf_counter() - t0, 3)
        if self.stream is not None:
            self.details["stream"] = self.stream.stats.to_json()
        self.details["stream_changes_read"] = self.stream.stats.changes if self.stream else None
        return reasons

    def _stream_pass(self, deadline: float) -> list[str]:
        if self.stream is None:
            return []
        try:
            stats = self.stream.read(self.store.add_changes, deadline)
        except EndpointUnreachable as exc:
            return [str(exc)]
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return [f"the stream of {self.pair.table_a} in region A is gone: {exc}"]
            raise
        if stats.complete:
            return []
        return [f"the stream of {self.pair.table_a} in region A was not read to its end in time "
                f"(unfinished shards: {', '.join(stats.unfinished)})"]  # fmt: skip

    def _first_read(self, deadline: float, task: Callable[[str], Any]) -> list[str]:
        reasons: list[str] = []
        scans: dict[str, Any] = {}
        threads = []

        def scan(side: Side, table: str) -> None:
            label = side.value
            bar = task(f"scanning {table} in region {side.name}")

            def on_rows(rows: list[tuple]) -> None:
                self.store.add_items(label, rows)
                bar(n=len(rows))

            try:
                scans[label] = scan_table(
                    self.clients.client("dynamodb", side), table, self.pair.key_names, on_rows,
                    segments=self.segments, deadline=deadline, clock=self.clock,
                    sleep=self.sleep,
                    row_of=lambda i, k: traced_item_row(i, k, self.pair.trace_attr),
                )  # fmt: skip
                if not scans[label].complete:
                    reasons.append(
                        f"table {table} in region {side.name} not scanned to its end in time "
                        f"(unfinished segments: {sorted(scans[label].unfinished)})"
                    )
            except EndpointUnreachable as exc:
                reasons.append(str(exc))
            except Exception as exc:
                reasons.append(f"table {table} in region {side.name} could not be read: {exc}")

        def stream() -> None:
            try:
                reasons.extend(self._stream_pass(deadline))
            except Exception as exc:
                reasons.append(f"the stream of {self.pair.table_a} could not be read: {exc}")

        for target, args in ((scan, (Side.A, self.pair.table_a)),
                             (scan, (Side.B, self.pair.table_b)), (stream, ())):  # fmt: skip
            threads.append(threading.Thread(target=target, args=args, daemon=True))
            threads[-1].start()
        for thread in threads:
            thread.join()
        self.details["scans"] = {k: v.to_json() for k, v in sorted(scans.items())}
        if not reasons:  # once more: the stream covers everything A's scan saw
            reasons = self._stream_pass(deadline)
        return reasons

    def _settle(self, deadline: float, timeout_s: float, settle_s: float,
                task: Callable[[str], Any]) -> list[str]:  # fmt: skip
        store = self.store
        differing = store.differing()
        settle: dict[str, Any] = {"settle_seconds": settle_s, "passes": 0, "waited_s": 0.0,
                                  "differing_after_first_compare": differing,
                                  "keys_reread": 0}  # fmt: skip
        self.details["settle"] = settle
        settle_deadline = deadline - min(2.0, 0.1 * timeout_s)
        return settle_keys(
            settle, store.differing, lambda: self._reread(settle_deadline, settle),
            settle_s=settle_s, settle_deadline=settle_deadline, poll_s=self.poll_s,
            clock=self.clock, sleep=self.sleep,
            bar=task("comparing") if differing else None,
        )  # fmt: skip

    def _reread(self, deadline: float, settle: dict[str, Any]) -> list[str]:
        """The differing keys again in both regions, then A's stream on from where it was."""
        for keys in self.store.differing_keys(BATCH_GET * 10):
            for side, table in ((Side.A, self.pair.table_a), (Side.B, self.pair.table_b)):
                try:
                    rows = batch_get(
                        self.clients.client("dynamodb", side), table, keys,
                        self.pair.key_names, deadline=deadline, clock=self.clock,
                        sleep=self.sleep, trace_attr=self.pair.trace_attr,
                    )  # fmt: skip
                except Exception as exc:
                    if is_connection_error(exc):
                        return [f"region {side.name} endpoint not reachable: {exc}"]
                    raise
                if rows is None:
                    return []  # out of time: judge what was read
                self.store.replace_items(side.value, keys, rows)
            settle["keys_reread"] += len(keys)
            self.store.recompare(keys)
        return self._stream_pass(deadline)


def scan_both_regions(
    clients: Any,
    config: Any,
    table: str,
    key_names: Any,
    add_rows: Callable[[Side, Any], None],
    *,
    segments: int,
    deadline: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    row_of: Callable[..., Any],
    details: dict[str, dict[str, Any]],
) -> list[str]:
    """Both regions' ``table`` scanned at once (parallel segments each), every page handed to
    ``add_rows(side, rows)``; scan figures into ``details[side.name]["scan"]``; the reasons a
    scan could not finish (endpoint down, no such table, not to its end in time)."""
    reasons: list[str] = []

    def scan(side: Side) -> None:
        where = f"table {table} in region {side.name}"
        try:
            stats = scan_table(
                clients.client("dynamodb", side), table, key_names,
                lambda rows: add_rows(side, rows), segments=segments, deadline=deadline,
                clock=clock, sleep=sleep, row_of=row_of,
            )  # fmt: skip
        except EndpointUnreachable as exc:
            reasons.append(f"region {side.name}: {exc}")
            return
        except Exception as exc:  # noqa: BLE001 - said in the reasons, the verdict unknown
            if error_code(exc) == "ResourceNotFoundException":
                reasons.append(f"{where} ({config.region(side)}) does not exist")
            else:
                reasons.append(f"{where} could not be read: {exc}")
            return
        details[side.name]["scan"] = stats.to_json()
        if not stats.complete:
            reasons.append(f"{where} not scanned to its end in time (unfinished "
                           f"segments: {sorted(stats.unfinished)})")  # fmt: skip

    threads = [threading.Thread(target=scan, args=(side,), daemon=True) for side in Side]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return reasons
