"""The ``action-log`` pipeline's load: commands written to the actions stream, the table's log.

Each record is one action of :mod:`xrh.action_log`'s wire format, built here and sent by the
Kinesis :class:`~loadgen.producers.Producer` (given :class:`ActionRecords` as its record
builder), so buffering, PutRecords through the replicator's engine (per-key order under partial
failure, only the failed entries retried) and the ledger rows (``ok`` with shard and sequence
number, ``fail``, ``unknown``) are the stream records' own.

What an action is. ``--ops`` draws each action's kind by weight (default
:data:`DEFAULT_ACTION_OPS_TEXT`: mostly puts and updates, whose ``ADD`` a replayed record would
count twice, and enough deletes and batches that items come and go):

- ``put``: ``PutItem`` of the whole item;
- ``update``: ``UpdateItem`` with ``Set`` (each rendered attribute with probability 1/2, and
  always ``trace`` and ``commitTimestamp``) and ``Add`` of 1..:data:`MAX_ADD` to the integer
  :data:`COUNTER_ATTRIBUTE`;
- ``delete``: ``DeleteItem`` of the key;
- ``batch``: ``BatchWrite`` of 2..25 puts and deletes (puts and deletes in the ratio of their
  ``--ops`` weights) of distinct keys of the first key's block of
  :data:`~xrh.action_log.KEY_GROUP_SIZE` keys, so one partition key covers all of them (a block
  holding a single key of the keyspace gives a batch of one).

Items are the template's rendered JSON object, as the dynamodb pipeline renders them
(:func:`loadgen.item_writes.item_of`), in plain JSON: ``pk`` is ``str(key)``, ``trace`` the
action's trace, ``commitTimestamp`` the action's (the first rendered payload's, or the action's
time in the default form if the template renders none). A rendered attribute named
:data:`COUNTER_ATTRIBUTE` is not written (``ADD`` needs it a number), nor one starting with
:data:`~xrh.action_log.BOOKKEEPING_PREFIX` (those belong to the consumers).

Ledger: one row per action and attempt, pipeline ``action-log``, target the actions stream,
``partition_key`` :func:`~xrh.action_log.action_partition_key` of the first key, ``key`` the
first key, ``op`` the action's (:attr:`xrh.action_log.Action.ledger_op`).
"""

from __future__ import annotations

import json
import random as _random
from typing import Any

from loadgen.item_writes import ops_text, parse_ops
from loadgen.keyspace import Keyspace
from loadgen.ledger import LedgerSink
from loadgen.producer_base import parse_commit_ts
from loadgen.producers import Producer, ProducerSettings, RecordRef
from loadgen.templates import Renderer
from replicator.core.putrecords import PutEntry, PutRecordsSink
from xrh.action_log import (
    BOOKKEEPING_PREFIX,
    KEY_GROUP_SIZE,
    MAX_BATCH_WRITE,
    action_partition_key,
)
from xrh.contracts import ITEM_COMMIT_TS, ITEM_KEY, ITEM_TRACE, iso_ms

PIPELINE = "action-log"
ACTION_OPS = ("put", "update", "delete", "batch")  # the ledger's op of each action
DEFAULT_ACTION_OPS = (("put", 40.0), ("update", 40.0), ("delete", 10.0), ("batch", 10.0))
DEFAULT_ACTION_OPS_TEXT = ops_text(DEFAULT_ACTION_OPS)
#: the integer attribute every UpdateItem adds to (so a replayed update is visible)
COUNTER_ATTRIBUTE = "counter"
MAX_ADD = 5
MIN_BATCH = 2
_ACTION = {"put": "PutItem", "update": "UpdateItem", "delete": "DeleteItem", "batch": "BatchWrite"}
_RESERVED = frozenset((ITEM_KEY, ITEM_TRACE, ITEM_COMMIT_TS, COUNTER_ATTRIBUTE))
_DUMPS = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def parse_action_ops(text: str | None, option: str = "--ops") -> tuple[tuple[str, float], ...]:
    """``put=40,update=40,delete=10,batch=10`` as ((op, weight), ...); LoadgenUsageError if
    wrong (the dynamodb pipeline's rules, with ``batch`` besides)."""
    return parse_ops(text, option, ops=ACTION_OPS, default=DEFAULT_ACTION_OPS)


class ActionRecords:
    """The record builder of an action producer (:class:`loadgen.producers.RecordBuilder`).

    ``rng`` draws the action's kind, the attributes an update sets, the amount it adds, a
    batch's size, its other keys and their kinds (the first key is the keyspace's, the
    attributes the renderer's), so a seeded producer repeats its actions."""

    def __init__(
        self, renderer: Renderer, keyspace: Keyspace, rng: _random.Random,
        ops: tuple[tuple[str, float], ...] = DEFAULT_ACTION_OPS, *,
        group_size: int = KEY_GROUP_SIZE, max_batch: int = MAX_BATCH_WRITE,
    ) -> None:  # fmt: skip
        if not 1 <= max_batch <= MAX_BATCH_WRITE:
            raise ValueError(f"max_batch {max_batch}: must be 1..{MAX_BATCH_WRITE}")
        self._render = renderer.render
        self._keyspace = keyspace
        self._rng = rng
        self._random = rng.random
        self._group = group_size
        self._max_batch = max_batch
        weights = dict(ops)
        total = sum(w for w in weights.values() if w > 0)
        if total <= 0:
            raise ValueError(f"ops {ops}: at least one weight must be above 0")
        acc, bounds = 0.0, []
        for op in ACTION_OPS:
            if weights.get(op, 0) > 0:
                acc += weights[op] / total
                bounds.append((acc, op))
        self._bounds = [*bounds[:-1], (1.0, bounds[-1][1])]
        puts, deletes = weights.get("put", 0.0), weights.get("delete", 0.0)
        # a batch's requests: puts and deletes as --ops weighs them (all puts if neither is)
        self._batch_put_share = puts / (puts + deletes) if puts + deletes > 0 else 1.0
        self._ts_cache: tuple[str, int | None] = ("", None)

    def _op(self) -> str:
        r = self._random()
        for bound, op in self._bounds:
            if r < bound:
                return op
        return self._bounds[-1][1]

    def _commit_ts(self, text: str) -> int | None:
        if text != self._ts_cache[0]:
            self._ts_cache = (text, parse_commit_ts(text))
        return self._ts_cache[1]

    def _attributes(self, key: int, trace: str, now_ms: int) -> tuple[dict[str, Any], Any]:
        """The template's rendered attributes for ``key`` that an item may carry, and the
        payload's commitTimestamp (None if it renders none)."""
        data = json.loads(self._render(key, trace, now_ms))
        if not isinstance(data, dict):  # compile_template checked a trial record already
            raise ValueError(f"the template rendered {type(data).__name__}, not a JSON object")
        commit = data.get(ITEM_COMMIT_TS)
        attrs = {name: value for name, value in data.items()
                 if name not in _RESERVED and not name.startswith(BOOKKEEPING_PREFIX)}  # fmt: skip
        return attrs, commit if isinstance(commit, str) else None

    def _block_keys(self, first: int, count: int) -> list[int]:
        """``first`` and up to ``count - 1`` other distinct keys of its block (and keyspace)."""
        block = first // self._group
        low = block * self._group
        high = min(low + self._group, self._keyspace.size)
        others = [k for k in range(low, high) if k != first]
        return [first, *self._rng.sample(others, min(count - 1, len(others)))]

    def __call__(self, seq: int, trace: str, now_ms: int) -> PutEntry:
        op = self._op()
        first = self._keyspace.next_key()
        attrs, commit = self._attributes(first, trace, now_ms)
        if commit is None:
            commit = iso_ms(now_ms)
        stamp = {ITEM_TRACE: trace, ITEM_COMMIT_TS: commit}
        pk = str(first)
        data: Any
        if op == "put":
            data = {ITEM_KEY: pk, **attrs, **stamp}
        elif op == "update":
            sets = {name: value for name, value in attrs.items() if self._random() < 0.5}
            adds = {COUNTER_ATTRIBUTE: self._rng.randint(1, MAX_ADD)}
            data = {ITEM_KEY: pk, "Set": {**sets, **stamp}, "Add": adds}
        elif op == "delete":
            data = {ITEM_KEY: pk}
        else:
            size = self._rng.randint(min(MIN_BATCH, self._max_batch), self._max_batch)
            data = []
            for index, key in enumerate(self._block_keys(first, size)):
                if self._random() >= self._batch_put_share:
                    data.append({"DeleteItem": {ITEM_KEY: str(key)}})
                    continue
                if index:  # the first key's attributes are rendered already
                    attrs, _ = self._attributes(key, trace, now_ms)
                data.append({"PutItem": {ITEM_KEY: str(key), **attrs, **stamp}})
        payload = _DUMPS({"Action": _ACTION[op], "Data": data, "trace": trace,
                          "commitTimestamp": commit})  # fmt: skip
        ref = RecordRef(trace, seq, pk, self._commit_ts(commit), op)
        return PutEntry(action_partition_key(first, self._group), payload.encode(), None, ref)


def action_producer(
    producer_id: str, renderer: Renderer, keyspace: Keyspace, sink: PutRecordsSink,
    ledger: LedgerSink, settings: ProducerSettings, rng: _random.Random,
    ops: tuple[tuple[str, float], ...] = DEFAULT_ACTION_OPS, **kwargs: Any,
) -> Producer:  # fmt: skip
    """A :class:`~loadgen.producers.Producer` of actions (``settings``: the actions stream,
    pipeline ``action-log``); ``kwargs`` go to the Producer (clock, sleep, random, route)."""
    records = ActionRecords(renderer, keyspace, rng, ops)
    kwargs.setdefault("random", rng.random)
    return Producer(producer_id, renderer, keyspace, sink, ledger, settings, records=records,
                    **kwargs)  # fmt: skip
