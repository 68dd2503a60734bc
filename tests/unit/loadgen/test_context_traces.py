"""Traces name their run: two runs against one stream (LocalStack, AWS, a kept `xrh endpoint`)
never produce the same trace, and a seed still reproduces the same load in every run."""

from __future__ import annotations

from loadgen.context import LoadContext
from loadgen.ledger import LedgerSink
from loadgen.options import load_options
from xrh.config import parse_config


class NullLedger(LedgerSink):
    def register(self, producer: str) -> None:
        pass

    def write(self, rows) -> None:
        pass

    def final(self, producer: str) -> None:
        pass


class Options:
    seed = 7
    rate_per_user = 0


def rendered(run_id: str, n: int = 3) -> list[bytes]:
    config = parse_config(["--endpoint-url", "http://127.0.0.1:9"], environ={})  # never called
    context = LoadContext(config, load_options(Options()), NullLedger(),
                          "l", run_id)  # fmt: skip
    producer, _ = context.new_producer()
    producer.add(n)
    return [entry.data for entry in producer._buffer]


def test_two_runs_never_share_a_trace_and_the_trace_names_the_run():
    first = rendered("20261123T100000Z-aaaaaa")
    second = rendered("20261123T100500Z-bbbbbb")
    assert b'"trace": "20261123T100000Z-aaaaaa/lu1-000000001"' in first[0]
    assert not {d.split(b'"trace"')[1] for d in first} & {d.split(b'"trace"')[1] for d in second}


def test_a_seed_reproduces_keys_in_every_run():
    first = [d.split(b'"commitTimestamp"')[0] for d in rendered("run-one")]
    second = [d.split(b'"commitTimestamp"')[0] for d in rendered("run-two")]
    assert first == second
