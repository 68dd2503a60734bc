"""What a write of the ``dynamodb`` pipeline is, before it is sent: its operation, its typed
item, its UpdateItem expression and the request it goes in.

- ``--ops`` weights (:func:`parse_ops`) draw each write's operation: ``put`` (PutItem, or a
  BatchWriteItem PutRequest), ``update`` (UpdateItem ``SET`` every rendered attribute, trace and
  commitTimestamp, and ``ADD writes :one``), ``delete`` (DeleteItem, or a DeleteRequest).
- The template's JSON becomes a DynamoDB item (:func:`item_of`): numbers N, floats kept exact
  as Decimal text, strings S, booleans BOOL, null NULL, objects M, arrays L; ``pk`` is the
  keyspace key, with ``trace`` (:data:`xrh.contracts.ITEM_TRACE`) and ``commitTimestamp``
  (:data:`~xrh.contracts.ITEM_COMMIT_TS`: the template's, or the write's time).
- :func:`plan` turns a flush's writes into requests. Batched writes gather in a group of at
  most 25 with distinct keys (BatchWriteItem refuses duplicates, and the unprocessed items map
  back to their writes by key); the group is sent when full, at the end of the flush, or as
  soon as a later write (batched or not) touches one of its keys, so a producer's writes of
  one key reach the table in their ``seq`` order.

Pure functions and values: sending, retries and the ledger are :mod:`loadgen.items`'.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, NamedTuple

from loadgen.errors import LoadgenUsageError
from loadgen.producer_base import COMMIT_TS_FIELD, parse_commit_ts
from xrh.contracts import ITEM_COMMIT_TS, ITEM_KEY, ITEM_TRACE, Op, iso_ms

OPS = tuple(op.value for op in Op)  # put, update, delete
DEFAULT_OPS = (("put", 60.0), ("update", 30.0), ("delete", 10.0))
DEFAULT_OPS_TEXT = "put=60,update=30,delete=10"
MAX_GROUP = 25  # BatchWriteItem: at most 25 requests
#: the counter every UpdateItem adds one to (so an update is visibly an update)
WRITES_ATTRIBUTE = "writes"


def parse_ops(
    text: str | None, option: str = "--ops", *, ops: tuple[str, ...] = OPS,
    default: tuple[tuple[str, float], ...] = DEFAULT_OPS, what: str = "operation",
) -> tuple[tuple[str, float], ...]:  # fmt: skip
    """``put=60,update=30,delete=10`` as ((op, weight), ...); LoadgenUsageError if wrong.

    ``ops`` and ``default``: the pipeline's operations (the action log adds ``batch``), or
    other names weighed the same way (``what``: ``region`` for ``--region-weights``)."""
    if text is None or not str(text).strip():
        return default
    example = ops_text(default)
    weights: dict[str, float] = {}
    for part in str(text).split(","):
        name, sep, value = part.strip().partition("=")
        name = name.strip().lower()
        if not sep or not name:
            label = "OP" if what == "operation" else what.upper()
            raise LoadgenUsageError(f"{option} {text!r}: {part.strip()!r} is not {label}=WEIGHT "
                                    f"(e.g. {example})")  # fmt: skip
        if name not in ops:
            raise LoadgenUsageError(
                f"{option} {text!r}: unknown {what} {name!r}; choose from {', '.join(ops)}"
            )
        if name in weights:
            raise LoadgenUsageError(f"{option} {text!r}: {name} is given twice")
        try:
            weight = float(value)
        except ValueError:
            raise LoadgenUsageError(
                f"{option} {text!r}: the weight of {name}, {value.strip()!r}, is not a number"
            ) from None
        if not weight >= 0 or weight == float("inf"):
            raise LoadgenUsageError(
                f"{option} {text!r}: the weight of {name} must be a finite number >= 0"
            )
        weights[name] = weight
    if not any(weights.values()):
        raise LoadgenUsageError(f"{option} {text!r}: at least one weight must be above 0")
    return tuple((op, weights[op]) for op in ops if op in weights)


def ops_text(ops: Sequence[tuple[str, float]]) -> str:
    return ",".join(f"{op}={weight:g}" for op, weight in ops)


# ------------------------------------------------------------------ JSON -> DynamoDB item


def attribute(value: Any) -> dict[str, Any]:
    """One JSON value (``json.loads(..., parse_float=Decimal)``) as a DynamoDB attribute."""
    kind = type(value)
    if kind is str:
        return {"S": value}
    if kind is bool:
        return {"BOOL": value}
    if kind is int or kind is Decimal:
        return {"N": str(value)}
    if value is None:
        return {"NULL": True}
    if kind is dict:
        return {"M": {k: attribute(v) for k, v in value.items()}}
    if kind is list:
        return {"L": [attribute(v) for v in value]}
    if kind is float:  # NaN / Infinity: DynamoDB refuses them, the write is ledgered "fail"
        return {"N": repr(value)}
    raise TypeError(f"cannot store a {kind.__name__} in DynamoDB")


def rendered_item(payload: str, pk: str) -> dict[str, dict[str, Any]]:
    """The rendered JSON object as a DynamoDB item with ``pk``: the keyspace key always wins
    over a ``pk`` the template may render."""
    data = json.loads(payload, parse_float=Decimal)
    item = {k: attribute(v) for k, v in data.items()}
    item[ITEM_KEY] = {"S": pk}
    return item


def item_of(payload: str, pk: str, trace: str, now_ms: int,
            commit_ts_of: Callable[[str], int | None] = parse_commit_ts,
            ) -> tuple[dict[str, Any], int | None]:  # fmt: skip
    """The item of a rendered payload, with ``trace`` and ``commitTimestamp`` (the write's
    time in the default form if the template has none), and the ledger's commit_ts."""
    item = rendered_item(payload, pk)
    item[ITEM_TRACE] = {"S": trace}
    match = COMMIT_TS_FIELD.search(payload)
    if match is None:
        item[ITEM_COMMIT_TS] = {"S": iso_ms(now_ms)}
        return item, now_ms
    return item, commit_ts_of(match.group(1))


def commit_ts_of_payload(payload: str, now_ms: int,
                         commit_ts_of: Callable[[str], int | None] = parse_commit_ts,
                         ) -> int | None:  # fmt: skip
    """The ledger's commit_ts of a payload that becomes no item (a delete): by the same rule
    as :func:`item_of`'s."""
    match = COMMIT_TS_FIELD.search(payload)
    return commit_ts_of(match.group(1)) if match else now_ms


class UpdateExpressions:
    """UpdateItem's ``SET #a0 = :a0, ... ADD #w :one`` for an item (names as placeholders:
    ``key`` and many other attribute names are reserved words), cached per attribute list:
    a template renders the same attributes write after write."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, ...], tuple[str, dict[str, str]]] = {}

    def __call__(self, item: dict[str, Any]) -> tuple[str, dict[str, str], dict[str, Any]]:
        """(expression, attribute names, attribute values) of an UpdateItem of ``item``."""
        # (a template's own "writes" is left to the counter: one path cannot be SET and ADDed)
        fields = tuple(name for name in item if name != ITEM_KEY and name != WRITES_ATTRIBUTE)
        cached = self._cache.get(fields)
        if cached is None:
            names = {f"#a{i}": name for i, name in enumerate(fields)}
            names["#w"] = WRITES_ATTRIBUTE
            sets = ", ".join(f"#a{i} = :a{i}" for i in range(len(fields)))
            expression = (f"SET {sets} " if sets else "") + "ADD #w :one"
            cached = self._cache[fields] = (expression, names)
        values = {f":a{i}": item[name] for i, name in enumerate(fields)}
        values[":one"] = {"N": "1"}
        return cached[0], cached[1], values


class ItemWrite(NamedTuple):
    """One write (a named tuple: built once per write, on the hot path)."""

    trace: str
    seq: int
    key: str  # pk
    commit_ts: int | None
    op: str  # put | update | delete
    batched: bool  # sent in a BatchWriteItem (puts and deletes only)
    item: dict[str, Any] | None  # the item (put, update); None for a delete


class Single(NamedTuple):
    write: ItemWrite


class Group(NamedTuple):
    writes: list[ItemWrite]


Request = Single | Group


def plan(writes: Sequence[ItemWrite], group_size: int = MAX_GROUP) -> list[Request]:
    """Requests for ``writes`` in order: batched writes in groups of distinct keys (at most
    ``group_size``), a group sent before any later write of one of its keys."""
    out: list[Request] = []
    group: list[ItemWrite] = []
    keys: set[str] = set()
    for write in writes:
        if write.key in keys:
            out.append(Group(group))
            group, keys = [], set()
        if write.batched:
            group.append(write)
            keys.add(write.key)
            if len(group) >= group_size:
                out.append(Group(group))
                group, keys = [], set()
        else:
            out.append(Single(write))
    if group:
        out.append(Group(group))
    return out
