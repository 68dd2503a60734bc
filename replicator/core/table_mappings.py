"""AWS DMS table-mapping rules for change capture (pure): which tables are captured, and under
which schema, table and column names their records appear.

The JSON is DMS's: ``{"rules": [{"rule-type", "rule-id", "rule-name", "object-locator",
"rule-action", ...}, ...]}``.

- ``selection``: ``rule-action`` ``include`` or ``exclude``; ``object-locator`` ``schema-name``
  and ``table-name``, ``%`` matching any run of characters. A table is captured when an include
  rule matches it and no exclude rule does (exclude wins). Without any include rule nothing is
  selected, as in DMS.
- ``transformation``: ``rule-target`` ``schema``, ``table`` or ``column`` (``object-locator``
  adds ``column-name``); ``rule-action`` ``rename`` (``value``), ``convert-lowercase``,
  ``convert-uppercase``, ``add-prefix`` (``value``) or ``remove-column`` (column target). Locators
  match the source names; rules apply in the order given.
- ``object-mapping`` with ``rule-action`` ``map-record-to-record``: accepted (records already are
  the row); ``mapping-parameters.partition-key-type``, when given, must be ``primary-key``.

Anything else is a :class:`MappingError` naming the rule id and the field (exit 3 on the
command line).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


class MappingError(ValueError):
    """Table-mapping JSON that cannot be used (the message names the rule id and field)."""


TRANSFORM_ACTIONS = ("rename", "convert-lowercase", "convert-uppercase", "add-prefix",
                     "remove-column")  # fmt: skip
TARGETS = ("schema", "table", "column")


def _pattern(text: str) -> re.Pattern[str]:
    return re.compile("".join(".*" if part == "%" else re.escape(part)
                              for part in re.split(r"(%)", text)) + r"\Z", re.S)  # fmt: skip


@dataclass(frozen=True)
class _Locator:
    schema: re.Pattern[str]
    table: re.Pattern[str] | None
    column: re.Pattern[str] | None

    def matches(self, schema: str, table: str | None = None, column: str | None = None) -> bool:
        if not self.schema.match(schema):
            return False
        if self.table is not None and table is not None and not self.table.match(table):
            return False
        return self.column is None or column is None or bool(self.column.match(column))


@dataclass(frozen=True)
class _Transform:
    target: str
    action: str
    locator: _Locator
    value: str | None

    def apply(self, name: str) -> str | None:
        if self.action == "rename":
            return self.value
        if self.action == "convert-lowercase":
            return name.lower()
        if self.action == "convert-uppercase":
            return name.upper()
        if self.action == "add-prefix":
            return f"{self.value}{name}"
        return None  # remove-column


@dataclass(frozen=True)
class TableMap:
    """How one selected table's changes are named in the records."""

    schema: str
    table: str
    columns: Mapping[str, str | None] = field(default_factory=dict)  # source -> target (None: removed)

    def column(self, name: str) -> str | None:
        return self.columns.get(name, name)


@dataclass
class TableMappings:
    includes: list[_Locator]
    excludes: list[_Locator]
    transforms: list[_Transform]

    def selected(self, schema: str, table: str) -> bool:
        if any(x.matches(schema, table) for x in self.excludes):
            return False
        return any(x.matches(schema, table) for x in self.includes)

    def table(self, schema: str, table: str, columns: Sequence[str]) -> TableMap | None:
        """The naming of ``schema.table`` (with these columns), or None when it is not selected."""
        if not self.selected(schema, table):
            return None
        out_schema = self._name("schema", schema, lambda t: t.locator.matches(schema))
        out_table = self._name("table", table, lambda t: t.locator.matches(schema, table))
        renamed: dict[str, str | None] = {}
        for column in columns:
            target = self._name("column", column,
                                lambda t, c=column: t.locator.matches(schema, table, c))  # fmt: skip
            if target != column:
                renamed[column] = target
        return TableMap(out_schema or schema, out_table or table, renamed)

    def _name(self, target: str, name: str, match: Callable[[_Transform], bool]) -> str | None:
        current: str | None = name
        for rule in self.transforms:
            if rule.target == target and current is not None and match(rule):
                current = rule.apply(current)
        return current


def renamed_names(rules: TableMappings, schema: str, table: str,
                  columns: Sequence[str]) -> dict[str, str | None] | None:  # fmt: skip
    """The names the records of ``schema.table`` carry after the rules' renames: ``{"schema":
    ..., "table": ..., <column>: <its name in the records, None when removed>, ...}`` for each
    of ``columns``; None when the rules do not select the table (nothing is captured)."""
    mapped = rules.table(schema, table, columns)
    if mapped is None:
        return None
    return {"schema": mapped.schema, "table": mapped.table,
            **{column: mapped.column(column) for column in columns}}  # fmt: skip


def default_mappings(schema: str, table: str) -> TableMappings:
    """Only ``schema.table`` (the harness table), under its own names."""
    locator = _Locator(_pattern(schema), _pattern(table), None)
    return TableMappings([locator], [], [])


def parse(text: str, source: str = "--table-mappings") -> TableMappings:
    """DMS table-mapping JSON as :class:`TableMappings`; :class:`MappingError` names the fault."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise MappingError(f"{source}: not JSON: {exc}") from None
    rules = document.get("rules") if isinstance(document, dict) else None
    if not isinstance(rules, list):
        raise MappingError(f"{source}: want an object with a 'rules' list")
    mappings = TableMappings([], [], [])
    for index, rule in enumerate(rules):
        _add_rule(mappings, rule, index, source)
    return mappings


def _add_rule(mappings: TableMappings, rule: Any, index: int, source: str) -> None:
    if not isinstance(rule, dict):
        raise MappingError(f"{source}: rule #{index + 1} is not an object")
    rule_id = rule.get("rule-id", f"#{index + 1}")

    def fail(field_name: str, why: str) -> MappingError:
        return MappingError(f"{source}: rule {rule_id}: {field_name}: {why}")

    kind, action = rule.get("rule-type"), rule.get("rule-action")
    if kind not in ("selection", "transformation", "object-mapping"):
        raise fail("rule-type", f"{kind!r} is not selection, transformation or object-mapping")
    locator_json = rule.get("object-locator")
    if not isinstance(locator_json, dict):
        raise fail("object-locator", "missing or not an object")
    target = rule.get("rule-target", "table") if kind == "transformation" else "table"
    locator = _locator(locator_json, target, fail)
    if kind == "selection":
        if action not in ("include", "exclude"):
            raise fail("rule-action", f"{action!r} is not include or exclude")
        (mappings.includes if action == "include" else mappings.excludes).append(locator)
    elif kind == "transformation":
        if target not in TARGETS:
            raise fail("rule-target", f"{target!r} is not one of {', '.join(TARGETS)}")
        if action not in TRANSFORM_ACTIONS:
            raise fail("rule-action", f"{action!r} is not one of {', '.join(TRANSFORM_ACTIONS)}")
        if action == "remove-column" and target != "column":
            raise fail("rule-action", "remove-column needs rule-target column")
        value = rule.get("value")
        if action in ("rename", "add-prefix") and (not isinstance(value, str) or not value):
            raise fail("value", f"{action} needs a non-empty string")
        mappings.transforms.append(_Transform(target, action, locator, value))
    else:
        if action != "map-record-to-record":
            raise fail("rule-action", f"{action!r}: only map-record-to-record is supported")
        params = rule.get("mapping-parameters", {})
        if not isinstance(params, dict):
            raise fail("mapping-parameters", "not an object")
        key_type = params.get("partition-key-type", "primary-key")
        if key_type != "primary-key":
            raise fail("mapping-parameters.partition-key-type",
                       f"{key_type!r}: only primary-key is supported")  # fmt: skip


def _locator(data: dict, target: str, fail: Callable[[str, str], MappingError]) -> _Locator:
    def pattern(name: str, required: bool) -> re.Pattern[str] | None:
        value = data.get(name)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value:
            raise fail(f"object-locator.{name}", "missing or not a non-empty string")
        return _pattern(value)

    schema = pattern("schema-name", True)
    assert schema is not None
    table = pattern("table-name", target != "schema")
    column = pattern("column-name", target == "column")
    return _Locator(schema, table, column)
