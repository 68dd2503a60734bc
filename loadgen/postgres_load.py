"""The ``postgres-cdc`` pipeline's producer: transactions of inserts, updates and deletes against
the source table, and one ledger row per statement once the transaction's outcome is known.

Plain Python (no locust, no psycopg at import): the connection is made by the ``connect``
callable passed in (:func:`psycopg_connector` in a run, a fake in the unit tests), and the
producer is driven by the other pipelines' loop (:func:`loadgen.producers.step`,
:class:`~loadgen.producers.ProducerLoop`) through their buffer
(:class:`loadgen.producer_base.BufferedProducer`) with room for one transaction: each turn the
pacer lets through draws one transaction (:meth:`PostgresProducer.add`) and runs it.

A transaction (:class:`PlannedTxn`) is 1..``--statements-per-txn`` statements (uniform), each an
operation drawn by ``--pg-ops`` on a key of the run's keyspace; a ``--rollback-share`` of them
end with ROLLBACK on purpose. Each statement's ``commit_timestamp`` is the clock when it runs
(epoch ms, as :mod:`xrh.contracts`), its ``trace`` the ledger trace (``<producer>-<seq>``) and its
``payload`` the run's template rendered for the key, trace and time. The SQL
(:func:`statement_sql`): an insert is ``INSERT ... ON CONFLICT (key) DO UPDATE ... RETURNING
(xmax = 0)`` (true: it inserted; false: it updated a row that was there), updates and deletes
return the key's row only when they changed it (``rows`` 0 or 1). Every statement also returns
``pg_current_xact_id()::xid::text``, the 32-bit xid pgoutput reports; a transaction whose
statements changed nothing asks for it once before its end.

Outcome (:func:`classify`), the ``status`` of every statement of the transaction:

- COMMIT acknowledged: ``ok``;
- ROLLBACK on purpose: ``fail`` with error :data:`xrh.postgres_cdc.ROLLED_BACK`;
- any error before COMMIT was sent (a statement's error, a deadlock, a serialization failure, a
  lost connection: PostgreSQL never commits a transaction whose COMMIT it did not get): ``fail``;
- COMMIT sent and an error the server answered with (the connection still up): ``fail``;
- COMMIT sent and the connection lost (or the run stopping) before its answer: ``unknown``.

A lost connection is dropped; the next transaction connects again with bounded backoff (a
database restart drill restarts the server under load); when no connection can be made the
transaction is ledgered ``fail`` ("could not connect") and the next one tries again.

Ledger rows (:mod:`xrh.postgres_cdc`): ``op`` what the statement did (an upsert that updated is
``update``; a statement that never ran: its planned operation), ``key``, ``commit_ts`` (None for a
statement that never ran), ``txn`` (the xid, None when unknown), ``rows`` (None for a statement
that never ran), consecutive ``seq`` in statement order, written once the outcome is known.
"""

from __future__ import annotations

import contextlib
import json
import random as _random
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from loadgen.keyspace import Keyspace
from loadgen.ledger import LedgerSink
from loadgen.postgres_sql import (  # noqa: F401  (re-exported: the producer's vocabulary)
    EPOCH,
    FAIL,
    INTERRUPTED,
    OK,
    TXN,
    TXN_ROLLED_BACK,
    UNKNOWN,
    XID,
    ConnectFailed,
    Connection,
    Cursor,
    PlannedTxn,
    PostgresSettings,
    Ran,
    Statement,
    TransactionFailed,
    TxnReport,
    classify,
    connection_lost,
    describe,
    interpret,
    qualified_table,
    statement_sql,
)
from loadgen.producer_base import BufferedProducer, LedgerRows
from loadgen.templates import Renderer
from xrh.postgres_cdc import (
    POSTGRES_FILE,
    ROLLED_BACK,
    partition_key,
)


class PostgresProducer(BufferedProducer[PlannedTxn]):
    """One producer of transactions (one Locust user, or one test loop), one connection."""

    def __init__(
        self,
        producer_id: str,
        renderer: Renderer,
        keyspace: Keyspace,
        connect: Callable[[], Connection],
        ledger: LedgerSink,
        settings: PostgresSettings,
        *,
        rng: _random.Random | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        report: TxnReport | None = None,
    ) -> None:
        """``rng``: the draws (statements, operations, rollbacks, backoff jitter);
        ``report``: called once per transaction (Locust's request event)."""
        super().__init__(producer_id, settings, ledger, clock)
        self._render = renderer.render
        self._keyspace = keyspace
        self._connect = connect
        self._rng = rng or _random.Random()
        self._sleep = sleep
        self._report = report
        self._sql = statement_sql(settings.table)
        self._ops = [op for op, _ in settings.ops]
        self._weights = [weight for _, weight in settings.ops]
        self._rows = LedgerRows(ledger)
        self._where = (settings.pipeline, settings.region, settings.table)
        self.conn: Connection | None = None
        self.transactions = 0

    # ----------------------------------------------------------------- drawing

    def add(self, count: int = 1) -> None:
        """Draw ``count`` transactions into the buffer (sends nothing)."""
        if count <= 0:
            return
        rng, prefix, statements = self._rng, self.id, 0
        for _ in range(count):
            n = rng.randint(1, self.settings.statements_per_txn)
            first = self._seq + 1
            self._seq += n
            planned = tuple(
                Statement(seq, f"{prefix}-{seq:09d}", rng.choices(self._ops, self._weights)[0],
                          self._keyspace.next_key())
                for seq in range(first, first + n)
            )  # fmt: skip
            rollback = rng.random() < self.settings.rollback_share
            self._buffer.append(PlannedTxn(planned, rollback))
            statements += n
        self._buffered_now(self._clock(), statements)

    # ----------------------------------------------------------------- running

    def flush(self) -> None:
        """Run every buffered transaction, in order; ledger each once its outcome is known."""
        if self.interrupted:
            return
        while self._buffer:
            txn = self._buffer.pop(0)
            if not self._buffer:
                self._oldest = None
            self._run(txn)

    def _run(self, txn: PlannedTxn) -> None:
        started = self._clock()
        ran: list[Ran] = []
        xid: str | None = None
        commit_sent = False
        try:
            conn = self._connection()
            conn.execute("BEGIN")
            for statement in txn.statements:
                now = self._clock()
                now_ms = int(now * 1000)
                params = {"key": statement.key, "ts": EPOCH + timedelta(milliseconds=now_ms),
                          "trace": statement.trace, "payload": None}  # fmt: skip
                if statement.op != "delete":
                    params["payload"] = self._render(statement.key, statement.trace, now_ms)
                op, rows, returned = interpret(
                    statement.op, conn.execute(self._sql[statement.op], params).fetchone()
                )
                xid = xid or returned
                ran.append(Ran(op, rows, now_ms, now))
            if xid is None:
                row = conn.execute(f"SELECT {XID}").fetchone()
                xid = None if row is None else str(row[0])
            if txn.rollback:
                conn.execute("ROLLBACK")
                status, error = FAIL, ROLLED_BACK
            else:
                commit_sent = True
                conn.execute("COMMIT")
                status, error = OK, None
        except ConnectFailed as exc:
            status, error = FAIL, f"could not connect: {exc}"
        except Exception as exc:  # noqa: BLE001 - every error is the transaction's outcome
            status, error = classify(exc, commit_sent, connection_lost(self.conn)), describe(exc)
            self._after_error(commit_sent)
        except BaseException:  # the run stopping (GreenletExit, Ctrl-C) inside the transaction
            self.interrupted = True
            self._drop()  # closing the connection rolls back what did not commit
            self._record(txn, ran, xid, UNKNOWN if commit_sent else FAIL, INTERRUPTED, started)
            raise
        self._record(txn, ran, xid, status, error, started)

    def _connection(self) -> Connection:
        """The open connection, or a new one (bounded backoff); ConnectFailed if none."""
        if not connection_lost(self.conn):
            return self.conn  # type: ignore[return-value]
        self._drop()
        backoff, failures = self.settings.backoff, 0
        while True:
            try:
                self.conn = self._connect()
                return self.conn
            except Exception as exc:  # noqa: BLE001 - retried, then the transaction fails
                failures += 1
                if failures >= backoff.max_attempts:
                    raise ConnectFailed(f"{failures} attempts, the last: {describe(exc)}") from exc
                self._sleep(backoff.delay(failures, self._rng.random()))

    def _after_error(self, commit_sent: bool) -> None:
        """End the failed transaction on a connection still up; drop one that is not."""
        if connection_lost(self.conn):
            self._drop()
            return
        if not commit_sent:
            try:
                self.conn.execute("ROLLBACK")  # type: ignore[union-attr]
            except Exception:  # noqa: BLE001 - a connection that cannot roll back is dropped
                self._drop()

    def _drop(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # it is gone either way
                conn.close()

    # ----------------------------------------------------------------- the ledger

    def _record(self, txn: PlannedTxn, ran: list[Ran], xid: str | None, status: str,
                error: str | None, started: float) -> None:  # fmt: skip
        done = self._clock()
        completed = int(done * 1000)
        for index, statement in enumerate(txn.statements):
            result = ran[index] if index < len(ran) else None
            key = str(statement.key)
            self._rows.pending.append(
                (statement.trace, self.id, statement.seq, 1, *self._where,
                 partition_key((statement.key,)), key,
                 result.commit_ts if result else None, result.op if result else statement.op,
                 status, None, None, int((result.invoked if result else started) * 1000),
                 completed, error, xid, result.rows if result else None)
            )  # fmt: skip
        self._rows.emit()
        n = len(txn.statements)
        self.transactions += 1
        self.stats.requests += 1
        if status == OK:
            self.stats.acknowledged += n
        elif status == UNKNOWN:
            self.stats.unknown += n
        else:
            self.stats.failed += n
        if self._report is not None:
            planned = txn.rollback and error == ROLLED_BACK
            exc = None if status == OK or planned else TransactionFailed(f"{status}: {error}")
            self._report(TXN_ROLLED_BACK if planned else TXN, (done - started) * 1000, n, exc)

    def _not_sent(self, buffered: list[PlannedTxn], reason: str) -> None:
        now = self._clock()
        for txn in buffered:
            self._record(txn, [], None, FAIL, reason, now)

    def close(self) -> None:
        """Run what is drawn, tell the ledger the final batch is in, close the connection."""
        try:
            super().close()
        finally:
            self._drop()


def psycopg_connector(url: str, *, connect_timeout_s: int = 5,
                      statement_timeout_ms: int = 30_000) -> Callable[[], Connection]:  # fmt: skip
    """Connections to ``url`` in autocommit mode (the producer sends BEGIN and COMMIT itself),
    with a connect timeout, a statement timeout and TCP keepalives, so a hung server or a
    dropped network ends the transaction instead of the run. Imports psycopg on first use
    (under Locust, after gevent patched the standard library: psycopg then waits
    cooperatively)."""

    def connect() -> Connection:
        import psycopg

        return psycopg.connect(  # type: ignore[return-value]
            url, autocommit=True, connect_timeout=connect_timeout_s,
            options=f"-c statement_timeout={statement_timeout_ms}", application_name="xrh-load",
            keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=3,
        )  # fmt: skip

    return connect


def database_url(explicit: str | None, run_path: Path) -> str:
    """The database of the run: ``--postgres-url`` (with its password), else the run's
    ``postgres.json`` (the throwaway server the orchestrator started)."""
    if explicit:
        return explicit
    path = Path(run_path) / POSTGRES_FILE
    try:
        return str(json.loads(path.read_text())["url"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        from loadgen.errors import OrchestrationError

        raise OrchestrationError(f"no database for the load: {path} unreadable ({exc})") from None


def postgres_producer(context: Any, report: TxnReport | None = None) -> tuple[PostgresProducer, Any]:
    """The run's next producer of transactions and its pacer (``--rate-per-user``
    transactions per second), from a :class:`loadgen.context.LoadContext`: named and seeded as
    that context names and seeds its own producers, kept in ``context.producers`` (so
    ``close_all`` sends its final batch), connected to the run's database."""
    from loadgen.context import producer_name
    from loadgen.producers import Pacer

    config, options = context.config, context.options
    index = len(context.producers) + 1
    producer_id = producer_name(context.run_id, context.node, index)
    local = f"{context.node}u{index}"  # seeded by the node-local name, as LoadContext does
    rng = _random.Random(f"{options.seed}:{local}") if options.seed is not None else _random.Random()
    pg = options.postgres
    settings = PostgresSettings(
        qualified_table(config.prefix), config.region_a, statements_per_txn=pg.statements_per_txn,
        rollback_share=pg.rollback_share, ops=pg.ops,
    )  # fmt: skip
    url = database_url(pg.url, Path(config.runs_dir) / context.run_id)
    producer = PostgresProducer(
        producer_id, options.template.bind(rng=rng, producer=producer_id),
        options.keyspace.build(rng), psycopg_connector(url), context.ledger, settings, rng=rng,
        report=report,
    )  # fmt: skip
    context.producers.append(producer)
    return producer, Pacer(options.rate_per_user)
