"""postgres-cdc checks over fabricated ledgers, streams and tables: a valid run passes, and each
planted fault is caught with an example a person can follow."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from verify.cdc.checks import judge
from verify.cdc.records import Names, normal_body
from verify.cdc.store import CdcStore
from verify.model import StreamRecord
from verify.reconcile import reconcile
from xrh import postgres_cdc as pc
from xrh.contracts import LEDGER_DDL

RUN = "20260101T000000Z-abcdef"
PREFIX = "xrh-t1"
TABLE = pc.table_name(PREFIX)
T0 = datetime(2024, 11, 24, 10, 0, tzinfo=UTC)  # before any verify: all arrived


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Cdc:
    """A fabricated run: ledger statements, the change records capture would put in A, the
    copies in B, and the table's final rows."""

    def __init__(self) -> None:
        self.stmts: list[tuple] = []
        self.a: list[StreamRecord] = []
        self.table: dict[int, dict] = {}
        self.seq = 0
        self.clock = T0
        self.positions: dict[str, int] = {}

    def txn(self, xid: int, status: str, *ops: tuple, emit: bool | None = None) -> list[bytes]:
        """Statements (op, key) of one transaction; committed (and, if ``emit``, unknown ones)
        put their change records in A and their rows in the table."""
        self.clock += timedelta(milliseconds=7, microseconds=123)
        commit = self.clock
        emit = status == "ok" if emit is None else emit
        made = []
        for op, key in ops:
            self.seq += 1
            trace = f"{RUN}/p0-{self.seq:09d}"
            self.stmts.append((trace, f"{RUN}/p0", self.seq, str(xid), str(key), op, status, 1,
                               int(commit.timestamp() * 1000)))  # fmt: skip
            row = {pc.KEY_COLUMN: key, pc.COMMIT_COLUMN: str(commit).replace("+00:00", "+00"),
                   pc.TRACE_COLUMN: trace, pc.PAYLOAD_COLUMN: json.dumps({"v": self.seq})}  # fmt: skip
            data = {pc.KEY_COLUMN: key} if op == "delete" else row
            record = pc.encode(pc.change_record(data=data, operation=op, commit_time=iso(commit),
                                                schema=pc.SCHEMA, table=TABLE,
                                                transaction_id=xid))  # fmt: skip
            made.append(record)
            if emit:
                self.put(record, key)
                if op == "delete":
                    self.table.pop(key, None)
                else:
                    self.table[key] = {**row, pc.PAYLOAD_COLUMN: {"v": self.seq}}
        return made

    def put(self, data: bytes, key: int) -> None:
        shard = f"shardId-{key % 2:012d}"
        self.positions[shard] = self.positions.get(shard, 0) + 1
        arrival = int(self.clock.timestamp() * 1000) + 5
        self.a.append(StreamRecord(shard, 0, str(self.positions[shard]), str(key), data, arrival))

    def copies(self, lag_ms: int = 40) -> list[StreamRecord]:
        return [StreamRecord(r.shard_id, 0, str(100 + int(r.sequence_number)), r.partition_key,
                             r.data, r.arrival_ms + lag_ms) for r in self.a]  # fmt: skip

    def valid(self) -> Cdc:
        self.txn(700, "ok", ("insert", 1), ("insert", 2), ("insert", 3))
        self.txn(701, "ok", ("update", 1), ("delete", 2))
        self.txn(702, "fail", ("update", 3))
        self.txn(703, "ok", ("update", 3), ("update", 1), ("insert", 2))
        self.txn(704, "unknown", ("update", 2), ("insert", 4), emit=True)
        self.txn(705, "unknown", ("update", 3), emit=False)
        return self


def judged(tmp_path, cdc: Cdc, b: list[StreamRecord] | None = None, table=None, claims=(),
           notes: list[str] | None = None, separate: bool = True):  # fmt: skip
    store = CdcStore(tmp_path / "verify.sqlite", names=Names.of(PREFIX), own_prefix=f"{RUN}/")
    store.add_statements(cdc.stmts)
    if separate:
        (notes if notes is not None else []).extend(store.separate_reused_xids())
    for record in cdc.a:
        store.add_read("a", record)
    for record in cdc.copies() if b is None else b:
        store.add_read("b", record)
    rows = cdc.table if table is None else table
    store.add_table_rows((str(k), normal_body(v), v[pc.TRACE_COLUMN], 1) for k, v in rows.items())
    for claimed_at, watermark in claims:
        store.add_claim(claimed_at, watermark, "r1", "claims.jsonl")
    store.finalize()
    rec = reconcile(store.db)
    judgement = judge(store.db, rec, has_ledger=True, table_read=True)
    store.close()
    return {k: a for k, a in judgement.anomalies.items()}


def counts(anomalies) -> dict[str, int]:
    return {k: a.count for k, a in anomalies.items() if a.count}


def test_a_valid_run_passes(tmp_path):
    found = judged(tmp_path, Cdc().valid())
    assert counts(found) == {}


def test_a_change_lost_in_b_only(tmp_path):
    cdc = Cdc().valid()
    b = [r for r in cdc.copies() if b'"operation":"delete"' not in r.data]
    found = judged(tmp_path, cdc, b)
    assert found["lost"].count == 1
    example = found["lost"].examples[0]
    assert (example["txn"], example["key"], example["op"]) == ("701", "2", "delete")
    assert example["source_shard"] and example["source_sequence_number"]
    # txn 703 inserts key 2 again: B's fold is still the table's
    assert counts(found) == {"lost": 1, "incomplete_transaction": 1}  # txn 701 in part


def test_a_committed_change_missing_from_both_streams(tmp_path):
    cdc = Cdc().valid()
    records = cdc.txn(706, "ok", ("update", 4))
    cdc.a = [r for r in cdc.a if r.data != records[0]]
    found = judged(tmp_path, cdc)
    lost = found["lost"]
    assert lost.details["committed_missing_from_a"] == 1
    assert lost.examples[0]["txn"] == "706" and lost.examples[0]["in_b"] is False


def test_a_reordered_pair_in_a_stream(tmp_path):
    cdc = Cdc().valid()
    # swap the two changes of key 1 (txn 701's update and txn 703's update) in A and B
    idx = [i for i, r in enumerate(cdc.a) if r.partition_key == "1"]
    first, second = idx[1], idx[2]
    x, y = cdc.a[first], cdc.a[second]
    cdc.a[first] = StreamRecord(x.shard_id, 0, x.sequence_number, "1", y.data, x.arrival_ms)
    cdc.a[second] = StreamRecord(y.shard_id, 0, y.sequence_number, "1", x.data, y.arrival_ms)
    found = judged(tmp_path, cdc)
    reordered = found["reordered"]
    assert reordered.details["within_a_stream"] == 2  # A and B each hold the inversion
    example = reordered.examples[0]
    assert example["key"] == "1" and example["record"]["txn"] == "701"
    assert example["after"]["txn"] == "703"
    assert example["record"]["sequence_number"] and example["after"]["sequence_number"]
    assert found["diverged"].count == 2  # both streams fold key 1 to txn 701's row


def test_b_out_of_a_order(tmp_path):
    cdc = Cdc().valid()
    b = cdc.copies()
    idx = [i for i, r in enumerate(b) if r.partition_key == "3"]
    i, j = idx[0], idx[1]
    b[i], b[j] = (StreamRecord(b[i].shard_id, 0, b[i].sequence_number, "3", b[j].data,
                               b[i].arrival_ms),
                  StreamRecord(b[j].shard_id, 0, b[j].sequence_number, "3", b[i].data,
                               b[j].arrival_ms))  # fmt: skip
    found = judged(tmp_path, cdc, b)
    assert found["reordered"].details["b_against_a"] >= 1
    assert found["reordered"].details["within_a_stream"] == 1  # B's own commit order broken


def test_a_phantom_from_a_rolled_back_transaction(tmp_path):
    cdc = Cdc().valid()
    rolled = cdc.txn(707, "fail", ("update", 1), emit=False)
    cdc.put(rolled[0], 1)
    found = judged(tmp_path, cdc)
    phantom = found["phantom"]
    assert phantom.count == 1 and phantom.details == {"rolled_back": 1}
    example = phantom.examples[0]
    assert example["txn"] == "707" and example["key"] == "1" and "rolled back" in (
        example["explanation"])  # fmt: skip
    assert example["a_shard"] and example["b_sequence_number"]


def test_an_unexplained_delete_is_phantom(tmp_path):
    cdc = Cdc().valid()
    record = pc.encode(pc.change_record(data={"key": 9}, operation="delete",
                                        commit_time=iso(cdc.clock), schema="public",
                                        table=TABLE, transaction_id=999))  # fmt: skip
    cdc.put(record, 9)
    found = judged(tmp_path, cdc)
    assert found["phantom"].details == {"unexplained": 1}


def test_an_incomplete_transaction(tmp_path):
    cdc = Cdc().valid()
    records = cdc.txn(708, "ok", ("update", 1), ("update", 3))
    cdc.a = [r for r in cdc.a if r.data != records[1]]
    found = judged(tmp_path, cdc)
    incomplete = found["incomplete_transaction"]
    assert incomplete.count == 1
    example = incomplete.examples[0]
    assert example["txn"] == "708" and example["missing_keys"] == ["3"]
    assert example["missing_statements"][0]["trace"].endswith("-000000014")
    assert found["lost"].count == 1


def test_unknown_transactions_all_or_nothing(tmp_path):
    cdc = Cdc().valid()
    records = cdc.txn(709, "unknown", ("update", 1), ("update", 3), emit=False)
    cdc.put(records[0], 1)  # only half of it appears
    found = judged(tmp_path, cdc, table={**cdc.table})
    assert found["incomplete_transaction"].count == 1
    assert found["incomplete_transaction"].examples[0]["status"] == "unknown"
    assert found["lost"].count == 0 and found["phantom"].count == 0


def test_a_diverged_fold(tmp_path):
    cdc = Cdc().valid()
    table = {**cdc.table, 3: {**cdc.table[3], pc.PAYLOAD_COLUMN: {"v": -1}}}
    found = judged(tmp_path, cdc, table=table)
    diverged = found["diverged"]
    assert diverged.count == 2  # key 3 in both streams
    example = diverged.examples[0]
    assert example["key"] == "3" and example["expected"]["payload"] == {"v": -1}
    assert example["found"]["payload"] != {"v": -1}
    assert example["last_change"]["txn"] == "703"


def test_a_table_row_no_stream_explains(tmp_path):
    cdc = Cdc().valid()
    table = {**cdc.table, 2: None}
    del table[2]
    found = judged(tmp_path, cdc, table=table)
    assert found["diverged"].count == 2
    assert found["diverged"].examples[0]["expected"] is None


def test_a_malformed_record(tmp_path):
    cdc = Cdc().valid()
    bad = json.loads(cdc.a[0].data)
    del bad["metadata"]["transaction-id"]
    cdc.put(json.dumps(bad).encode(), 5)
    found = judged(tmp_path, cdc)
    malformed = found["malformed"]
    assert malformed.count == 1  # its copy in B is the same record
    assert "transaction-id" in malformed.examples[0]["error"]
    assert malformed.examples[0]["shard"] and malformed.examples[0]["sequence_number"]


def test_a_claim_ahead_of_b(tmp_path):
    cdc = Cdc().valid()
    b = cdc.copies()[:-3]  # B never got txn 704's changes and the last of 703
    last = cdc.a[-1]
    claims = [(last.arrival_ms + 1, int(cdc.clock.timestamp() * 1000) + 1)]
    found = judged(tmp_path, cdc, b, claims=claims)
    ahead = found["checkpoint_ahead"]
    assert ahead.count == 1
    assert ahead.examples[0]["trace"] and ahead.examples[0]["record"]["source_shard"]


def test_resent_transactions_are_duplicates_not_reorders(tmp_path):
    cdc = Cdc().valid()
    again = [r.data for r in cdc.a[3:]]  # capture restarted: everything from txn 701 again
    for data in again:
        cdc.put(data, json.loads(data)["data"]["key"])
    found = judged(tmp_path, cdc)
    assert counts(found) == {"duplicated": len(again)}


def test_foreign_tables_and_runs_are_counted_not_judged(tmp_path):
    cdc = Cdc().valid()
    other = pc.encode(pc.change_record(data={"key": 1}, operation="delete",
                                       commit_time=iso(cdc.clock), schema="public",
                                       table="someone_else", transaction_id=1))  # fmt: skip
    cdc.put(other, 1)
    found = judged(tmp_path, cdc)
    assert counts(found) == {}


@pytest.mark.parametrize("renamed", [{"table": "orders", "key": "id", "payload": "body"}])
def test_renamed_names_from_cdc_names(renamed):
    names = Names.of(PREFIX, renamed)
    assert (names.table, names.key, names.payload, names.trace) == ("orders", "id", "body",
                                                                    "trace")  # fmt: skip
    assert names.renamed and not Names.of(PREFIX).renamed


def test_ledger_ddl_rows_fit(tmp_path):
    db = sqlite3.connect(tmp_path / "ledger.sqlite")
    db.executescript(LEDGER_DDL)
    assert {"txn", "rows"} <= {r[1] for r in db.execute("PRAGMA table_info(ledger)")}


def test_an_xid_reused_after_a_crash_is_matched_to_the_transaction_that_committed(tmp_path):
    """PostgreSQL hands an xid out again after a crash when the transaction holding it never
    reached the disk: the ledger then has an unknown transaction (in flight at the crash) and a
    later committed one under one xid. The records belong to the committed one."""

    def run() -> Cdc:
        cdc = Cdc().valid()
        cdc.txn(710, "unknown", ("insert", 7), ("update", 1), emit=False)  # lost in the crash
        cdc.txn(710, "ok", ("delete", 3))  # after the restart, the same xid
        return cdc

    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    notes: list[str] = []
    assert counts(judged(tmp_path / "one", run(), notes=notes)) == {}
    assert len(notes) == 1 and "xid 710" in notes[0]
    # Without telling them apart, the committed transaction looks incomplete.
    found = counts(judged(tmp_path / "two", run(), separate=False))
    assert found.get("incomplete_transaction") == 1, found
