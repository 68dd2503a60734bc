"""The pgoutput v1 decoder on bytes captured from PostgreSQL 15 (the harness table)."""

from __future__ import annotations

import pytest

from replicator.core import pgoutput as pg

BEGIN = "420000000001507568000303f9942fc92f000002d8"
RELATION = (
    "52000040007075626c6963007872685f783100640004016b65790000000014ffffffff00636f6d6d69745f74"
    "696d657374616d7000000004a0ffffffff0074726163650000000019ffffffff007061796c6f61640000000e"
    "daffffffff"
)
INSERT = (
    "49000040004e0004740000000131740000001c323032362d31312d32342030303a32393a35382e3033303934"
    "2b30307400000002743174000000087b2261223a20317d"
)
COMMIT = "430000000000015075680000000001507598000303f9942fc92f"
UPDATE_TOAST = (
    "55000040144e0004740000000135740000001d323032362d30312d30322030333a30343a30352e31323334"
    "35362b303074000000016275"
)
DELETE = "44000040004b00047400000001326e6e6e"
TRUNCATE = "54000000010000004000"


def test_begin_and_commit() -> None:
    begin = pg.decode(bytes.fromhex(BEGIN))
    assert begin == pg.Begin(final_lsn=0x1507568, commit_us=begin.commit_us, xid=728)
    commit = pg.decode(bytes.fromhex(COMMIT))
    assert isinstance(commit, pg.Commit)
    assert (commit.commit_lsn, commit.end_lsn, commit.commit_us) == (0x1507568, 0x1507598,
                                                                     begin.commit_us)  # fmt: skip
    assert pg.commit_time_iso(commit.commit_us).startswith("20")
    assert pg.commit_time_iso(commit.commit_us).endswith("Z")


def test_relation_names_key_and_types() -> None:
    rel = pg.decode(bytes.fromhex(RELATION))
    assert isinstance(rel, pg.Relation)
    assert (rel.relid, rel.namespace, rel.name, rel.replica_identity) == (0x4000, "public", "xrh_x1", "d")
    assert [(c.name, c.type_oid, c.key) for c in rel.columns] == [
        ("key", 20, True), ("commit_timestamp", 1184, False), ("trace", 25, False),
        ("payload", 3802, False),
    ]  # fmt: skip
    assert [c.name for c in rel.key_columns] == ["key"]


def test_insert_update_delete_truncate() -> None:
    ins = pg.decode(bytes.fromhex(INSERT))
    assert isinstance(ins, pg.Insert) and ins.relid == 0x4000
    assert ins.new[0] == "1" and ins.new[2] == "t1" and ins.new[3] == '{"a": 1}'
    upd = pg.decode(bytes.fromhex(UPDATE_TOAST))
    assert isinstance(upd, pg.Update) and upd.old is None
    assert upd.new[:3] == ("5", "2026-01-02 03:04:05.123456+00", "b")
    assert upd.new[3] is pg.UNCHANGED
    dele = pg.decode(bytes.fromhex(DELETE))
    assert dele == pg.Delete(0x4000, ("2", None, None, None), "K")
    assert pg.decode(bytes.fromhex(TRUNCATE)) == pg.Truncate((0x4000,), 0)


@pytest.mark.parametrize("bad", ["", "5a", INSERT[:-4], COMMIT + "00", "49000040004e00017800"])
def test_malformed_messages_are_decode_errors(bad: str) -> None:
    with pytest.raises(pg.DecodeError):
        pg.decode(bytes.fromhex(bad))


def test_lsn_text_round_trip() -> None:
    assert pg.parse_lsn("16/B374D848") == (0x16 << 32) | 0xB374D848
    assert pg.format_lsn(pg.parse_lsn("0/1507598")) == "0/1507598"
