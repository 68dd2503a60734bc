"""The postgres-cdc producer against a fake connection: drawn transactions, the SQL, outcome
classification (ok, planned rollback, errors before and at COMMIT, a lost answer), reconnecting
with bounded backoff, and the ledger rows of every statement."""

from __future__ import annotations

import json
import random

import pytest

from loadgen.errors import OrchestrationError
from loadgen.keyspace import KeyspaceSpec
from loadgen.postgres_load import (
    FAIL,
    INTERRUPTED,
    OK,
    TXN,
    TXN_ROLLED_BACK,
    UNKNOWN,
    PlannedTxn,
    PostgresProducer,
    PostgresSettings,
    Statement,
    classify,
    database_url,
    interpret,
    qualified_table,
    statement_sql,
)
from loadgen.templates import compile_template
from loadgen.templates.compiler import DEFAULT_TEMPLATE
from replicator.core.putrecords import Backoff
from xrh.postgres_cdc import ROLLED_BACK


class FakeError(Exception):
    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class Result:
    def __init__(self, row):
        self.row = row

    def fetchone(self):
        return self.row


class FakeDb:
    """A table (key -> trace), transactions with rollback, xids, and injected failures:
    ``fail[(kind, n)] = (error, lose_connection, carried_out)`` for the n-th query of a kind
    (BEGIN, insert, update, delete, SELECT, COMMIT, ROLLBACK)."""

    def __init__(self) -> None:
        self.table: dict[int, str] = {}
        self.next_xid = 700
        self.calls: dict[str, int] = {}
        self.fail: dict[tuple[str, int], tuple[BaseException, bool, bool]] = {}
        self.connects = 0
        self.connect_errors = 0  # connects still to fail
        self.log: list[str] = []

    def connect(self):
        self.connects += 1
        if self.connect_errors:
            self.connect_errors -= 1
            raise FakeError("connection refused")
        return FakeConn(self)


class FakeConn:
    def __init__(self, db: FakeDb) -> None:
        self.db = db
        self.closed = False
        self.broken = False
        self.work: dict[int, str | None] | None = None
        self.xid: int | None = None

    def execute(self, query: str, params=None):
        assert not (self.closed or self.broken), "query on a dropped connection"
        kind = query.split()[0].lower()
        kind = {"begin": "BEGIN", "commit": "COMMIT", "rollback": "ROLLBACK",
                "select": "SELECT"}.get(kind, kind)  # fmt: skip
        db = self.db
        db.log.append(kind)
        db.calls[kind] = db.calls.get(kind, 0) + 1
        failure = db.fail.get((kind, db.calls[kind]))
        if failure is not None and not failure[2]:
            self._fail(failure)
        result = self._do(kind, params)
        if failure is not None:
            self._fail(failure)
        return result

    def _fail(self, failure) -> None:
        error, lose, _ = failure
        if lose:
            self.broken = True
        raise error

    def _xid(self) -> str:
        if self.xid is None:
            self.xid = self.db.next_xid
            self.db.next_xid += 1
        return str(self.xid)

    def _do(self, kind: str, params):
        db = self.db
        if kind == "BEGIN":
            self.work, self.xid = {}, None
            return Result(None)
        if kind in ("COMMIT", "ROLLBACK"):
            if kind == "COMMIT":
                for key, value in (self.work or {}).items():
                    if value is None:
                        db.table.pop(key, None)
                    else:
                        db.table[key] = value
            self.work = None
            return Result(None)
        if kind == "SELECT":
            return Result((self._xid(),))
        assert self.work is not None, "a statement outside a transaction"
        key = params["key"]
        view = {**db.table, **self.work}
        present = view.get(key) is not None
        if kind == "insert":
            self.work[key] = params["trace"]
            json.loads(params["payload"])
            return Result((not present, self._xid()))
        if not present:
            return Result(None)
        self.work[key] = params["trace"] if kind == "update" else None
        return Result((self._xid(),))

    def close(self) -> None:
        self.closed = True


class ListLedger:
    def __init__(self) -> None:
        self.rows: list[tuple] = []
        self.registered: set[str] = set()
        self.finals: set[str] = set()

    def register(self, producer):
        self.registered.add(producer)

    def write(self, rows):
        self.rows.extend(rows)

    def final(self, producer):
        self.finals.add(producer)


def row_dicts(ledger: ListLedger) -> list[dict]:
    from loadgen.ledger import COLUMNS

    return [dict(zip(COLUMNS, r, strict=True)) for r in ledger.rows]


def producer(db: FakeDb, *, statements=3, rollback=0.0, ops=(("insert", 5.0), ("update", 4.0),
             ("delete", 1.0)), keys=5, seed=1, reports=None, sleeps=None):  # fmt: skip
    rng = random.Random(seed)
    ledger = ListLedger()
    clock = iter(range(1_700_000_000, 1_800_000_000))
    settings = PostgresSettings(qualified_table("t-1"), "us-east-1", statements_per_txn=statements,
                                rollback_share=rollback, ops=ops,
                                backoff=Backoff(base=0.05, cap=2.0, max_attempts=4))  # fmt: skip
    renderer = compile_template(DEFAULT_TEMPLATE).bind(rng=rng, producer="run/lu1")
    report = (lambda *a: reports.append(a)) if reports is not None else None
    sleep = sleeps.append if sleeps is not None else (lambda s: None)
    p = PostgresProducer("run/lu1", renderer, KeyspaceSpec(size=keys).build(rng), db.connect,
                         ledger, settings, rng=rng, clock=lambda: float(next(clock)),
                         sleep=sleep, report=report)  # fmt: skip
    return p, ledger


def test_sql_and_what_a_statement_did():
    sql = statement_sql("public.t_1")
    assert sql["insert"].startswith("INSERT INTO public.t_1 (key, commit_timestamp, trace, payload)")
    assert "ON CONFLICT (key) DO UPDATE SET" in sql["insert"]
    assert "RETURNING (xmax = 0), pg_current_xact_id()::xid::text" in sql["insert"]
    assert sql["update"].endswith("WHERE key = %(key)s RETURNING pg_current_xact_id()::xid::text")
    assert sql["delete"] == ("DELETE FROM public.t_1 WHERE key = %(key)s "
                             "RETURNING pg_current_xact_id()::xid::text")  # fmt: skip
    assert interpret("insert", (True, 7)) == ("insert", 1, "7")
    assert interpret("insert", (False, 7)) == ("update", 1, "7")
    assert interpret("update", None) == ("update", 0, None)
    assert interpret("delete", ("9",)) == ("delete", 1, "9")
    assert qualified_table("xrh-AB12") == "public.xrh_ab12"


@pytest.mark.parametrize(
    ("sqlstate", "commit_sent", "lost", "status"),
    [
        ("40P01", False, False, FAIL),  # a deadlock: the transaction rolled back
        (None, False, True, FAIL),  # connection lost before COMMIT: never committed
        ("57P01", True, True, UNKNOWN),  # the server shut down during COMMIT
        (None, True, True, UNKNOWN),  # the answer to COMMIT lost
        (None, True, False, UNKNOWN),  # no server error, the connection says nothing
        ("40001", True, False, FAIL),  # the server answered COMMIT with an error
    ],
)
def test_classify(sqlstate, commit_sent, lost, status):
    assert classify(FakeError("x", sqlstate), commit_sent, lost) == status


def test_drawn_transactions_have_1_to_n_statements_and_consecutive_seqs():
    p, _ = producer(FakeDb(), statements=4, rollback=0.5, keys=3)
    p.add(200)
    txns = list(p._buffer)
    sizes = {len(t.statements) for t in txns}
    assert sizes == {1, 2, 3, 4}
    seqs = [s.seq for t in txns for s in t.statements]
    assert seqs == list(range(1, len(seqs) + 1))
    assert all(s.trace == f"run/lu1-{s.seq:09d}" for t in txns for s in t.statements)
    assert {s.op for t in txns for s in t.statements} == {"insert", "update", "delete"}
    assert {s.key for t in txns for s in t.statements} <= {0, 1, 2}
    assert 50 < sum(t.rollback for t in txns) < 150
    assert p.stats.records == len(seqs)
    only, _ = producer(FakeDb(), statements=1, ops=(("delete", 1.0),))
    only.add(20)
    assert {(len(t.statements), t.statements[0].op) for t in only._buffer} == {(1, "delete")}


def test_committed_transactions_ledger_what_each_statement_did():
    db = FakeDb()
    reports: list = []
    p, ledger = producer(db, statements=3, keys=4, reports=reports)
    for _ in range(30):
        p.add(1)
        p.flush()
    p.close()
    rows = row_dicts(ledger)
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    assert {r["status"] for r in rows} == {OK} and {r["error"] for r in rows} == {None}
    assert {(r["pipeline"], r["region"], r["target"]) for r in rows} == {
        ("postgres-cdc", "us-east-1", "public.t_1")}  # fmt: skip
    # replaying the ledger's ok statements gives the table
    table: dict[str, str] = {}
    for r in rows:
        assert r["partition_key"] == r["key"] and r["commit_ts"] is not None
        if r["rows"] == 0:
            assert r["op"] in ("update", "delete") and table.get(r["key"]) is None
            continue
        if r["op"] == "insert":
            assert r["key"] not in table
        elif r["op"] == "update":
            assert r["key"] in table
        table[r["key"]] = None if r["op"] == "delete" else r["trace"]
        if r["op"] == "delete":
            del table[r["key"]]
    assert table == {str(k): v for k, v in db.table.items()}
    # one xid per transaction, the statements of one transaction consecutive
    by_txn: dict[str, list[int]] = {}
    for r in rows:
        by_txn.setdefault(r["txn"], []).append(r["seq"])
    assert None not in by_txn and len(by_txn) == 30
    assert all(seqs == list(range(seqs[0], seqs[0] + len(seqs))) for seqs in by_txn.values())
    assert [r[0] for r in reports] == [TXN] * 30 and all(r[3] is None for r in reports)
    assert sum(r[2] for r in reports) == len(rows)  # response length: statements
    assert ledger.finals == {"run/lu1"} and db.connects == 1
    assert p.conn is None  # closed with the producer


def test_a_planned_rollback_is_fail_rolled_back_and_changes_nothing():
    db = FakeDb()
    reports: list = []
    p, ledger = producer(db, statements=2, rollback=1.0, ops=(("insert", 1.0),), reports=reports)
    p.add(1)
    p.flush()
    rows = row_dicts(ledger)
    assert {(r["status"], r["error"], r["op"], r["rows"]) for r in rows} == {
        (FAIL, ROLLED_BACK, "insert", 1)}  # fmt: skip
    assert rows[0]["txn"] is not None and db.table == {}
    assert db.log[-1] == "ROLLBACK" and "COMMIT" not in db.log
    assert reports[0][0] == TXN_ROLLED_BACK and reports[0][3] is None


def test_an_error_before_commit_fails_the_whole_transaction_and_keeps_the_connection():
    db = FakeDb()
    db.fail[("insert", 2)] = (FakeError("deadlock detected\nDETAIL: ...", "40P01"), False, False)
    reports: list = []
    p, ledger = producer(db, statements=1, ops=(("insert", 1.0),), reports=reports)
    # three inserts of keys 1, 2, 3 in one transaction; the second fails
    p._buffer.append(PlannedTxn(tuple(Statement(i, f"run/lu1-{i:09d}", "insert", i)
                                      for i in (1, 2, 3)), False))  # fmt: skip
    p._seq = 3
    p.flush()
    rows = row_dicts(ledger)
    assert [(r["status"], r["rows"], r["commit_ts"] is None) for r in rows] == [
        (FAIL, 1, False), (FAIL, None, True), (FAIL, None, True)]  # fmt: skip
    assert rows[1]["error"] == "FakeError 40P01: deadlock detected"
    assert db.log[-1] == "ROLLBACK" and db.table == {}
    assert p.conn is not None and db.connects == 1  # the connection is still good
    assert isinstance(reports[0][3], Exception) and reports[0][0] == TXN
    p.add(1)
    p.flush()
    assert row_dicts(ledger)[-1]["status"] == OK and db.connects == 1


def test_a_lost_answer_to_commit_is_unknown_and_the_next_transaction_reconnects():
    db = FakeDb()
    db.fail[("COMMIT", 1)] = (FakeError("server closed the connection"), True, True)
    p, ledger = producer(db, statements=2, ops=(("insert", 1.0),))
    p.add(1)
    p.flush()
    first = row_dicts(ledger)
    assert {r["status"] for r in first} == {UNKNOWN} and first[0]["txn"] is not None
    assert db.table  # it was carried out: unknown, never lost
    assert p.conn is None
    p.add(1)
    p.flush()
    assert row_dicts(ledger)[-1]["status"] == OK and db.connects == 2


@pytest.mark.parametrize(
    ("kind", "error", "lose", "kept"),
    [
        # the server answered COMMIT with an error over a live connection
        ("COMMIT", FakeError("could not serialize access", "40001"), False, True),
        # the connection was lost before COMMIT was sent
        ("insert", FakeError("terminating connection", "57P01"), True, False),
    ],
)
def test_these_errors_are_fail(kind, error, lose, kept):
    db = FakeDb()
    db.fail[(kind, 1)] = (error, lose, False)
    p, ledger = producer(db, statements=1, ops=(("insert", 1.0),))
    p.add(1)
    p.flush()
    assert row_dicts(ledger)[0]["status"] == FAIL and (p.conn is not None) == kept
    assert db.table == {}


def test_reconnecting_backs_off_and_is_bounded():
    db = FakeDb()
    sleeps: list[float] = []
    p, ledger = producer(db, statements=1, ops=(("insert", 1.0),), sleeps=sleeps)
    db.connect_errors = 2
    p.add(1)
    p.flush()
    assert row_dicts(ledger)[0]["status"] == OK and len(sleeps) == 2 and db.connects == 3
    assert all(0 <= s <= 2.0 for s in sleeps)
    db.connect_errors = 100
    p.conn.broken = True  # the server went away
    p.add(1)
    p.flush()
    last = row_dicts(ledger)[-1]
    assert last["status"] == FAIL and last["error"].startswith("could not connect: 4 attempts")
    assert last["txn"] is None and last["rows"] is None and len(sleeps) == 2 + 3


@pytest.mark.parametrize(("kind", "status"), [("insert", FAIL), ("COMMIT", UNKNOWN)])
def test_the_run_stopping_inside_a_transaction(kind, status):
    class Stop(BaseException):
        pass

    db = FakeDb()
    db.fail[(kind, 1)] = (Stop(), False, False)
    p, ledger = producer(db, statements=1, ops=(("insert", 1.0),))
    p.add(1)
    with pytest.raises(Stop):
        p.flush()
    assert [(r["status"], r["error"]) for r in row_dicts(ledger)] == [(status, INTERRUPTED)]
    assert p.interrupted and p.conn is None
    p.add(1)
    p.close()  # nothing more is sent: the drawn transaction is "not sent"
    rows = row_dicts(ledger)
    assert rows[-1]["status"] == FAIL and rows[-1]["error"].startswith("not sent")
    assert [r["seq"] for r in rows] == [1, 2] and ledger.finals == {"run/lu1"}


def test_the_database_url(tmp_path):
    assert database_url("postgresql://u:p@h/db", tmp_path) == "postgresql://u:p@h/db"
    with pytest.raises(OrchestrationError, match="postgres.json"):
        database_url(None, tmp_path)
    (tmp_path / "postgres.json").write_text(json.dumps({"url": "postgresql://x@127.0.0.1:5/p"}))
    assert database_url(None, tmp_path) == "postgresql://x@127.0.0.1:5/p"
