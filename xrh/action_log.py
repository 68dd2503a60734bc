"""The ``action-log`` pipeline's wire format: commands in a Kinesis stream that is the table's log.

Producers write one JSON object per Kinesis record to ``{prefix}-actions`` in region A. A fast
consumer applies the log to ``{prefix}-items`` in A, a lazy (rate-limited) one to
``{prefix}-items`` in B. The format is the seed's (``{"Action": ..., "Data": ...}``) with the
fields a proof needs:

``{"Action": "PutItem", "Data": {<item>}, "trace": T, "commitTimestamp": C}``
    the whole item (plain JSON values, :data:`ITEM_KEY` among them) replaces the key's item;
``{"Action": "UpdateItem", "Data": {"pk": K, "Set": {<attr>: <value>}, "Add": {<attr>: <int>}},
"trace": T, "commitTimestamp": C}``
    DynamoDB's ``SET`` and ``ADD`` on the key's item (created if absent; an ``ADD`` to an absent
    attribute starts from 0), so a replayed ``ADD`` would count twice;
``{"Action": "DeleteItem", "Data": {"pk": K}, "trace": T, "commitTimestamp": C}``
    removes the key's item;
``{"Action": "BatchWrite", "Data": [{"PutItem": {<item>}} | {"DeleteItem": {"pk": K}}, ...],
"trace": T, "commitTimestamp": C}``
    up to 25 puts and deletes of distinct keys, as BatchWriteItem takes them.

Every item a put or update leaves carries ``trace`` (:data:`ITEM_TRACE`, the action's trace)
and ``commitTimestamp`` (:data:`ITEM_COMMIT_TS`). The ledger has one row per action (one Kinesis
record): ``op`` ``put`` | ``update`` | ``delete`` | ``batch``, ``key`` the first key touched.

Order. Every action touching a key goes to the stream with that key's partition key
(:func:`action_partition_key`: keys in blocks of :data:`KEY_GROUP_SIZE`, so a BatchWrite can
group the keys of one block), hence one shard, so per-key order is the log's order: sequence
number order within a shard, parent shards before their children.

Bookkeeping. Attributes whose names start with :data:`BOOKKEEPING_PREFIX` belong to a consumer
(for example the reference consumer's applied-sequence attribute); they are not the
application's data, and verify compares items without them.

Consumer lag (``consumer-lag.jsonl`` in the run directory, :data:`LAG_FILE`): each consumer
appends about once a second, per shard it reads, ``{"ts_ms", "consumer": "fast" | "lazy",
"shard_id", "millis_behind_latest", "applied_arrival_ms"}`` (the stream arrival time of the
last action it applied and checkpointed, or null); verify reports the lag over time from it.

This module only defines and checks the shape (shared by the load generator, the consumers and
verify); what an action *does* to a table is implemented separately by the consumer and by
verify's fold, so one cannot hide the other's mistake.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from xrh.contracts import ITEM_KEY

ACTIONS = ("PutItem", "UpdateItem", "DeleteItem", "BatchWrite")
LEDGER_OPS = {
    "PutItem": "put",
    "UpdateItem": "update",
    "DeleteItem": "delete",
    "BatchWrite": "batch",
}
KEY_GROUP_SIZE = 25
MAX_BATCH_WRITE = 25
BOOKKEEPING_PREFIX = "xrh_"
LAG_FILE = "consumer-lag.jsonl"
CONSUMERS = {"fast": "a", "lazy": "b"}  # consumer -> the side whose table it writes


class ActionFormatError(ValueError):
    """A record that is not an action of this format (the message names what is wrong)."""


def action_partition_key(key: int, group_size: int = KEY_GROUP_SIZE) -> str:
    """The partition key of every action touching ``key``: its block of ``group_size`` keys."""
    return f"g{key // group_size}"


@dataclass(frozen=True, slots=True)
class ItemOp:
    """One key's part of an action: ``kind`` ``put`` (``item``: the whole item), ``update``
    (``set`` and ``add``) or ``delete``."""

    kind: str
    pk: str
    item: dict[str, Any] | None = None
    set: dict[str, Any] | None = None
    add: dict[str, int] | None = None


@dataclass(frozen=True, slots=True)
class Action:
    """One record of the log, parsed: its ops in the order they are listed."""

    action: str
    trace: str | None
    commit_ts: str | None
    ops: tuple[ItemOp, ...]

    @property
    def ledger_op(self) -> str:
        return LEDGER_OPS[self.action]


def _pk(data: Any, where: str) -> str:
    if not isinstance(data, dict):
        raise ActionFormatError(f"{where}: expected an object, got {type(data).__name__}")
    pk = data.get(ITEM_KEY)
    if not isinstance(pk, str) or not pk:
        raise ActionFormatError(f"{where}: {ITEM_KEY!r} must be a non-empty string")
    return pk


def _put(data: Any, where: str) -> ItemOp:
    return ItemOp("put", _pk(data, where), item=dict(data))


def _delete(data: Any, where: str) -> ItemOp:
    pk = _pk(data, where)
    if set(data) - {ITEM_KEY}:
        raise ActionFormatError(f"{where}: a delete names the key only, got {sorted(data)}")
    return ItemOp("delete", pk)


def _update(data: Any, where: str) -> ItemOp:
    pk = _pk(data, where)
    sets, adds = data.get("Set") or {}, data.get("Add") or {}
    if not isinstance(sets, dict) or not isinstance(adds, dict):
        raise ActionFormatError(f"{where}: 'Set' and 'Add' must be objects")
    if not sets and not adds:
        raise ActionFormatError(f"{where}: an update needs 'Set' or 'Add'")
    for name, value in adds.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise ActionFormatError(f"{where}: 'Add' of {name!r} must be an integer")
    clash = (set(sets) & set(adds)) | ({ITEM_KEY} & (set(sets) | set(adds)))
    if clash:
        raise ActionFormatError(f"{where}: attributes {sorted(clash)} set twice or the key")
    return ItemOp("update", pk, set=dict(sets), add=dict(adds))


def parse_action(data: bytes | str) -> Action:
    """The action in one record's data; ActionFormatError names what is wrong."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ActionFormatError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ActionFormatError(f"expected a JSON object, got {type(doc).__name__}")
    kind, body = doc.get("Action"), doc.get("Data")
    if kind not in ACTIONS:
        raise ActionFormatError(f"'Action' must be one of {', '.join(ACTIONS)}, got {kind!r}")
    trace, commit = doc.get("trace"), doc.get("commitTimestamp")
    if kind == "PutItem":
        ops: tuple[ItemOp, ...] = (_put(body, "PutItem Data"),)
    elif kind == "UpdateItem":
        ops = (_update(body, "UpdateItem Data"),)
    elif kind == "DeleteItem":
        ops = (_delete(body, "DeleteItem Data"),)
    else:
        if not isinstance(body, list) or not 1 <= len(body) <= MAX_BATCH_WRITE:
            raise ActionFormatError(f"BatchWrite Data: a list of 1..{MAX_BATCH_WRITE} requests")
        parsed = []
        for i, request in enumerate(body):
            where = f"BatchWrite Data[{i}]"
            if not isinstance(request, dict) or len(request) != 1:
                raise ActionFormatError(
                    f"{where}: one of {{'PutItem': ...}}, {{'DeleteItem': ...}}"
                )
            ((name, value),) = request.items()
            if name == "PutItem":
                parsed.append(_put(value, where))
            elif name == "DeleteItem":
                parsed.append(_delete(value, where))
            else:
                raise ActionFormatError(f"{where}: {name!r} is not PutItem or DeleteItem")
        keys = [op.pk for op in parsed]
        if len(set(keys)) != len(keys):
            raise ActionFormatError(
                "BatchWrite Data: a key appears twice (BatchWriteItem refuses that)"
            )
        ops = tuple(parsed)
    return Action(kind, trace if isinstance(trace, str) else None,
                  commit if isinstance(commit, str) else None, ops)  # fmt: skip


def is_bookkeeping(attribute: str) -> bool:
    return attribute.startswith(BOOKKEEPING_PREFIX)
