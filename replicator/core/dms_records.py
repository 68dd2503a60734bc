"""Decoded row changes as DMS-shaped change records (pure; the shape is
:mod:`xrh.postgres_cdc`'s contract).

Values are converted by type OID: ``int2``, ``int4``, ``int8`` to JSON numbers, ``bool`` to
true/false, NULL to null, every other type kept as its PostgreSQL text form (what pgoutput
sends). An update whose new row holds an unchanged TOASTed value (pgoutput sends no value for
it) takes that column's current value from the table through ``lookup``; when the row is gone
(or there is no lookup) the change cannot be built and :class:`Unbuildable` says why: the
caller dead-letters it with its data, never emits the row with the column missing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from replicator.core.pgoutput import UNCHANGED, Relation, Tuple, commit_time_iso
from replicator.core.table_mappings import TableMap
from xrh.postgres_cdc import change_record, encode, partition_key

INT_OIDS = frozenset({20, 21, 23})  # int8, int2, int4
BOOL_OID = 16

#: ``lookup(relation, key_texts)``: the row's current values (column name -> text or None), or
#: None when the row does not exist.
Lookup = Callable[[Relation, Sequence[str]], "dict[str, str | None] | None"]


class Unbuildable(ValueError):
    """A change that cannot become a complete record (the message says why)."""


@dataclass(frozen=True, slots=True)
class BuiltRecord:
    partition_key: str
    data: bytes


def convert(type_oid: int, text: object) -> Any:
    """A pgoutput text value as the record's JSON value."""
    if text is None:
        return None
    if type_oid in INT_OIDS:
        return int(text)  # type: ignore[call-overload]
    if type_oid == BOOL_OID:
        return text in ("t", "true")
    return text


def build(
    relation: Relation,
    table_map: TableMap,
    operation: str,
    values: Tuple,
    *,
    commit_us: int,
    xid: int,
    lookup: Lookup | None = None,
    key_only: bool = False,
) -> BuiltRecord:
    """One change record. ``values`` is the new row (insert, update), the key (delete with
    replica identity DEFAULT: ``key_only``) or the old row (delete with FULL)."""
    columns = relation.columns
    if len(values) != len(columns):
        raise Unbuildable(f"{relation.namespace}.{relation.name}: {len(values)} values for "
                          f"{len(columns)} columns (relation changed?)")  # fmt: skip
    if any(v is UNCHANGED for v in values):
        values = _fill_unchanged(relation, values, lookup)
    data: dict[str, Any] = {}
    key_values: list[Any] = []
    for column, text in zip(columns, values, strict=True):
        value = convert(column.type_oid, text)
        if column.key:
            key_values.append(value)
        elif key_only:
            continue
        target = table_map.column(column.name)
        if target is not None:
            data[target] = value
    record = change_record(
        data=data,
        operation=operation,
        commit_time=commit_time_iso(commit_us),
        schema=table_map.schema,
        table=table_map.table,
        transaction_id=xid,
    )
    return BuiltRecord(partition_key(key_values), encode(record))


def _fill_unchanged(relation: Relation, values: Tuple, lookup: Lookup | None) -> Tuple:
    missing = [c.name for c, v in zip(relation.columns, values, strict=True) if v is UNCHANGED]
    where = f"{relation.namespace}.{relation.name}"
    keys = [str(v) for c, v in zip(relation.columns, values, strict=True) if c.key]
    if lookup is None:
        raise Unbuildable(f"{where}: unchanged TOASTed column(s) {', '.join(missing)} not in the "
                          "WAL and no way to read the row")  # fmt: skip
    current = lookup(relation, keys)
    if current is None:
        raise Unbuildable(f"{where}: unchanged TOASTed column(s) {', '.join(missing)} not in the "
                          f"WAL, and the row (key {'.'.join(keys)}) no longer exists")  # fmt: skip
    return tuple(current.get(c.name) if v is UNCHANGED else v
                 for c, v in zip(relation.columns, values, strict=True))  # fmt: skip
