"""Per-process state of a run's producers: one set of clients, one ledger sink, a factory.

Creating boto3 clients is slow and not thread-safe, so a process builds one
:class:`~xrh.aws.AwsClients` (pool sized to its users, botocore retries off so a timeout is
recorded as ``unknown`` instead of being resent blindly) and every producer shares it.
"""

from __future__ import annotations

import dataclasses
import random as _random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from loadgen.dynamodb_sink import ItemReport
from loadgen.items import ItemSettings
from loadgen.kinesis_sink import KinesisSink, RequestReport, TimedSink
from loadgen.ledger import LedgerSink
from loadgen.options import LoadOptions
from loadgen.producers import Pacer, Producer, ProducerSettings
from loadgen.routing import RoutedSink, WriteTarget
from xrh.aws import AwsClients
from xrh.config import HarnessConfig, Side
from xrh.resources import ResourceNames


def producer_name(run_id: str, node: str, index: int) -> str:
    """``<run id>/<node>u<index>``: traces (``<producer>-<seq>``) then name their run, so a
    second run against the same stream (LocalStack, AWS) never reuses a trace, and verify tells
    this run's records from other runs' (DESIGN.md, "Records and identity")."""
    return f"{run_id}/{node}u{index}" if run_id else f"{node}u{index}"


@dataclass
class LoadContext:
    config: HarnessConfig
    options: LoadOptions
    ledger: LedgerSink
    node: str  # "l" for a local runner, "w<index>" for a worker
    run_id: str  # names the run in every trace, so runs sharing a stream never collide
    pool_size: int = 50
    report: RequestReport | None = None  # kinesis: each PutRecords request
    item_report: ItemReport | None = None  # dynamodb: each PutItem, UpdateItem, ... request
    producers: list[Any] = field(default_factory=list)  # Producer or ItemProducer
    target: WriteTarget | None = None  # the region producers write to (switched at failover)
    _clients: AwsClients | None = None
    _count: int = 0

    @property
    def clients(self) -> AwsClients:
        if self._clients is None:
            self._clients = AwsClients(
                self.config, max_pool_connections=self.pool_size, max_attempts=1,
                connect_timeout=5.0, read_timeout=20.0,
            )  # fmt: skip
        return self._clients

    def settings(self) -> ProducerSettings:
        return ProducerSettings(
            stream=ResourceNames(self.config.prefix).stream,
            region=self.config.region_a,
            pipeline=self.config.pipeline,
            batch_size=self.options.batch_size,
            linger_s=self.options.linger_s,
        )

    def item_settings(self) -> ItemSettings:
        return ItemSettings(
            table=ResourceNames(self.config.prefix).items_table,
            region=self.config.region_a,
            pipeline=self.config.pipeline,
            batch_size=self.options.batch_size,
            linger_s=self.options.linger_s,
            ops=self.options.ops,
            batch_share=self.options.batch_writes,
        )

    def action_settings(self) -> ProducerSettings:
        """The action log's records go to the actions stream, in region A only (both
        consumers read it there): a failover does not move it."""
        return ProducerSettings(
            stream=ResourceNames(self.config.prefix).actions_stream,
            region=self.config.region_a,
            pipeline=self.config.pipeline,
            batch_size=self.options.batch_size,
            linger_s=self.options.linger_s,
        )

    def new_producer(self) -> tuple[Any, Pacer]:
        """The pipeline's producer (:class:`Producer` of stream records for kinesis,
        :class:`~loadgen.items.ItemProducer` of table writes for dynamodb, a Producer of
        actions, :func:`loadgen.actions.action_producer`, for action-log, an ItemProducer of
        both regions' writes, :func:`loadgen.active.active_producer`, for active-active) and
        its pacer."""
        self._count += 1
        producer_id = producer_name(self.run_id, self.node, self._count)
        seed = self.options.seed
        # Seeded by the node-local name, not the run id: a seed reproduces its load in any run.
        local = f"{self.node}u{self._count}"
        rng = _random.Random(f"{seed}:{local}") if seed is not None else _random.Random()
        renderer = self.options.template.bind(rng=rng, producer=producer_id)
        keyspace = self.options.keyspace.build(rng)
        if self.target is None:
            self.target = WriteTarget(self.config)
        if self.config.pipeline == "dynamodb":
            from loadgen.items import ItemProducer

            items = self._item_sinks()
            item_producer = ItemProducer(producer_id, renderer, keyspace, items, self.ledger,
                                         self.item_settings(), random=rng.random,
                                         route=items.pin)  # fmt: skip
            self.producers.append(item_producer)
            return item_producer, Pacer(self.options.rate_per_user)
        if self.config.pipeline == "active-active":
            from loadgen.active import active_producer

            settings = dataclasses.replace(self.item_settings(), batch_share=0.0)
            sinks = self._item_sinks(by_region=True)
            writes = active_producer(producer_id, renderer, keyspace, sinks, self.ledger,
                                     settings, rng, self.options.active, self.config)  # fmt: skip
            self.producers.append(writes)
            return writes, Pacer(self.options.rate_per_user)
        if self.config.pipeline == "action-log":
            from loadgen.actions import action_producer

            stream = KinesisSink(self.clients.client("kinesis", Side.A))
            timed = TimedSink(stream, self.report) if self.report is not None else stream
            actions = action_producer(producer_id, renderer, keyspace, timed, self.ledger,
                                      self.action_settings(), rng, self.options.ops)  # fmt: skip
            self.producers.append(actions)
            return actions, Pacer(self.options.rate_per_user)
        sink = RoutedSink(
            {side: KinesisSink(self.clients.client("kinesis", side)) for side in Side},
            self.target,
        )
        timed = TimedSink(sink, self.report) if self.report is not None else sink
        producer = Producer(producer_id, renderer, keyspace, timed, self.ledger, self.settings(),
                            random=rng.random, route=sink.pin)  # fmt: skip
        self.producers.append(producer)
        return producer, Pacer(self.options.rate_per_user)

    def _item_sinks(self, *, by_region: bool = False) -> Any:
        """Both regions' item sinks, one client each; ``by_region``: Locust shows each
        region's requests apart (``PutItem us-east-2``: active-active writes both)."""
        from loadgen.dynamodb_sink import DynamoItemSink, RoutedItemSink

        def report(side: Side) -> ItemReport | None:
            if self.item_report is None or not by_region:
                return self.item_report
            inner, region = self.item_report, self.config.region(side)
            return lambda name, ms, size, exc: inner(f"{name} {region}", ms, size, exc)

        assert self.target is not None
        return RoutedItemSink(
            {side: DynamoItemSink(self.clients.client("dynamodb", side), report(side))
             for side in Side}, self.target,
        )  # fmt: skip

    def write_to(self, side: Side) -> None:
        """From now on producers write to ``side`` (each request already begun finishes);
        active-active producers write both regions by ``--region-weights`` whatever it says."""
        if self.target is None:
            self.target = WriteTarget(self.config)
        self.target.switch(side)

    def close_all(self, on_error: Callable[[str, BaseException], None] | None = None) -> None:
        """Close producers that did not close themselves (their final batch)."""
        for producer in self.producers:
            if not producer.closed:
                try:
                    producer.close()
                except Exception as exc:  # noqa: BLE001 - reported, the rest still close
                    if on_error:
                        on_error(producer.id, exc)
