"""Capture throughput (slot -> DMS records -> Kinesis in region A on the embedded endpoint)
against reading the slot alone (peek + decode + advance, no Kinesis) on the same database in the
same run, and the changes per PutRecords call. Targets: ratio >= 0.8, >= 100 changes per call.
Figures go to ``benchmark.extra_info`` and are printed (``-s``); nothing is asserted on time.
Run: ``pytest tests/perf/test_capture_bench.py -s``."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from capture_bench_setup import bare_slot, drop, load, postgres
from replicator_bench_setup import embedded_endpoint, provisioned

from replicator.adapters.kinesis import KinesisSink
from replicator.adapters.postgres import PostgresSlot
from replicator.core.capture import Capture, CaptureSettings
from replicator.core.capture_batch import BatchDecoder
from replicator.core.putrecords import PutRecordsSender
from replicator.core.table_mappings import default_mappings
from xrh import postgres_cdc as cdc
from xrh.aws import AwsClients
from xrh.config import Side
from xrh.endpoint import EmbeddedEndpoint
from xrh.postgres_server import PostgresServer
from xrh.resources import ResourceNames

CHANGES = 20_000


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory) -> Iterator[EmbeddedEndpoint]:
    yield from embedded_endpoint(tmp_path_factory)


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    yield from postgres()


def read_alone(url: str, prefix: str) -> tuple[float, int]:
    """Peek + decode + advance until the slot is empty: (seconds, changes)."""
    slot = PostgresSlot(url, bare_slot(prefix), cdc.publication_name(prefix))
    decoder = BatchDecoder(default_mappings(cdc.SCHEMA, cdc.table_name(prefix)))
    started, changes = time.perf_counter(), 0
    while True:
        txns = decoder.decode(slot.peek(5000))
        if not txns:
            break
        changes += sum(len(t.entries) for t in txns)
        slot.advance(txns[-1].end_lsn)
    took = time.perf_counter() - started
    slot.close()
    return took, changes


def capture_all(url: str, config) -> tuple[float, Capture]:
    prefix = config.prefix
    slot = PostgresSlot(url, cdc.slot_name(prefix), cdc.publication_name(prefix))
    sink = KinesisSink(AwsClients(config, max_attempts=1).client("kinesis", Side.A))
    sender = PutRecordsSender(sink, ResourceNames(prefix).cdc_stream)
    capture = Capture(slot, BatchDecoder(default_mappings(cdc.SCHEMA, cdc.table_name(prefix)), slot.lookup),
                      sender, _NoDeadLetters(), slot_name=cdc.slot_name(prefix), region=config.region_a,
                      settings=CaptureSettings(batch_changes=5000))  # fmt: skip
    started = time.perf_counter()
    while capture.step().transactions:
        pass
    took = time.perf_counter() - started
    slot.close()
    return took, capture


class _NoDeadLetters:
    def put(self, letters) -> None:
        raise AssertionError(f"unexpected dead letters: {letters[:1]}")


def test_bench_capture_vs_reading_the_slot_alone(benchmark, endpoint, server) -> None:
    config = provisioned(endpoint, "cap", pipeline="postgres-cdc")
    load(server.url, config.prefix, CHANGES)
    bare_s, bare_changes = read_alone(server.url, config.prefix)
    result: dict = {}

    def target() -> None:
        result["took"], result["capture"] = capture_all(server.url, config)

    benchmark.pedantic(target, rounds=1, iterations=1)
    capture: Capture = result["capture"]
    stats = capture.stats
    info = {
        "changes": CHANGES,
        "bare_changes_per_s": round(bare_changes / bare_s),
        "capture_changes_per_s": round(stats.records_put / result["took"]),
        "ratio_to_bare": round(bare_s / result["took"], 3),
        "changes_per_putrecords": round(stats.entries_sent / max(1, stats.put_requests), 1),
        "put_requests": stats.put_requests,
        "peeks": stats.peeks,
    }
    benchmark.extra_info.update(info)
    print("\ncapture benchmark:", info)
    assert bare_changes == CHANGES and stats.records_put == CHANGES
    drop(server.url, config.prefix)
