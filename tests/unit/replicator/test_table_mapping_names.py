"""renamed_names: the schema, table and column names a selected table's records carry after the
rules' renames (verify's ``cdc_names``), None when the table is not selected."""

from __future__ import annotations

import json

from replicator.core.table_mappings import default_mappings, parse, renamed_names
from xrh.postgres_cdc import COLUMNS

INCLUDE = {"rule-type": "selection", "rule-id": "1", "rule-name": "all",
           "object-locator": {"schema-name": "public", "table-name": "%"},
           "rule-action": "include"}  # fmt: skip


def rules(*more: dict) -> object:
    return parse(json.dumps({"rules": [INCLUDE, *more]}))


def transform(rule_id: str, target: str, action: str, value: str | None = None, **locator) -> dict:
    rule = {"rule-type": "transformation", "rule-id": rule_id, "rule-name": rule_id,
            "rule-target": target, "rule-action": action,
            "object-locator": {"schema-name": "public", **locator}}  # fmt: skip
    return rule if value is None else {**rule, "value": value}


def test_unrenamed_table_keeps_its_names():
    assert renamed_names(default_mappings("public", "t"), "public", "t", COLUMNS) == {
        "schema": "public", "table": "t", **{c: c for c in COLUMNS}}  # fmt: skip


def test_renames_of_schema_table_and_one_column():
    got = renamed_names(rules(transform("2", "table", "rename", "orders", **{"table-name": "t%"}),
                              transform("3", "column", "rename", "body", **{"table-name": "%",
                                        "column-name": "payload"}),
                              transform("4", "schema", "rename", "dms")), "public", "t1", COLUMNS)  # fmt: skip
    assert got == {"schema": "dms", "table": "orders", "key": "key",
                   "commit_timestamp": "commit_timestamp", "trace": "trace", "payload": "body"}  # fmt: skip


def test_rules_apply_in_order_and_removed_columns_are_none():
    got = renamed_names(rules(transform("2", "table", "convert-uppercase", **{"table-name": "%"}),
                              transform("3", "table", "add-prefix", "x_", **{"table-name": "%"}),
                              transform("4", "column", "remove-column", **{"table-name": "%",
                                        "column-name": "trace"})), "public", "t", COLUMNS)  # fmt: skip
    assert (got["table"], got["trace"], got["key"]) == ("x_T", None, "key")


def test_a_column_rule_of_another_table_does_not_apply():
    got = renamed_names(rules(transform("2", "column", "rename", "k", **{"table-name": "other",
                                        "column-name": "key"})), "public", "t", COLUMNS)  # fmt: skip
    assert got["key"] == "key"


def test_not_selected_is_none():
    exclude = {**INCLUDE, "rule-id": "9", "rule-action": "exclude",
               "object-locator": {"schema-name": "public", "table-name": "t"}}  # fmt: skip
    assert renamed_names(rules(exclude), "public", "t", COLUMNS) is None
    assert renamed_names(rules(), "other", "t", COLUMNS) is None
    assert renamed_names(parse('{"rules": []}'), "public", "t", COLUMNS) is None
