"""DMS table-mapping rules: selection (wildcards, exclude wins, no include selects nothing),
transformations, object-mapping, and errors that name the rule and field."""

from __future__ import annotations

import json

import pytest

from replicator.core.table_mappings import MappingError, default_mappings, parse


def rules(*items: dict) -> str:
    return json.dumps({"rules": list(items)})


def sel(rule_id: str, action: str, schema: str, table: str) -> dict:
    return {"rule-type": "selection", "rule-id": rule_id, "rule-name": rule_id,
            "object-locator": {"schema-name": schema, "table-name": table}, "rule-action": action}  # fmt: skip


def test_include_with_wildcards_and_exclude_wins() -> None:
    m = parse(rules(sel("1", "include", "public", "order%"), sel("2", "exclude", "public", "%_old")))
    assert m.selected("public", "orders") and m.selected("public", "order_lines")
    assert not m.selected("public", "orders_old") and not m.selected("other", "orders")
    assert not m.selected("public", "customers")


def test_no_include_rule_selects_nothing() -> None:
    m = parse(rules(sel("1", "exclude", "public", "x")))
    assert m.table("public", "anything", ["key"]) is None


def test_renames_case_prefix_and_removed_columns() -> None:
    m = parse(rules(
        sel("1", "include", "%", "%"),
        {"rule-type": "transformation", "rule-id": "2", "rule-target": "schema",
         "object-locator": {"schema-name": "public"}, "rule-action": "rename", "value": "dbo"},
        {"rule-type": "transformation", "rule-id": "3", "rule-target": "table",
         "object-locator": {"schema-name": "public", "table-name": "items"},
         "rule-action": "convert-uppercase"},
        {"rule-type": "transformation", "rule-id": "4", "rule-target": "column",
         "object-locator": {"schema-name": "public", "table-name": "items", "column-name": "trace"},
         "rule-action": "rename", "value": "trace_id"},
        {"rule-type": "transformation", "rule-id": "5", "rule-target": "column",
         "object-locator": {"schema-name": "%", "table-name": "%", "column-name": "payload"},
         "rule-action": "remove-column"},
        {"rule-type": "object-mapping", "rule-id": "6", "rule-action": "map-record-to-record",
         "object-locator": {"schema-name": "public", "table-name": "items"}},
    ))  # fmt: skip
    t = m.table("public", "items", ["key", "trace", "payload"])
    assert t is not None and (t.schema, t.table) == ("dbo", "ITEMS")
    assert [t.column(c) for c in ("key", "trace", "payload")] == ["key", "trace_id", None]


def test_default_selects_only_the_harness_table() -> None:
    m = default_mappings("public", "xrh_ab")
    assert m.selected("public", "xrh_ab") and not m.selected("public", "xrh_abc")


@pytest.mark.parametrize(("text", "needle"), [
    ("not json", "not JSON"),
    (json.dumps({"rules": {}}), "'rules' list"),
    (rules({"rule-type": "selection", "rule-id": "7", "rule-action": "include"}), "rule 7: object-locator"),
    (rules(sel("8", "keep", "public", "x")), "rule 8: rule-action"),
    (rules({"rule-type": "transformation", "rule-id": "9", "rule-target": "table",
            "object-locator": {"schema-name": "public", "table-name": "x"}, "rule-action": "rename"}),
     "rule 9: value"),
    (rules({"rule-type": "selection", "rule-id": "10", "rule-action": "include",
            "object-locator": {"schema-name": "public"}}), "rule 10: object-locator.table-name"),
    (rules({"rule-type": "object-mapping", "rule-id": "11", "rule-action": "map-record-to-record",
            "object-locator": {"schema-name": "p", "table-name": "t"},
            "mapping-parameters": {"partition-key-type": "attribute-name"}}),
     "rule 11: mapping-parameters.partition-key-type"),
    (rules({"rule-type": "nope", "rule-id": "12", "object-locator": {"schema-name": "p"}}), "rule 12: rule-type"),
])  # fmt: skip
def test_bad_mappings_name_the_rule_and_field(text: str, needle: str) -> None:
    with pytest.raises(MappingError, match=needle):
        parse(text)
