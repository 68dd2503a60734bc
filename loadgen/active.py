"""The ``active-active`` pipeline's load: plain table writes in both regions that conflict.

The dynamodb pipeline's :class:`~loadgen.items.ItemProducer` renders, buffers and sends the
writes and :class:`~loadgen.items.ItemWriter` ledgers every attempt; this module only changes
what is particular to writing two regions under last-writer-wins (the contract:
:mod:`xrh.active_active`), through the producer's seams (its keyspace, its ``route``, its
writer's ``prepare`` and ``_single_call``), not a copy of them:

- keys (:class:`ConflictKeyspace`): with probability ``--conflict-share`` one of the hot set's
  ``--conflict-keys`` keys (``0 .. N-1``, the same in every producer of every process, so
  writers of both regions meet on them), else the keyspace's own draw;
- regions (:class:`RegionChooser`): each write is pinned to region A or B by
  ``--region-weights``, its retries too; ledger rows name the region written (its AWS name);
- stamps (:class:`ActiveItemWriter`): each attempt is stamped when it is sent,
  ``last_update_timestamp`` = :func:`~xrh.active_active.timestamp_of` (the clock plus the
  region's ``--clock-skew-ms``, at ``--timestamp-resolution``) and ``last_updater_region`` = the
  region's name; the ledger's ``commit_ts`` is the stamp's timestamp. Stamping at send time,
  not when the write was buffered, keeps one region's writes of a key in stamp order as the
  table receives them, as an application stamping its own writes would;
- a put is a PutItem of the whole rendered item, ``trace``, ``commitTimestamp`` and the stamp;
  an update an UpdateItem that SETs some rendered attributes (each with probability 1/2),
  ``trace``, ``commitTimestamp`` and the stamp and REMOVEs :data:`~xrh.active_active.TOMBSTONE`
  (an update brings a deleted key back); a delete a DeleteItem with ``ReturnValues=ALL_OLD``,
  ledgered with :func:`~xrh.active_active.delete_stamp` of the version it removed (NULL
  ``commit_ts`` when it removed nothing, or when its answer was lost).

No BatchWriteItem: a batched DeleteRequest cannot return the item it removed, so its stamp, and
the ledger's winner of the key, would be unknown; and applications writing both regions make
single-item writes. None of the writes is conditional: plain writes are what the replicator
must reconcile.
"""

from __future__ import annotations

import random as _random
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from loadgen.active_options import ActiveOptions
from loadgen.item_writes import ItemWrite
from loadgen.items import ItemProducer, ItemSettings, ItemWriter
from loadgen.keyspace import Keyspace
from loadgen.ledger import LedgerSink
from loadgen.templates import Renderer
from xrh.active_active import (
    STAMP_REGION,
    STAMP_TS,
    TOMBSTONE,
    Stamp,
    delete_stamp,
    stamp_of,
    timestamp_of,
)
from xrh.config import HarnessConfig, Side
from xrh.contracts import ITEM_COMMIT_TS, ITEM_KEY, ITEM_TRACE

#: an update SETs each rendered attribute with this probability (trace, commitTimestamp and
#: the stamp always): an update changes part of an item, as a put cannot
UPDATE_SHARE = 0.5
_ALWAYS = frozenset((ITEM_TRACE, ITEM_COMMIT_TS, STAMP_TS, STAMP_REGION))


class ConflictKeyspace:
    """The hot set (keys ``0 .. hot-1``) with probability ``share``, else ``base``'s draw."""

    def __init__(self, base: Keyspace, hot: int, share: float, rng: _random.Random) -> None:
        if not 0 <= hot <= base.size:
            raise ValueError(f"hot set of {hot} keys: the keyspace has {base.size}")
        self.size = base.size
        self.hot = hot
        self._base = base
        self._share = share if hot else 0.0
        self._random = rng.random
        self._randrange = rng.randrange

    def next_key(self) -> int:
        if self._share and self._random() < self._share:
            return self._randrange(self.hot)
        return self._base.next_key()


class RegionChooser:
    """Draws a side for each write by ``--region-weights``."""

    def __init__(self, weights: Sequence[tuple[str, float]], rng: _random.Random) -> None:
        total = sum(w for _, w in weights if w > 0)
        if total <= 0:
            raise ValueError(f"region weights {weights}: at least one must be above 0")
        acc, bounds = 0.0, []
        for side, weight in weights:
            if weight > 0:
                acc += weight / total
                bounds.append((acc, Side(side)))
        self._bounds = [*bounds[:-1], (1.0, bounds[-1][1])]
        self._random = rng.random

    def __call__(self) -> Side:
        r = self._random()
        for bound, side in self._bounds:
            if r < bound:
                return side
        return self._bounds[-1][1]


def update_parts(item: Mapping[str, Any]) -> tuple[str, dict[str, str], dict[str, Any]]:
    """UpdateItem's ``SET #a0 = :a0, ... REMOVE #d`` of ``item`` (the key left out, the
    tombstone flag removed rather than set): (expression, names, values)."""
    fields = [name for name in item if name not in (ITEM_KEY, TOMBSTONE)]
    names = {f"#a{i}": name for i, name in enumerate(fields)}
    names["#d"] = TOMBSTONE
    values = {f":a{i}": item[name] for i, name in enumerate(fields)}
    sets = ", ".join(f"#a{i} = :a{i}" for i in range(len(fields)))
    return f"SET {sets} REMOVE #d", names, values


class ActiveItemWriter(ItemWriter):
    """:class:`~loadgen.items.ItemWriter` for active-active: stamps each attempt in the region
    it is pinned to (``self.region``, set by the producer's route), sends plain single-item
    writes, and ledgers a delete with the stamp of the version it removed.

    ``skew_ms``: milliseconds added to the clock, by region name; ``resolution``: ``ms`` or
    ``s`` (:func:`~xrh.active_active.timestamp_of`)."""

    def __init__(self, *args: Any, skew_ms: Mapping[str, int], resolution: str,
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(*args, **kwargs)
        timestamp_of(0, resolution)  # a wrong resolution fails here, not at the first write
        self.skew_ms = dict(skew_ms)
        self.resolution = resolution

    def stamp(self) -> Stamp:
        """The stamp of a write sent now in ``self.region``, by that region's clock."""
        now_ms = int(self._clock() * 1000) + self.skew_ms.get(self.region, 0)
        return Stamp(timestamp_of(now_ms, self.resolution), self.region)

    def prepare(self, write: ItemWrite) -> ItemWrite:
        if write.op == "delete":  # its stamp comes from what it removes: known once answered
            return write._replace(commit_ts=None)
        stamp = self.stamp()
        item = dict(write.item or {})
        item.pop(TOMBSTONE, None)  # a template's own flag would mark the item deleted
        if write.op == "update":
            item = {name: value for name, value in item.items()
                    if name in _ALWAYS or self._random() < UPDATE_SHARE}  # fmt: skip
        item[ITEM_KEY] = {"S": write.key}
        item[STAMP_TS] = {"N": str(stamp.ts)}
        item[STAMP_REGION] = {"S": stamp.region}
        return write._replace(commit_ts=stamp.ts, item=item)

    def _single_call(self, write: ItemWrite) -> ItemWrite:
        table, key = self.settings.table, {ITEM_KEY: {"S": write.key}}
        if write.op == "put":
            self.sink.put_item(table, write.item)
        elif write.op == "delete":
            old, _ = self.sink.delete_item_old(table, key)  # type: ignore[attr-defined]
            removed = stamp_of(old)
            ts = None if removed is None else delete_stamp(removed, self.region).ts
            return write._replace(commit_ts=ts)
        else:
            expression, names, values = update_parts(write.item or {})
            self.sink.update_item(table, key, expression, names, values)
        return write

    def _send_group(self, writes: list[ItemWrite]) -> None:
        raise ValueError("the active-active pipeline sends no BatchWriteItem (batch_share 0)")

    def not_sent(self, writes: Sequence[ItemWrite], reason: str) -> None:
        """Never stamped: their rows carry no commit_ts."""
        super().not_sent([w._replace(commit_ts=None) for w in writes], reason)


def active_producer(
    producer_id: str, renderer: Renderer, keyspace: Keyspace, sink: Any, ledger: LedgerSink,
    settings: ItemSettings, rng: _random.Random, options: ActiveOptions, config: HarnessConfig,
    **kwargs: Any,
) -> ItemProducer:  # fmt: skip
    """An :class:`~loadgen.items.ItemProducer` of active-active writes.

    ``sink``: the item sinks of both regions (:class:`loadgen.dynamodb_sink.RoutedItemSink`,
    pinned per write with ``pin_to``); ``settings``: the items table, pipeline
    ``active-active``, no batching; ``kwargs`` go to the producer (clock, sleep)."""
    if settings.batch_share:
        raise ValueError("the active-active pipeline sends no BatchWriteItem: batch_share 0")
    choose = RegionChooser(options.region_weights, rng)
    writer = partial(
        ActiveItemWriter, resolution=options.timestamp_resolution,
        skew_ms={config.region(side): options.skew_of(side.value) for side in Side},
    )  # fmt: skip
    keys = ConflictKeyspace(keyspace, options.conflict_keys, options.conflict_share, rng)
    kwargs.setdefault("random", rng.random)
    return ItemProducer(producer_id, renderer, keys, sink, ledger, settings,
                        route=lambda: sink.pin_to(choose()), make_writer=writer,
                        **kwargs)  # fmt: skip
