"""Each region's ``{prefix}-items`` against the fold, with the table pipelines' machinery.

Per region one :class:`~verify.tables.store.TableStore` (``verify-items-a.sqlite``,
``verify-items-b.sqlite`` in the run directory) holds the fold as its side ``a`` and the
region's table as its side ``b``, so the comparison is the table pipelines' own: both tables
scanned at once by parallel segments (:func:`verify.table_reader.scan_table`), chunk digests
compared, keys compared only inside differing chunks. Items go in through
:func:`verify.actions.items.table_row` (bookkeeping attributes left out, numbers normalised).

Settling (``--settle-seconds``): the lazy consumer may still be applying the log when verify
starts. While keys differ, verify re-reads just those keys in their region (BatchGetItem,
consistent reads, :func:`verify.tables.collect.batch_get`) and compares them again, for as long
as the number of differing keys falls; it gives up after ``settle_s`` without progress or near
the deadline (:func:`verify.collect.settle_keys`). Only then is a difference judged.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from verify.actions.items import KEY_NAMES, table_row
from verify.actions.store import ActionStore
from verify.collect import SETTLE_POLL_S, settle_keys
from verify.kinesis_reader import is_connection_error
from verify.tables.collect import BATCH_GET, batch_get, scan_both_regions
from verify.tables.store import TableStore
from xrh.config import HarnessConfig, Side

SIDES = (Side.A, Side.B)
EXPECTED, FOUND = "a", "b"  # the TableStore sides: the fold, the region's table


def store_path(run_path: Path, side: Side) -> Path:
    return Path(run_path) / f"verify-items-{side.value}.sqlite"


def open_stores(run_path: Path | None, fold: ActionStore) -> dict[Side, TableStore]:
    """A fresh comparison store per region, each holding the fold as its expected side
    (``run_path`` None: in memory, for tests)."""
    stores = {}
    for side in SIDES:
        path = ":memory:" if run_path is None else store_path(run_path, side)
        stores[side] = TableStore(path)
        for rows in fold.fold_rows():
            stores[side].add_items(EXPECTED, rows)
    return stores


class TableComparison:
    """Reads both regions' tables into their stores, compares, settles; :meth:`run` returns
    the reasons the evidence is incomplete (empty when both tables were read)."""

    def __init__(
        self, stores: dict[Side, TableStore], clients: Any, config: HarnessConfig, table: str,
        details: dict[str, Any], *, segments: int = 4,
        clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
        poll_s: float = SETTLE_POLL_S,
    ) -> None:  # fmt: skip
        self.stores, self.clients, self.config, self.table = stores, clients, config, table
        self.details, self.segments = details, segments
        self.clock, self.sleep, self.poll_s = clock, sleep, poll_s
        self.tables: dict[str, dict[str, Any]] = {
            side.name: {"table": table, "region": config.region(side)} for side in SIDES
        }
        details["tables"] = self.tables

    def run(self, timeout_s: float, settle_s: float) -> list[str]:
        deadline = self.clock() + timeout_s
        timings = self.details.setdefault("timings_s", {})
        t0 = time.perf_counter()
        reasons = self._scan(deadline)
        timings["scan"] = round(time.perf_counter() - t0, 3)
        if reasons:
            return reasons
        t1 = time.perf_counter()
        for side, store in self.stores.items():
            compared = store.compare()
            self.tables[side.name].update(
                items=store.count(FOUND), expected_items=store.count(EXPECTED),
                chunks={"chunks": compared["chunks"], "compared": compared["chunks_compared"],
                        "differing": compared["chunks_differing"],
                        "items_compared_per_key": compared["items_compared_per_key"]},
                differing_after_first_compare=compared["differing_keys"],
            )  # fmt: skip
        timings["compare"] = round(time.perf_counter() - t1, 3)
        t2 = time.perf_counter()
        reasons = self._settle(deadline, timeout_s, settle_s)
        timings["settle"] = round(time.perf_counter() - t2, 3)
        for side, store in self.stores.items():  # the items as judged, re-reads included
            self.tables[side.name].update(
                items=store.count(FOUND), differing_after_settle=store.differing()
            )
        return reasons

    def _scan(self, deadline: float) -> list[str]:
        return scan_both_regions(
            self.clients, self.config, self.table, KEY_NAMES, lambda side, rows: self.stores[side].add_items(FOUND, rows),
            segments=self.segments, deadline=deadline, clock=self.clock, sleep=self.sleep,
            row_of=table_row, details=self.tables,
        )  # fmt: skip

    def _differing(self) -> int:
        return sum(store.differing() for store in self.stores.values())

    def _settle(self, deadline: float, timeout_s: float, settle_s: float) -> list[str]:
        differing = self._differing()
        settle: dict[str, Any] = {"settle_seconds": settle_s, "passes": 0, "waited_s": 0.0,
                                  "differing_after_first_compare": differing,
                                  "keys_reread": 0}  # fmt: skip
        self.details["settle"] = settle
        settle_deadline = deadline - min(2.0, 0.1 * timeout_s)
        return settle_keys(
            settle, self._differing, lambda: self._reread(settle_deadline, settle),
            settle_s=settle_s, settle_deadline=settle_deadline, poll_s=self.poll_s,
            clock=self.clock, sleep=self.sleep,
        )  # fmt: skip

    def _reread(self, deadline: float, settle: dict[str, Any]) -> list[str]:
        """The differing keys of each region again, compared again."""
        for side, store in self.stores.items():
            api = self.clients.client("dynamodb", side)
            for keys in store.differing_keys(BATCH_GET * 10):
                try:
                    rows = batch_get(api, self.table, keys, KEY_NAMES, deadline=deadline,
                                     clock=self.clock, sleep=self.sleep,
                                     row_of=table_row)  # fmt: skip
                except Exception as exc:
                    if is_connection_error(exc):
                        return [f"region {side.name} endpoint not reachable: {exc}"]
                    raise
                if rows is None:
                    return []  # out of time: judge what was read
                store.replace_items(FOUND, keys, rows)
                store.recompare(keys)
                settle["keys_reread"] += len(keys)
        return []
