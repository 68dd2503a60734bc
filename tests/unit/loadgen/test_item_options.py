"""The dynamodb pipeline's load options: defaults per pipeline, errors naming option and value,
options of the other pipeline refused, a drill's load options, what a master sends its workers,
and the context building the pipeline's producer."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from loadgen.context import LoadContext
from loadgen.errors import LoadgenUsageError
from loadgen.items import ItemProducer
from loadgen.options import load_options, public_dict, wire_options
from loadgen.orchestrator import read_lag
from loadgen.producers import Producer
from xrh import runs
from xrh.config import parse_config
from xrh.errors import UsageError


def dynamodb(**kw) -> SimpleNamespace:
    return SimpleNamespace(pipeline="dynamodb", **kw)


def test_defaults_per_pipeline():
    table = load_options(dynamodb())
    assert (table.rate_per_user, table.batch_size, table.batch_writes) == (10.0, 100, 0.25)
    assert table.ops == (("put", 60.0), ("update", 30.0), ("delete", 10.0))
    assert (table.bootstrap_items, table.scan_segments) == (0, 4)
    stream = load_options(SimpleNamespace())
    assert (stream.pipeline, stream.rate_per_user, stream.batch_size) == ("kinesis", 100.0, 500)
    assert "ops" not in public_dict(stream)
    assert public_dict(table)["ops"] == "put=60,update=30,delete=10"
    given = load_options(dynamodb(ops="update=1, put=3", batch_writes="0", rate_per_user="0",
                                  bootstrap_items="20000", scan_segments="8"))  # fmt: skip
    assert given.ops == (("put", 3.0), ("update", 1.0)) and given.batch_writes == 0
    assert given.rate_per_user is None  # as fast as possible
    assert (given.bootstrap_items, given.scan_segments) == (20000, 8)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"ops": "put=60,put=1"}, "--ops 'put=60,put=1': put is given twice"),
        ({"ops": "insert=1"}, "--ops 'insert=1': unknown operation 'insert'"),
        ({"ops": "put"}, "--ops 'put': 'put' is not OP=WEIGHT"),
        ({"ops": "put=-1"}, "--ops 'put=-1': the weight of put must be a finite number >= 0"),
        ({"ops": "put=a"}, "--ops 'put=a': the weight of put, 'a', is not a number"),
        ({"ops": "put=0,delete=0"}, "--ops 'put=0,delete=0': at least one weight must be above 0"),
        ({"batch_writes": "1.5"}, "--batch-writes 1.5: a share, 0..1"),
        ({"batch_writes": "half"}, "--batch-writes 'half': not a number"),
        ({"bootstrap_items": "-1"}, "--bootstrap-items -1: must be 0.."),
        ({"bootstrap_items": "1e3"}, "--bootstrap-items '1e3': not a whole number"),
        ({"scan_segments": "0"}, "--scan-segments 0: must be 1..1,000"),
        ({"scan_segments": "5000"}, "--scan-segments 5000: must be 1..1,000"),
        ({"batch_size": "20000"}, "--batch-size 20000: at most 10000 writes"),
        ({"drill": "reshard"}, "--drill 'reshard': no such dynamodb drill"),
    ],
)
def test_errors_name_the_option_and_value(options, message):
    with pytest.raises(UsageError) as err:
        load_options(dynamodb(**options))
    assert message in str(err.value)
    assert err.value.exit_code == 3


def test_dynamodb_options_are_refused_on_a_kinesis_run():
    for dest, flag in (("ops", "--ops"), ("batch_writes", "--batch-writes"),
                       ("bootstrap_items", "--bootstrap-items"),
                       ("scan_segments", "--scan-segments")):  # fmt: skip
        with pytest.raises(LoadgenUsageError, match=f"{flag} .*applies to --pipeline dynamodb"):
            load_options(SimpleNamespace(**{dest: "1"}))
    # left empty (the web UI's form sends ""), they are not given
    assert load_options(SimpleNamespace(ops="", bootstrap_items="")).pipeline == "kinesis"


def test_a_drill_brings_its_load_options_unless_given():
    from xrh.drills import get_drill

    drill = get_drill("bootstrap-crash", "dynamodb")
    own = int(drill.load_args[drill.load_args.index("--bootstrap-items") + 1])
    assert own > 0
    assert load_options(dynamodb(drill="bootstrap-crash")).bootstrap_items == own
    given = load_options(dynamodb(drill="bootstrap-crash", bootstrap_items="10"))
    assert given.bootstrap_items == 10


def test_workers_get_the_masters_options():
    parsed = dynamodb(ops="put=1", batch_writes="0.5", template='{"a": {{key}}}', keys=7,
                      rate_per_user=None, seed=3, run_time=12)  # fmt: skip
    master = load_options(parsed)
    sent = json.loads(json.dumps(wire_options(parsed, master)))  # what crosses the wire
    worker = load_options(SimpleNamespace(**sent), "dynamodb")
    for field in ("ops", "batch_writes", "template_text", "keyspace", "rate_per_user", "seed",
                  "batch_size"):  # fmt: skip
        assert getattr(worker, field) == getattr(master, field), field


class NullLedger:
    def register(self, producer): ...

    def write(self, rows): ...

    def final(self, producer): ...


def test_the_context_builds_the_pipelines_producer():
    argv = ["--endpoint-url", "http://127.0.0.1:9"]  # never called: nothing is sent
    table = parse_config([*argv, "--pipeline", "dynamodb", "--prefix", "pp"], environ={})
    context = LoadContext(table, load_options(dynamodb(seed=1)), NullLedger(), "l", "run")
    producer, pacer = context.new_producer()
    assert isinstance(producer, ItemProducer) and pacer.rate == 10.0
    assert producer.settings.table == "pp-items" and producer.id == "run/lu1"
    producer.add(3)
    assert [w.trace for w in producer._buffer] == [f"run/lu1-00000000{i}" for i in (1, 2, 3)]
    stream = parse_config(argv, environ={})
    other, _ = LoadContext(stream, load_options(SimpleNamespace()), NullLedger(), "l",
                           "run").new_producer()  # fmt: skip
    assert isinstance(other, Producer)


@pytest.mark.parametrize(
    "metrics",
    [
        {"counters": {"items_copied": 5}, "shards": [{"shard": "s1"}], "bootstrap": {"x": 1}},
        {"workers": {"w1": {"shards": ["odd"]}}, "totals": [1, 2]},
        [1, 2, 3],
    ],
)
def test_read_lag_survives_other_metrics_shapes(tmp_path, metrics):
    run = runs.create_run(tmp_path, None)
    run.file(runs.METRICS_FILE).write_text(json.dumps(metrics))
    assert isinstance(read_lag(run), dict)


def test_read_lag_reads_the_dynamodb_replicators_counters(tmp_path):
    run = runs.create_run(tmp_path, None)
    metrics = {"totals": {"bootstrap_items_copied": 2000, "changes_applied": 2313},
               "workers": {"vm-1": {"pipeline": "dynamodb", "shards": {
                   "s1": {"commit_lag_ms": 285, "millis_behind_latest": None}}}}}  # fmt: skip
    run.file(runs.METRICS_FILE).write_text(json.dumps(metrics))
    lag = read_lag(run)
    assert (lag["items_copied"], lag["changes_applied"]) == (2000, 2313)
    assert lag["commit_lag_ms_max"] == 285 and lag["shards"] == 1
