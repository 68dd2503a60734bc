"""Per-key planning of the ``action-log`` pipeline's writes (pure): what one GetRecords batch of
actions does to each key, reduced to at most one write per key.

The actions (:mod:`xrh.action_log`) are commands, not states: an ``ADD`` applied twice counts
twice, so a consumer that replays a batch after a crash (it checkpoints only after the batch's
writes were acknowledged) must recognise what it already applied. Every item it writes carries
:data:`SEQ_ATTR`, the position in the log of the last action applied to it
(:func:`applied_seq`), and this module plans, per key, the one request that brings the item
from wherever it stands to the state after the batch:

- ops before the key's last put or delete in the batch cannot show in the result: dropped;
- a chain that starts with a put or delete gives the final state whatever the item held: the
  later updates are folded into it here and it is written whole (a put, or a delete when
  nothing follows the delete), through BatchWriteItem. Writing a full state twice is harmless;
- a chain of updates only becomes ONE conditional UpdateItem (:class:`UpdateRequest`) that
  combines the SETs and ADDs in log order (ADDs to one attribute summed; a SET after an ADD of
  the same attribute, or an ADD after a SET, becomes a SET of the folded value) and applies
  only if the item's :data:`SEQ_ATTR` is absent or before the chain's first action; when it is
  not, the applier reads it and plans the suffix after it again (:func:`fold_updates` on the
  ops after it).

An op that DynamoDB would refuse whatever the item holds (an ADD to a value this chain set to
something that is not a number) is refused here too, as an action of its own would be: it
changes nothing and is dead-lettered; the rest of the chain still applies.

Positions. Kinesis numbers records per shard; after a reshard a key's actions continue in a
child shard, whose sequence numbers need not be greater (moto restarts them at 1). Shard ids
are allocated in increasing order within a stream (``shardId-000000000007`` after its parents),
so :func:`applied_seq` is the shard's number, then the sequence number, each zero-padded to a
fixed width: string order is log order along a key's lineage, which is what the condition
compares.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from replicator.core.table_writes import WriteRequest
from xrh.action_log import BOOKKEEPING_PREFIX, Action, ItemOp
from xrh.contracts import ITEM_KEY

#: The bookkeeping attribute of the reference consumer: the position of the last action applied.
SEQ_ATTR = f"{BOOKKEEPING_PREFIX}seq"
SHARD_DIGITS, SEQUENCE_DIGITS = 12, 80
_SHARD_NUMBER = re.compile(r"(\d+)$")


class ActionValueError(ValueError):
    """A value of an action that has no DynamoDB form (NaN, infinity, a number too large)."""


def applied_seq(shard_id: str, sequence_number: str) -> str:
    """The :data:`SEQ_ATTR` value of a record: shard number and sequence number, zero-padded
    (module doc). A shard id without a trailing number counts as shard 0."""
    match = _SHARD_NUMBER.search(shard_id)
    shard = int(match.group(1)) if match else 0
    return f"{shard:0{SHARD_DIGITS}d}-{int(sequence_number):0{SEQUENCE_DIGITS}d}"


def number_text(value: Decimal) -> str:
    """A DynamoDB number's text: integers without a point, no exponent, no trailing zeros."""
    if not value.is_finite():
        raise ActionValueError(f"{value} is not a number DynamoDB can store")
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def to_wire(value: Any) -> dict[str, Any]:
    """A JSON value as a DynamoDB attribute value: ints and floats N, strings S, bools BOOL,
    null NULL, lists L, objects M."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int):
        return {"N": str(value)}
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ActionValueError(f"{value!r} is not a number DynamoDB can store")
        return {"N": number_text(Decimal(repr(value)))}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, list):
        return {"L": [to_wire(v) for v in value]}
    if isinstance(value, dict):
        return {"M": {str(k): to_wire(v) for k, v in value.items()}}
    raise ActionValueError(f"{type(value).__name__} has no DynamoDB form")


def key_of(pk: str) -> dict[str, Any]:
    return {ITEM_KEY: {"S": pk}}


@dataclass(frozen=True, slots=True)
class WireOp:
    """One key's part of an action in wire form: ``kind`` put (``item``), update (``set``,
    ``add``: integers) or delete."""

    kind: str
    pk: str
    item: dict[str, Any] | None = None
    set: dict[str, dict[str, Any]] = field(default_factory=dict)
    add: dict[str, int] = field(default_factory=dict)


def wire_ops(action: Action) -> tuple[WireOp, ...]:
    """An action's ops in wire form; ActionValueError names the value without one."""
    return tuple(_wire_op(op) for op in action.ops)


def _wire_op(op: ItemOp) -> WireOp:
    try:
        if op.kind == "put":
            return WireOp("put", op.pk, item={k: to_wire(v) for k, v in (op.item or {}).items()})
        if op.kind == "update":
            sets = {k: to_wire(v) for k, v in (op.set or {}).items()}
            return WireOp("update", op.pk, set=sets, add=dict(op.add or {}))
    except ActionValueError as exc:
        raise ActionValueError(f"key {op.pk!r}: {exc}") from None
    except RecursionError:
        raise ActionValueError(f"key {op.pk!r}: a value nested too deeply") from None
    return WireOp("delete", op.pk)


@dataclass(frozen=True, slots=True)
class ChainOp:
    """One op of a key's chain: its position (:func:`applied_seq`), the index of its record in
    the batch (for dead letters) and the op."""

    seq: str
    index: int
    op: WireOp


@dataclass(frozen=True, slots=True)
class UpdateRequest:
    """One UpdateItem: ``SET`` of ``set``, ``ADD`` of ``add`` (number texts) and, unless
    ``new_seq`` is None (the sample behaviour), ``SET xrh_seq = new_seq`` on the condition
    ``attribute_not_exists(xrh_seq) OR xrh_seq < below`` (``below`` None: unconditional)."""

    key: dict[str, Any]
    set: dict[str, dict[str, Any]]
    add: dict[str, str]
    new_seq: str | None = None
    below: str | None = None


@dataclass(slots=True)
class KeyPlan:
    """What a batch does to one key: ``write`` (a full state, put or delete) or ``updates``
    (a chain of updates only: planned at write time, :func:`fold_updates`), and the ops refused
    client-side (``invalid``, with the reason)."""

    pk: str
    chain: list[ChainOp]
    write: WriteRequest | None = None
    updates: list[ChainOp] = field(default_factory=list)
    invalid: list[tuple[ChainOp, str]] = field(default_factory=list)

    @property
    def last_seq(self) -> str:
        return self.chain[-1].seq


def chains(ops: list[ChainOp]) -> dict[str, list[ChainOp]]:
    """Ops grouped by key, each group in log order (``ops`` are in log order)."""
    by_key: dict[str, list[ChainOp]] = {}
    for c in ops:
        by_key.setdefault(c.op.pk, []).append(c)
    return by_key


def plan_batch(ops: list[ChainOp]) -> list[KeyPlan]:
    """One plan per key touched by ``ops`` (in log order), in order of first appearance."""
    plans = []
    for pk, chain in chains(ops).items():
        plan = KeyPlan(pk, chain)
        last_full = max(
            (i for i, c in enumerate(chain) if c.op.kind in ("put", "delete")), default=None
        )
        if last_full is None:
            plan.updates = list(chain)
        else:
            base = chain[last_full].op
            item = dict(base.item or {}) if base.kind == "put" else None
            for c in chain[last_full + 1 :]:
                if item is None:
                    item = key_of(pk)
                refused = _add_refusal(item, c.op)
                if refused:
                    plan.invalid.append((c, refused))
                    continue
                item.update(c.op.set)
                for name, n in c.op.add.items():
                    old = item.get(name)
                    total = Decimal(n) + (Decimal(old["N"]) if old is not None else 0)
                    item[name] = {"N": number_text(total)}
            if item is not None:
                item[ITEM_KEY] = {"S": pk}
                item[SEQ_ATTR] = {"S": plan.last_seq}
            plan.write = WriteRequest(key_of(pk), item, ref=plan)
        plans.append(plan)
    return plans


def _add_refusal(known: dict[str, Any], op: WireOp) -> str | None:
    """Why DynamoDB would refuse ``op``'s ADDs given the attribute values known, or None."""
    for name in op.add:
        value = known.get(name)
        if value is not None and "N" not in value:
            kind = next(iter(value), "?")
            return f"invalid: ADD {name!r} to a {kind} value (only numbers can be added to)"
    return None


@dataclass(slots=True)
class FoldedUpdate:
    request: UpdateRequest | None  # None: nothing left to write (every op refused)
    invalid: list[tuple[ChainOp, str]]


def fold_updates(pk: str, ops: list[ChainOp]) -> FoldedUpdate:
    """A chain of updates (log order) as one conditional UpdateItem (module doc): applies
    only where the item's position is before the first op, and moves it to the last."""
    sets: dict[str, dict[str, Any]] = {}
    adds: dict[str, Decimal] = {}
    invalid: list[tuple[ChainOp, str]] = []
    for c in ops:
        refused = _add_refusal(sets, c.op)
        if refused:
            invalid.append((c, refused))
            continue
        for name, value in c.op.set.items():
            adds.pop(name, None)
            sets[name] = value
        for name, n in c.op.add.items():
            if name in sets:
                sets[name] = {"N": number_text(Decimal(sets[name]["N"]) + n)}
            else:
                adds[name] = adds.get(name, Decimal(0)) + n
    if len(invalid) == len(ops):
        return FoldedUpdate(None, invalid)
    request = UpdateRequest(
        key_of(pk), sets, {k: number_text(v) for k, v in adds.items()},
        new_seq=ops[-1].seq, below=ops[0].seq,
    )  # fmt: skip
    return FoldedUpdate(request, invalid)


def seq_of(item: dict[str, Any] | None) -> str | None:
    """The :data:`SEQ_ATTR` of a wire-form item, or None."""
    if not item:
        return None
    value = item.get(SEQ_ATTR)
    return value.get("S") if isinstance(value, dict) else None
