"""Decoded changes as DMS-shaped records: values by type, key-only deletes, partition key,
commit time, renames, and unchanged TOASTed values (looked up, or unbuildable with a reason)."""

from __future__ import annotations

import json

import pytest

from replicator.core.dms_records import Unbuildable, build
from replicator.core.pgoutput import UNCHANGED, Column, Relation
from replicator.core.table_mappings import TableMap
from xrh.postgres_cdc import parse_change_record

REL = Relation(1, "public", "t", "d", (Column("id", 23, -1, True), Column("on", 16, -1, False),
               Column("n", 21, -1, False), Column("doc", 3802, -1, False)))  # fmt: skip
PLAIN = TableMap("public", "t")


def test_values_by_type_and_metadata() -> None:
    built = build(REL, PLAIN, "insert", ("7", "t", None, '{"a": 1}'), commit_us=1_000_000, xid=99)
    record = parse_change_record(built.data)
    assert record["data"] == {"id": 7, "on": True, "n": None, "doc": '{"a": 1}'}
    assert record["metadata"]["timestamp"] == "2000-01-01T00:00:01.000000Z"
    assert record["metadata"]["transaction-id"] == 99 and built.partition_key == "7"


def test_delete_carries_the_key_only_and_renames_apply() -> None:
    table_map = TableMap("s2", "T2", {"id": "ID"})
    built = build(REL, table_map, "delete", ("7", None, None, None), commit_us=0, xid=1, key_only=True)
    record = json.loads(built.data)
    assert record["data"] == {"ID": 7}
    assert (record["metadata"]["schema-name"], record["metadata"]["table-name"]) == ("s2", "T2")


def test_unchanged_toast_is_looked_up_or_unbuildable() -> None:
    values = ("7", "f", "3", UNCHANGED)
    found = build(REL, PLAIN, "update", values, commit_us=0, xid=1,
                  lookup=lambda rel, keys: {"doc": "big"} if keys == ["7"] else None)  # fmt: skip
    assert json.loads(found.data)["data"]["doc"] == "big"
    with pytest.raises(Unbuildable, match="no longer exists"):
        build(REL, PLAIN, "update", values, commit_us=0, xid=1, lookup=lambda rel, keys: None)
    with pytest.raises(Unbuildable, match="TOAST"):
        build(REL, PLAIN, "update", values, commit_us=0, xid=1)
