"""Reading an active-active run's evidence into :class:`~verify.active.store.ActiveStore`.

- Both regions' items tables, scanned at once by parallel segments
  (:func:`verify.table_reader.scan_table`), compared by chunk digests, then settled: while keys
  differ, only those keys are read again in both regions (consistent BatchGetItem,
  :func:`verify.tables.collect.batch_get`) and compared again, for as long as the number of
  differing keys falls (:func:`verify.collect.settle_keys`, bounded by ``--settle-seconds``
  without progress and by the deadline). The wall time at which no key differed any more is
  the convergence time, counted from when the load stopped (the ledger's last completed_at).
- Both staging streams, each read whole (:func:`verify.kinesis_reader.read_stream`) after the
  tables settled, so every change forwarded before convergence is there.
- The appliers' ``replication-lag.jsonl`` (:data:`xrh.active_active.LAG_FILE`), if present.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from verify.actions.items import KEY_NAMES
from verify.active.staging import DIRECTIONS, parse_record
from verify.active.store import ActiveStore, item_row
from verify.collect import SETTLE_POLL_S, settle_keys
from verify.errors import EndpointUnreachable
from verify.kinesis_reader import error_code, is_connection_error, read_stream
from verify.tables.collect import BATCH_GET, batch_get, scan_both_regions
from xrh.active_active import LAG_FILE
from xrh.config import HarnessConfig, Side

SIDES = (Side.A, Side.B)
BAD_LINES = 5


def load_applied_lag(store: ActiveStore, run_path: Path) -> dict[str, Any]:
    """``replication-lag.jsonl`` into the store; what was found, for details."""
    path = Path(run_path) / LAG_FILE
    if not path.exists():
        return {"file": False, "note": f"no {LAG_FILE}: the appliers' lag was not recorded"}
    rows, bad, unreadable = [], [], 0
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
                rows.append((str(doc["direction"]), int(doc["ts_ms"]), int(doc["lag_ms"])))
            except (ValueError, KeyError, TypeError) as exc:
                unreadable += 1
                if len(bad) < BAD_LINES:
                    bad.append(f"line {number}: {type(exc).__name__}: {exc}")
    n = store.add_applied_lag(rows)
    return {"file": True, "samples": n, "unreadable_lines": unreadable,
            **({"unreadable_examples": bad} if bad else {})}  # fmt: skip


class ActiveRead:
    """Reads both tables and both staging streams into ``store``; each method returns the
    reasons the evidence is incomplete (empty when everything was read)."""

    def __init__(
        self, store: ActiveStore, clients: Any, config: HarnessConfig, table: str,
        staging: str, details: dict[str, Any], *, segments: int = 4,
        clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        poll_s: float = SETTLE_POLL_S,
    ) -> None:  # fmt: skip
        self.store, self.clients, self.config = store, clients, config
        self.table, self.staging, self.details, self.segments = table, staging, details, segments
        self.clock, self.sleep, self.wall_ms, self.poll_s = clock, sleep, wall_ms, poll_s
        self.tables: dict[str, dict[str, Any]] = {
            s.name: {"table": table, "region": config.region(s)} for s in SIDES
        }
        details["tables"] = self.tables
        self.converged_at_ms: int | None = None

    def tables_and_settle(self, deadline: float, timeout_s: float, settle_s: float) -> list[str]:
        timings = self.details.setdefault("timings_s", {})
        t0 = time.perf_counter()
        reasons = self._scan(deadline)
        timings["scan"] = round(time.perf_counter() - t0, 3)
        if reasons:
            return reasons
        compared = self.store.compare()
        if compared["differing_keys"] == 0:
            self.converged_at_ms = self.wall_ms()
        self.details["comparison"] = {**compared, "at_ms": self.wall_ms()}
        settle: dict[str, Any] = {"settle_seconds": settle_s, "passes": 0, "waited_s": 0.0,
                                  "differing_after_first_compare": compared["differing_keys"],
                                  "keys_reread": 0}  # fmt: skip
        self.details["settle"] = settle
        settle_deadline = deadline - min(2.0, 0.1 * timeout_s)
        t1 = time.perf_counter()
        reasons = settle_keys(
            settle, self._differing, lambda: self._reread(settle_deadline, settle),
            settle_s=settle_s, settle_deadline=settle_deadline, poll_s=self.poll_s,
            clock=self.clock, sleep=self.sleep,
        )  # fmt: skip
        timings["settle"] = round(time.perf_counter() - t1, 3)
        for side, name in ((Side.A, "a"), (Side.B, "b")):
            self.tables[side.name].update(
                items=self.store.count(name),
                tombstones=self.store.scalar(
                    "SELECT COUNT(*) FROM stamps WHERE side = ? AND tomb = 1", (name,)),
            )  # fmt: skip
        return reasons

    def _differing(self) -> int:
        n = self.store.differing()
        if n == 0 and self.converged_at_ms is None:
            self.converged_at_ms = self.wall_ms()
        return n

    def _scan(self, deadline: float) -> list[str]:
        return scan_both_regions(
            self.clients, self.config, self.table, KEY_NAMES, lambda side, rows: self.store.add_stamped(side.value, rows),
            segments=self.segments, deadline=deadline, clock=self.clock, sleep=self.sleep,
            row_of=item_row, details=self.tables,
        )  # fmt: skip

    def _reread(self, deadline: float, settle: dict[str, Any]) -> list[str]:
        """The differing keys again in both regions, compared again."""
        for keys in self.store.differing_keys(BATCH_GET * 10):
            for side in SIDES:
                try:
                    rows = batch_get(self.clients.client("dynamodb", side), self.table, keys,
                                     KEY_NAMES, deadline=deadline, clock=self.clock,
                                     sleep=self.sleep, row_of=item_row)  # fmt: skip
                except Exception as exc:
                    if is_connection_error(exc):
                        return [f"region {side.name} endpoint not reachable: {exc}"]
                    raise
                if rows is None:
                    return []  # out of time: judge what was read
                self.store.replace_stamped(side.value, keys, rows)
            self.store.recompare(keys)
            settle["keys_reread"] += len(keys)
        return []

    def staging_streams(self, deadline: float) -> list[str]:
        """Both staging streams read whole into the store."""
        reasons: list[str] = []
        read: dict[str, Any] = {}
        self.details["staging"] = {"stream": self.staging, "read": read}
        for side in SIDES:
            batch: list[tuple] = []

            def keep(record: Any, side: Side = side, batch: list[tuple] = batch) -> None:
                batch.append(parse_record(side.value, record))
                if len(batch) >= 5000:
                    self.store.add_staging(batch)
                    batch.clear()

            where = f"staging stream {self.staging} in region {side.name}"
            try:
                stats = read_stream(self.clients.client("kinesis", side), self.staging, keep,
                                    deadline=deadline, clock=self.clock, sleep=self.sleep)  # fmt: skip
            except EndpointUnreachable as exc:
                reasons.append(f"region {side.name}: {exc}")
                continue
            except Exception as exc:
                if error_code(exc) == "ResourceNotFoundException":
                    reasons.append(f"{where} ({self.config.region(side)}) does not exist")
                    continue
                raise
            self.store.add_staging(batch)
            read[DIRECTIONS[side.value]] = stats.to_json()
            if not stats.complete:
                reasons.append(f"{where} was not read to its end in time (unfinished shards: "
                               f"{', '.join(stats.unfinished)})")  # fmt: skip
        return reasons
