"""The ledger: one row per write attempt, the ground truth verify holds the regions against.

One writer per ledger (DESIGN.md, "Ledger"): :class:`LedgerWriter` owns the SQLite connection in
one thread and writes rows in batched transactions. Producers register themselves and declare
their final batch; the writer marks ``ledger_meta.complete = '1'`` only when it is closed
cleanly after every registered producer's final batch. In a distributed run each worker has a
:class:`LedgerForwarder` that ships rows to the master (``runner.send_message``), where a
:class:`LedgerCollector` feeds them to the one writer and tracks which workers sent their final
batch.

Rows travel as plain tuples (lists over the wire) in :data:`COLUMNS` order, which is the
column order of :data:`xrh.contracts.LEDGER_DDL`.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from loadgen.errors import LedgerError
from xrh.contracts import LEDGER_COMPLETE_KEY, LEDGER_DDL


class LedgerRow(NamedTuple):
    """One attempt (a tuple, so it crosses to the master as a plain list)."""

    trace: str
    producer: str
    seq: int
    attempt: int
    pipeline: str
    region: str
    target: str
    partition_key: str
    key: str | None
    commit_ts: int | None
    op: str
    status: str  # xrh.contracts.LedgerStatus value
    shard_id: str | None
    sequence_number: str | None
    invoked_at: int
    completed_at: int | None
    error: str | None
    txn: str | None = None  # postgres-cdc: the statement's transaction id
    rows: int | None = None  # postgres-cdc: rows the statement changed


COLUMNS = LedgerRow._fields
_INSERT = f"INSERT INTO ledger ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
#: The stream and table producers' rows stop before the postgres-cdc columns (txn, rows).
_BASE_COLUMNS = COLUMNS[: COLUMNS.index("txn")]
_INSERT_BASE = (
    f"INSERT INTO ledger ({', '.join(_BASE_COLUMNS)}) VALUES ({', '.join('?' * len(_BASE_COLUMNS))})"
)


class LedgerSink(Protocol):
    """What a producer writes to: the local writer or a forwarder to the master."""

    def register(self, producer: str) -> None: ...

    def write(self, rows: Sequence[tuple]) -> None: ...

    def final(self, producer: str) -> None: ...


@dataclass(frozen=True, slots=True)
class LedgerSummary:
    path: Path
    rows: int
    by_status: dict[str, int]
    complete: bool
    missing: tuple[str, ...]  # producers registered without a final batch


class LedgerWriter:
    """The single writer: a thread that batches rows into SQLite transactions."""

    def __init__(self, path: Path, *, batch_rows: int = 5000) -> None:
        self.path = Path(path)
        self._batch_rows = batch_rows
        self._queue: queue.Queue[Sequence[tuple] | None] = queue.Queue()
        self._registered: set[str] = set()
        self._finals: set[str] = set()
        self._counts: Counter[str] = Counter()
        self._rows = 0
        self._error: BaseException | None = None
        self._closed = False
        self._lock = threading.Lock()
        db = sqlite3.connect(self.path)
        try:
            db.executescript(LEDGER_DDL)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "INSERT OR REPLACE INTO ledger_meta (name, value) VALUES (?, '0')",
                (LEDGER_COMPLETE_KEY,),
            )
            db.commit()
        finally:
            db.close()
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self._thread.start()

    # --------------------------------------------------------------- producer side

    def register(self, producer: str) -> None:
        with self._lock:
            self._registered.add(producer)

    def write(self, rows: Sequence[tuple]) -> None:
        if rows:
            if self._closed:
                raise LedgerError(f"ledger {self.path} is closed; {len(rows)} rows not written")
            self._queue.put(rows)

    def final(self, producer: str) -> None:
        with self._lock:
            self._registered.add(producer)
            self._finals.add(producer)

    @property
    def counts(self) -> dict[str, int]:
        """Rows written so far, by status (for live progress)."""
        return dict(self._counts)

    # --------------------------------------------------------------- the thread

    def _run(self) -> None:
        db = sqlite3.connect(self.path, check_same_thread=False)
        db.execute("PRAGMA synchronous=NORMAL")
        try:
            done = False
            while not done:
                batch: list[tuple] = []
                item = self._queue.get()
                while True:
                    if item is None:
                        done = True
                        break
                    batch.extend(item)
                    if len(batch) >= self._batch_rows:
                        break
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                if batch:
                    base = [row for row in batch if len(row) == len(_BASE_COLUMNS)]
                    full = [row for row in batch if len(row) != len(_BASE_COLUMNS)] if len(
                        base) != len(batch) else []  # fmt: skip
                    with db:
                        db.executemany(_INSERT_BASE, base)
                        if full:
                            db.executemany(_INSERT, full)
                    self._rows += len(batch)
                    self._counts.update(row[11] for row in batch)
        except BaseException as exc:  # noqa: BLE001 - reported by close()
            self._error = exc
        finally:
            db.close()

    def close(self, *, clean: bool = True, timeout: float = 60.0) -> LedgerSummary:
        """Flush and stop; mark complete if ``clean`` and every producer sent its final batch."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise LedgerError(f"ledger {self.path}: writer did not finish within {timeout:.0f}s")
        if self._error is not None:
            raise LedgerError(f"ledger {self.path}: write failed: {self._error}") from self._error
        missing = tuple(sorted(self._registered - self._finals))
        complete = clean and not missing
        if complete:
            db = sqlite3.connect(self.path)
            try:
                with db:
                    db.execute(
                        "INSERT OR REPLACE INTO ledger_meta (name, value) VALUES (?, '1')",
                        (LEDGER_COMPLETE_KEY,),
                    )
            finally:
                db.close()
        return LedgerSummary(self.path, self._rows, dict(self._counts), complete, missing)


# ------------------------------------------------------------------- distributed runs

MESSAGE_TYPE = "xrh_ledger"


class LedgerForwarder:
    """Worker side: buffers rows and sends them to the master in messages.

    ``send(data)`` is ``lambda d: runner.send_message(MESSAGE_TYPE, d)``; :meth:`flush` is
    called by the owner periodically, :meth:`close` once all of this worker's producers are
    done, with the final flag that the master waits for.
    """

    def __init__(
        self, worker: str, send: Callable[[dict[str, Any]], None], *, max_rows: int = 2000
    ):
        self.worker = worker
        self._send = send
        self._max_rows = max_rows
        self._buffer: list[tuple] = []
        self._producers: set[str] = set()
        self._finals: set[str] = set()
        self.sent_rows = 0

    def register(self, producer: str) -> None:
        self._producers.add(producer)

    def write(self, rows: Sequence[tuple]) -> None:
        self._buffer.extend(rows)
        if len(self._buffer) >= self._max_rows:
            self.flush()

    def final(self, producer: str) -> None:
        self._producers.add(producer)
        self._finals.add(producer)

    def flush(self, *, final: bool = False) -> None:
        if not self._buffer and not final:
            return
        rows, self._buffer = self._buffer, []
        data: dict[str, Any] = {"worker": self.worker, "rows": [list(r) for r in rows]}
        if final:
            data["final"] = True
            data["producers"] = sorted(self._producers)
            data["finals"] = sorted(self._finals)
            data["total_rows"] = self.sent_rows + len(rows)
        self._send(data)
        self.sent_rows += len(rows)

    def close(self) -> None:
        self.flush(final=True)


@dataclass
class LedgerCollector:
    """Master side: writes every worker's rows and knows when all final batches arrived."""

    writer: LedgerWriter
    expected: set[str] = field(default_factory=set)
    finished: set[str] = field(default_factory=set)
    received_rows: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def expect(self, workers: Iterable[str]) -> None:
        self.expected.update(workers)

    def on_message(self, data: dict[str, Any]) -> None:
        worker = str(data.get("worker"))
        rows = [tuple(r) for r in data.get("rows") or ()]
        self.writer.write(rows)
        self.received_rows[worker] += len(rows)
        if data.get("final"):
            for producer in data.get("producers") or ():
                self.writer.register(producer)
            for producer in data.get("finals") or ():
                self.writer.final(producer)
            total = data.get("total_rows")
            if total is not None and total != self.received_rows[worker]:
                self.problems.append(
                    f"worker {worker} sent {total} rows but the master received "
                    f"{self.received_rows[worker]}"
                )
            else:
                self.finished.add(worker)

    @property
    def missing(self) -> set[str]:
        return self.expected - self.finished

    def wait(
        self,
        timeout: float,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> bool:
        """Wait (bounded) for every expected worker's final batch; True when all arrived."""
        deadline = clock() + timeout
        while self.missing and clock() < deadline:
            sleep(0.1)
        return not self.missing and not self.problems
