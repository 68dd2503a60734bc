"""One form for the fold's items and the tables' items, so equal items hash equal.

The fold holds the actions' plain JSON values; a table answers in DynamoDB's wire form, with
numbers as text in whatever form the writer chose ("10", "10.0", "1E+1") and with the
consumers' bookkeeping attributes (``xrh_*``, :func:`xrh.action_log.is_bookkeeping`). Both are
brought to the canonical wire JSON of :func:`verify.table_reader.canonical_json` with numbers
normalised (the same value gives the same text: Decimal versus int never differs) and the
bookkeeping left out, then hashed as the table checks hash items
(:func:`verify.table_reader.traced_item_row`), so :class:`verify.tables.store.TableStore`
compares a table with the fold exactly as it compares two tables.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any

from verify.table_reader import canonical_json, traced_item_row
from xrh.action_log import is_bookkeeping
from xrh.contracts import ITEM_KEY, ITEM_TRACE

KEY_NAMES = (ITEM_KEY,)


def to_decimal(value: Any) -> Decimal | None:
    """A JSON or DynamoDB number as a Decimal; None for anything that is not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str):
        try:
            return Decimal(value)
        except InvalidOperation:
            return None
    return None


def number_text(value: Any) -> str:
    """The one text of a number: integers without exponent or fraction, others plain."""
    number = to_decimal(value)
    if number is None:
        raise ValueError(f"not a number: {value!r}")
    if number == number.to_integral_value():
        return str(int(number))
    return format(number.normalize(), "f")


def to_wire(value: Any) -> dict[str, Any]:
    """A plain JSON value (as an action carries it) in DynamoDB's wire form, numbers canonical."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, int | float | Decimal):
        return {"N": number_text(value)}
    if isinstance(value, list | tuple):
        return {"L": [to_wire(v) for v in value]}
    if isinstance(value, dict):
        return {"M": {str(k): to_wire(v) for k, v in value.items()}}
    return {"S": str(value)}


def normalize_wire(value: Any) -> Any:
    """A wire value read from a table with its numbers in canonical text, recursively."""
    if not isinstance(value, dict):
        return value
    if "N" in value:
        return {"N": number_text(value["N"])}
    if "NS" in value:
        return {"NS": sorted(number_text(v) for v in value["NS"])}
    if "M" in value:
        return {"M": {k: normalize_wire(v) for k, v in value["M"].items()}}
    if "L" in value:
        return {"L": [normalize_wire(v) for v in value["L"]]}
    return value


def table_item(item: dict[str, Any]) -> dict[str, Any]:
    """A table's wire item without bookkeeping attributes, numbers canonical."""
    return {k: normalize_wire(v) for k, v in item.items() if not is_bookkeeping(k)}


def table_row(item: dict[str, Any], key_names: tuple[str, ...] = KEY_NAMES) -> tuple:
    """A scanned item as a :class:`~verify.tables.store.TableStore` row (key, hash, body,
    trace): the ``row_of`` of :func:`verify.table_reader.scan_table` for the action log."""
    return traced_item_row(table_item(item), key_names, ITEM_TRACE)


def expected_row(item: dict[str, Any]) -> tuple:
    """A folded (plain) item as a store row, hashed as :func:`table_row` hashes the same item."""
    return traced_item_row({k: to_wire(v) for k, v in item.items()}, KEY_NAMES, ITEM_TRACE)


def key_of(pk: str) -> str:
    """The key JSON the stores use for the item with hash key ``pk``."""
    return canonical_json({ITEM_KEY: {"S": pk}})


def pk_of(key: str) -> str:
    """The hash key back from a stored key JSON (the key itself when it is not JSON)."""
    try:
        return str(json.loads(key)[ITEM_KEY]["S"])
    except (ValueError, KeyError, TypeError):
        return key


def plain(value: Any) -> Any:
    """A wire value as a person reads it: numbers as numbers, maps and lists unwrapped."""
    if not isinstance(value, dict) or len(value) != 1:
        return value
    ((kind, inner),) = value.items()
    if kind == "N":
        number = Decimal(inner)
        return int(number) if number == number.to_integral_value() else float(number)
    if kind == "NS":
        return sorted(plain({"N": v}) for v in inner)
    if kind == "M":
        return {k: plain(v) for k, v in inner.items()}
    if kind == "L":
        return [plain(v) for v in inner]
    if kind == "NULL":
        return None
    return inner


def plain_item(body: str | None) -> dict[str, Any] | None:
    """A stored item body (canonical wire JSON) as plain values, or None when absent."""
    if body is None:
        return None
    return {k: plain(v) for k, v in json.loads(body).items()}
