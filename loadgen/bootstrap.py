"""``--bootstrap-items N``: items loaded into region A's table before the replicator starts.

The dynamodb pipeline's replicator begins with a bootstrap copy (a parallel scan of what A
holds) and hands over to live apply of A's stream; loading a table first makes that copy race
the Locust users' live writes, which is what the pipeline's verify and drills judge.

The items: keys ``"0"`` .. ``str(N-1)`` (distinct, and the same strings as the keyspace's keys,
so the first ``min(N, --keys)`` of them are also written live during the copy and the rest stay
as loaded), attributes from the run's template, ``trace`` ``<run id>/boot-<seq:09d>`` (producer
``<run id>/boot``, ``seq`` = key + 1: gap-free). Sent as BatchWriteItem of 25 from a few
threads through :class:`loadgen.items.ItemWriter` (UnprocessedItems and throttles retried with
backoff, bounded) and ledgered like every other write: ``put`` rows of this run.

A group none of whose items could be written stops the load: the run cannot start on a table
it could not fill (an :class:`~loadgen.errors.OrchestrationError`).
"""

from __future__ import annotations

import queue
import random as _random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from loadgen.dynamodb_sink import DynamoItemSink
from loadgen.errors import OrchestrationError
from loadgen.item_writes import MAX_GROUP, Group, ItemWrite, item_of
from loadgen.items import ItemSettings, ItemWriter
from loadgen.ledger import LedgerSink
from loadgen.options import LoadOptions
from loadgen.producer_base import ProducerStats
from xrh.config import HarnessConfig, Side
from xrh.resources import ResourceNames

THREADS = 4
PROGRESS_EVERY_S = 2.0


@dataclass(frozen=True, slots=True)
class BootstrapResult:
    producer: str
    items: int  # asked for
    written: int  # acknowledged
    failed: int
    unknown: int
    requests: int
    seconds: float


def bootstrap_producer(run_id: str) -> str:
    return f"{run_id}/boot" if run_id else "boot"


def groups(options: LoadOptions, producer: str, count: int,
           clock: Callable[[], float] = time.time) -> Iterator[list[ItemWrite]]:  # fmt: skip
    """The bootstrap writes, rendered lazily in groups of 25 (memory stays flat)."""
    seed = options.seed
    rng = _random.Random(f"{seed}:boot") if seed is not None else _random.Random()
    render = options.template.bind(rng=rng, producer=producer).render
    for start in range(0, count, MAX_GROUP):
        now_ms = int(clock() * 1000)
        group = []
        for key in range(start, min(count, start + MAX_GROUP)):
            pk = str(key)
            trace = f"{producer}-{key + 1:09d}"
            item, commit_ts = item_of(render(key, trace, now_ms), pk, trace, now_ms)
            group.append(ItemWrite(trace, key + 1, pk, commit_ts, "put", True, item))
        yield group


def load_bootstrap(
    config: HarnessConfig, options: LoadOptions, ledger: LedgerSink, run_id: str, *,
    say: Callable[[str], None] = print, threads: int = THREADS, clients: object | None = None,
) -> BootstrapResult:  # fmt: skip
    """Write ``options.bootstrap_items`` items into region A's items table; ledger them."""
    count = options.bootstrap_items
    producer = bootstrap_producer(run_id)
    table = ResourceNames(config.prefix).items_table
    if clients is None:
        from xrh.aws import AwsClients

        clients = AwsClients(config, max_pool_connections=threads + 2, max_attempts=1,
                             connect_timeout=5.0, read_timeout=20.0)  # fmt: skip
    client = clients.client("dynamodb", Side.A)  # type: ignore[attr-defined]
    settings = ItemSettings(table, config.region_a, pipeline=config.pipeline, batch_share=1.0)
    ledger.register(producer)
    work: queue.Queue[list[ItemWrite] | None] = queue.Queue(maxsize=threads * 4)
    stats = [ProducerStats() for _ in range(threads)]
    errors: list[str] = []
    stop = threading.Event()
    unsent: list[ItemWrite] = []  # list.extend is atomic: workers and this thread share it

    def run(index: int) -> None:
        writer = ItemWriter(producer, DynamoItemSink(client), ledger, settings,
                            stats=stats[index])  # fmt: skip
        while True:
            group = work.get()
            if group is None:
                return
            if stop.is_set():
                unsent.extend(group)  # drain the queue: never sent (ledgered below)
                continue
            before = stats[index].acknowledged
            try:
                writer.send(Group(group))
            except Exception as exc:  # noqa: BLE001 - reported, the load stops
                errors.append(f"{type(exc).__name__}: {exc}")
                stop.set()
                continue
            if stats[index].acknowledged == before:
                last = writer.last_error or "no answer"
                errors.append(f"none of {len(group)} items written ({last})")
                stop.set()

    say(f"bootstrap: loading {count:,} items into {table} in region A ({threads} threads)...")
    workers = [threading.Thread(target=run, args=(i,), name=f"xrh-boot-{i}", daemon=True)
               for i in range(threads)]  # fmt: skip
    for worker in workers:
        worker.start()
    started = last_note = time.monotonic()
    try:
        for group in groups(options, producer, count):
            if stop.is_set():
                unsent.extend(group)
                continue
            while True:
                try:
                    work.put(group, timeout=0.5)
                    break
                except queue.Full:
                    if stop.is_set():
                        unsent.extend(group)
                        break
            now = time.monotonic()
            if now - last_note >= PROGRESS_EVERY_S:
                done = sum(s.acknowledged for s in stats)
                say(f"  bootstrap: {done:,}/{count:,} items written "
                    f"({done / (now - started):,.0f}/s)")  # fmt: skip
                last_note = now
    finally:
        for _ in workers:
            work.put(None)
        for worker in workers:
            worker.join()
        if unsent:
            ItemWriter(producer, DynamoItemSink(client), ledger, settings).not_sent(
                unsent, "not sent: the bootstrap load stopped"
            )
        ledger.final(producer)
    seconds = time.monotonic() - started
    result = BootstrapResult(
        producer, count, sum(s.acknowledged for s in stats), sum(s.failed for s in stats),
        sum(s.unknown for s in stats), sum(s.requests for s in stats), seconds,
    )  # fmt: skip
    if errors:
        raise OrchestrationError(f"bootstrap load of {table} failed: {errors[0]}")
    say(f"bootstrap: {result.written:,} of {count:,} items written in {seconds:.1f}s "
        f"({result.written / max(seconds, 1e-9):,.0f}/s, {result.requests:,} requests"
        + (f"; {result.failed:,} failed" if result.failed else "")
        + (f"; {result.unknown:,} unknown" if result.unknown else "") + ")")  # fmt: skip
    return result
