"""The active-active pipeline's wiring: its options and defaults, errors naming option and value,
its options refused on other pipelines (and theirs on it), a drill's load options, what a
master sends its workers, the context's producer (both regions, requests named by region) and
the two replicators the orchestrator starts."""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import pytest

from loadgen import options as options_module
from loadgen.active import ActiveItemWriter, ConflictKeyspace
from loadgen.context import LoadContext
from loadgen.items import ItemProducer
from loadgen.options import LOAD_PIPELINES, load_options, public_dict, wire_options
from loadgen.replicators import replicator_command, sides_to_start
from xrh.config import Side, parse_config
from xrh.drills.model import Drill
from xrh.errors import UsageError


def active(**kw) -> SimpleNamespace:
    return SimpleNamespace(pipeline="active-active", **kw)


def test_defaults_and_given_values():
    assert "active-active" in LOAD_PIPELINES
    options = load_options(active())
    a = options.active
    assert options.ops == (("put", 50.0), ("update", 35.0), ("delete", 15.0))
    assert (options.rate_per_user, options.batch_size) == (10.0, 100)
    assert a.region_weights == (("a", 1.0), ("b", 1.0))
    assert (a.conflict_keys, a.conflict_share, a.timestamp_resolution) == (50, 0.5, "ms")
    assert a.clock_skew_ms == (("a", 0), ("b", 0))
    shown = public_dict(options)
    assert {k: shown[k] for k in ("ops", "region_weights", "conflict_keys", "conflict_share",
                                  "clock_skew_ms", "timestamp_resolution")} == {
        "ops": "put=50,update=35,delete=15", "region_weights": "a=1,b=1", "conflict_keys": 50,
        "conflict_share": 0.5, "clock_skew_ms": "a=+0,b=+0", "timestamp_resolution": "ms",
    }  # fmt: skip
    assert "batch_writes" not in shown and "lazy_rate" not in shown
    assert "region_weights" not in public_dict(load_options(SimpleNamespace(pipeline="dynamodb")))
    given = load_options(active(region_weights="a=1,b=3", conflict_keys="5",
                                conflict_share="0.9", clock_skew_ms="a=-200, b=+500",
                                timestamp_resolution="S", ops="delete=1"))  # fmt: skip
    g = given.active
    assert g.region_weights == (("a", 1.0), ("b", 3.0)) and given.ops == (("delete", 1.0),)
    assert (g.conflict_keys, g.conflict_share, g.timestamp_resolution) == (5, 0.9, "s")
    assert g.clock_skew_ms == (("a", -200), ("b", 500)) and g.skew_of("b") == 500
    assert load_options(active(clock_skew_ms="b=+500")).active.clock_skew_ms == (("a", 0),
                                                                                 ("b", 500))  # fmt: skip
    # the default hot set never asks for more keys than the keyspace has
    assert load_options(active(keys="10")).active.conflict_keys == 10


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (active(region_weights="c=1"), "--region-weights 'c=1': unknown region 'c'; choose "
         "from a, b"),
        (active(region_weights="a"), "--region-weights 'a': 'a' is not REGION=WEIGHT"),
        (active(region_weights="a=0,b=0"), "at least one weight must be above 0"),
        (active(conflict_keys="-1"), "--conflict-keys -1: the hot set is keys 0..N-1 of the "
         "keyspace, so 0..10,000 (--keys)"),
        (active(conflict_keys="20", keys="10"), "--conflict-keys 20: the hot set is keys"),
        (active(conflict_keys="many"), "--conflict-keys 'many': not a whole number"),
        (active(conflict_share="1.5"), "--conflict-share 1.5: a share, 0..1"),
        (active(conflict_share="x"), "--conflict-share 'x': not a number"),
        (active(clock_skew_ms="b=fast"), "--clock-skew-ms 'b=fast': the skew of b, 'fast', is "
         "not a whole number of milliseconds"),
        (active(clock_skew_ms="c=+5"), "--clock-skew-ms 'c=+5': 'c=+5' is not REGION=MS"),
        (active(clock_skew_ms="b=1,b=2"), "--clock-skew-ms 'b=1,b=2': b is given twice"),
        (active(clock_skew_ms="a=-90000000"), "the skew of a is beyond a day"),
        (active(timestamp_resolution="us"), "--timestamp-resolution 'us': choose ms or s"),
        (active(ops="batch=1"), "--ops 'batch=1': unknown operation 'batch'"),
        (active(batch_writes="0.5"), "--batch-writes '0.5': applies to --pipeline dynamodb "
         "only (this run's pipeline is active-active)"),
        (active(lazy_rate="5"), "--lazy-rate '5': applies to --pipeline action-log only"),
        (active(bootstrap_items="9"), "--bootstrap-items '9': applies to --pipeline dynamodb"),
        (SimpleNamespace(conflict_keys="5"), "--conflict-keys '5': applies to --pipeline "
         "active-active only (this run's pipeline is kinesis)"),
        (SimpleNamespace(pipeline="dynamodb", region_weights="a=1"), "--region-weights 'a=1': "
         "applies to --pipeline active-active only"),
        (SimpleNamespace(pipeline="action-log", clock_skew_ms="b=+5"), "--clock-skew-ms "
         "'b=+5': applies to --pipeline active-active only"),
        (SimpleNamespace(pipeline="dynamodb", timestamp_resolution="s"),
         "--timestamp-resolution 's': applies to --pipeline active-active only"),
        (SimpleNamespace(pipeline="dynamodb", conflict_share="0.1"),
         "--conflict-share '0.1': applies to --pipeline active-active only"),
    ],
)  # fmt: skip
def test_errors_name_the_option_and_value(options, message):
    with pytest.raises(UsageError) as err:
        load_options(options)
    assert message in str(err.value)
    assert err.value.exit_code == 3


def test_a_drill_brings_its_load_options_unless_given(monkeypatch):
    drill = Drill("skewed", "active-active", "a drill with load options", (),
                  load_args=("--clock-skew-ms", "b=+2000", "--timestamp-resolution", "s",
                             "--conflict-keys", "20"))  # fmt: skip
    monkeypatch.setattr(options_module, "get_drill", lambda name, pipeline, option: drill)
    drilled = load_options(active(drill="skewed")).active
    assert drilled.clock_skew_ms == (("a", 0), ("b", 2000))
    assert (drilled.timestamp_resolution, drilled.conflict_keys) == ("s", 20)
    mine = load_options(active(drill="skewed", timestamp_resolution="ms")).active
    assert mine.timestamp_resolution == "ms" and mine.conflict_keys == 20


def test_workers_get_the_masters_options():
    parsed = active(region_weights="a=2,b=1", conflict_keys="7", conflict_share="0.3",
                    clock_skew_ms="b=+500", timestamp_resolution="s", keys=50, seed=4)  # fmt: skip
    master = load_options(parsed)
    sent = json.loads(json.dumps(wire_options(parsed, master)))
    worker = load_options(SimpleNamespace(**sent), "active-active")
    for field in ("active", "ops", "keyspace", "seed", "rate_per_user", "batch_size"):
        assert getattr(worker, field) == getattr(master, field), field


class ListLedger:
    def __init__(self) -> None:
        self.rows: list[tuple] = []

    def register(self, producer): ...

    def write(self, rows):
        self.rows.extend(rows)

    def final(self, producer): ...


def test_the_context_builds_an_active_producer_writing_both_regions():
    argv = ["--endpoint-url", "http://127.0.0.1:9", "--pipeline", "active-active", "--prefix",
            "aa"]  # fmt: skip
    config = parse_config(argv, environ={})  # never called: nothing is sent
    seen = []
    context = LoadContext(config, load_options(active(seed=2, clock_skew_ms="b=+500")),
                          ListLedger(), "l", "run",
                          item_report=lambda name, *rest: seen.append(name))  # fmt: skip
    producer, pacer = context.new_producer()
    assert isinstance(producer, ItemProducer) and isinstance(producer.writer, ActiveItemWriter)
    assert isinstance(producer._keyspace, ConflictKeyspace) and producer._keyspace.hot == 50
    s = producer.settings
    assert (s.table, s.pipeline, s.batch_share, s.batch_size) == ("aa-items", "active-active",
                                                                  0.0, 100)  # fmt: skip
    assert pacer.rate == 10.0
    assert producer.writer.skew_ms == {config.region_a: 0, config.region_b: 500}
    sink = producer.writer.sink
    regions = {producer._route() for _ in range(100)}  # the route pins each write by weight
    assert regions == {config.region_a, config.region_b}
    # each region's requests are shown apart in Locust
    sink._sinks[Side.B].report("PutItem", 1.0, 10, None)
    sink._sinks[Side.A].report("DeleteItem", 1.0, 10, None)
    assert seen == [f"PutItem {config.region_b}", f"DeleteItem {config.region_a}"]


def test_the_orchestrator_starts_both_regions_replicators(tmp_path):
    config = parse_config(["--pipeline", "active-active", "--prefix", "aa",
                           "--endpoint-url", "http://127.0.0.1:9"], environ={})  # fmt: skip
    assert sides_to_start("active-active") == ("a", "b")
    flags = ["--endpoint-url", "http://127.0.0.1:9"]
    for mode, sample in (("reference", False), ("sample", True)):
        options = load_options(active(replicator=mode, drain_timeout="45"))
        for side in ("a", "b"):
            cmd = replicator_command(config, options, tmp_path, side, flags)
            assert cmd[:4] == [sys.executable, "-m", "xrh", "replicate"]
            assert cmd[4:] == [
                "--pipeline", "active-active", "--side", side, "--run-dir", str(tmp_path),
                "--prefix", "aa", *flags, "--drain-timeout", "45.0",
                *(["--behaviour", "sample"] if sample else []),
            ]  # fmt: skip
