"""Injected faults in the embedded endpoint, seen through boto3 as a producer would see them.

Clients make exactly one attempt (``total_max_attempts=1``), so each test sees the raw answer.
Note that botocore's ``retries={"max_attempts": 1}`` means one *retry* (two attempts): a
lost answer would then be resent blindly and the record written twice.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError

from xrh.cli import main as xrh_main
from xrh.config import Side, parse_config
from xrh.endpoint import EmbeddedEndpoint, answers
from xrh.errors import EXIT_USAGE
from xrh.faults import read_fault_log

_names = itertools.count(1)


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedEndpoint]:
    """Both regions, started with no faults; each test sets its own and they are reset after."""
    run_dir = tmp_path_factory.mktemp("fault-run")
    config = parse_config(["--runs-dir", str(run_dir / "runs")], environ={})
    with EmbeddedEndpoint(config, run_dir=run_dir) as started:
        yield started


@pytest.fixture(autouse=True)
def no_faults_after(faulty: EmbeddedEndpoint) -> Iterator[None]:
    log = faulty.faults_log
    yield
    if faulty.alive():
        faulty.set_faults(None, log=log)


def _client(endpoint: EmbeddedEndpoint, service: str, side: str = "a") -> Any:
    return boto3.client(
        service,
        region_name=endpoint.config.region(Side(side)),
        endpoint_url=endpoint.url_of(side),
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=5,
            read_timeout=20,
            s3={"addressing_style": "path"},
        ),
    )


def _stream(kinesis: Any) -> str:
    name = f"faults-{next(_names)}"
    kinesis.create_stream(StreamName=name, ShardCount=1)
    return name


def _read_stream(kinesis: Any, stream: str) -> list[bytes]:
    shard = kinesis.list_shards(StreamName=stream)["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(
        StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    data: list[bytes] = []
    for _ in range(100):
        page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
        data += [r["Data"] for r in page["Records"]]
        iterator = page.get("NextShardIterator")
        if not page["Records"]:
            break
    return data


def _records(tag: str, n: int) -> list[dict]:
    return [{"Data": f"{tag}-{i}".encode(), "PartitionKey": f"k{i}"} for i in range(n)]


def _table(dynamodb: Any) -> str:
    name = f"faults-{next(_names)}"
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


def _keys(dynamodb: Any, table: str) -> set[str]:
    return {item["pk"]["S"] for item in dynamodb.scan(TableName=table)["Items"]}


# --------------------------------------------------------------------------- partial


def test_partial_one_fails_every_entry_and_writes_nothing(faulty: EmbeddedEndpoint) -> None:
    kinesis = _client(faulty, "kinesis")
    stream = _stream(kinesis)
    faulty.set_faults("a:PutRecords:partial=1.0", seed=1)
    answer = kinesis.put_records(StreamName=stream, Records=_records("all", 10))
    assert answer["FailedRecordCount"] == 10 and len(answer["Records"]) == 10
    for entry in answer["Records"]:
        assert entry["ErrorCode"] == "ProvisionedThroughputExceededException"
        assert entry["ErrorMessage"] and "SequenceNumber" not in entry and "ShardId" not in entry
    faulty.set_faults(None)
    assert _read_stream(kinesis, stream) == []


def _put_and_split(kinesis: Any, stream: str, tag: str, n: int) -> tuple[list[int], dict]:
    answer = kinesis.put_records(StreamName=stream, Records=_records(tag, n))
    failed = [i for i, entry in enumerate(answer["Records"]) if "ErrorCode" in entry]
    return failed, answer


def test_partial_half_is_aligned_and_only_the_survivors_are_written(
    faulty: EmbeddedEndpoint,
) -> None:
    kinesis = _client(faulty, "kinesis")
    stream = _stream(kinesis)
    faulty.set_faults("a:PutRecords:partial=0.5", seed=7)
    failed, answer = _put_and_split(kinesis, stream, "half", 60)
    assert 0 < len(failed) < 60 and answer["FailedRecordCount"] == len(failed)
    assert len(answer["Records"]) == 60
    for i, entry in enumerate(answer["Records"]):
        if i in failed:
            assert entry["ErrorCode"] == "ProvisionedThroughputExceededException"
            assert "SequenceNumber" not in entry
        else:
            assert entry["SequenceNumber"] and entry["ShardId"].startswith("shardId-")
    faulty.set_faults(None)
    written = _read_stream(kinesis, stream)
    assert written == [f"half-{i}".encode() for i in range(60) if i not in failed]
    # The sequence numbers the answer gives are the written records' own.
    ok = [e["SequenceNumber"] for e in answer["Records"] if "SequenceNumber" in e]
    assert ok == sorted(ok, key=int) and len(set(ok)) == len(ok)


def test_same_seed_replays_the_same_decisions(faulty: EmbeddedEndpoint) -> None:
    kinesis = _client(faulty, "kinesis")
    stream = _stream(kinesis)
    runs = []
    for _ in range(2):
        faulty.set_faults("a:PutRecords:partial=0.3", seed=11)  # decisions start afresh
        runs.append([_put_and_split(kinesis, stream, "seed", 40)[0] for _ in range(3)])
    assert runs[0] == runs[1] and any(runs[0])
    faulty.set_faults("a:PutRecords:partial=0.3", seed=12)
    assert [_put_and_split(kinesis, stream, "seed", 40)[0] for _ in range(3)] != runs[0]


def test_batch_write_partial_leaves_unprocessed_items_unwritten(faulty: EmbeddedEndpoint) -> None:
    dynamodb = _client(faulty, "dynamodb")
    table = _table(dynamodb)
    faulty.set_faults("a:BatchWriteItem:partial=0.5", seed=5)
    requests = [{"PutRequest": {"Item": {"pk": {"S": f"k{i}"}}}} for i in range(24)]
    answer = dynamodb.batch_write_item(RequestItems={table: requests})
    unprocessed = {r["PutRequest"]["Item"]["pk"]["S"] for r in answer["UnprocessedItems"][table]}
    assert 0 < len(unprocessed) < 24
    assert _keys(dynamodb, table) == {f"k{i}" for i in range(24)} - unprocessed
    faulty.set_faults("a:BatchWriteItem:partial=1")
    more = [{"PutRequest": {"Item": {"pk": {"S": f"m{i}"}}}} for i in range(5)]
    answer = dynamodb.batch_write_item(RequestItems={table: more})
    assert answer["UnprocessedItems"] == {table: more}
    faulty.set_faults(None)
    assert not any(k.startswith("m") for k in _keys(dynamodb, table))


# --------------------------------------------------------------------------- throttle and error


def _code(caught: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response = caught.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def test_throttle_and_error_refuse_the_request_in_each_services_own_words(
    faulty: EmbeddedEndpoint,
) -> None:
    kinesis, dynamodb, s3 = (_client(faulty, s) for s in ("kinesis", "dynamodb", "s3"))
    stream, table = _stream(kinesis), _table(dynamodb)
    s3.create_bucket(Bucket="faults-bucket")
    faulty.set_faults(
        "a:PutRecords:throttle=1,a:PutRecord:error=1,a:PutItem:throttle=1,"
        "a:DescribeTable:throttle=1,a:DeleteItem:error=1,a:PutObject:throttle=1,"
        "a:GetObject:error=1"
    )
    with pytest.raises(ClientError) as caught:
        kinesis.put_records(StreamName=stream, Records=_records("t", 3))
    assert _code(caught) == ("ProvisionedThroughputExceededException", 400)
    with pytest.raises(ClientError) as caught:
        kinesis.put_record(StreamName=stream, Data=b"e", PartitionKey="k")
    assert _code(caught) == ("InternalFailure", 500)
    with pytest.raises(ClientError) as caught:
        dynamodb.put_item(TableName=table, Item={"pk": {"S": "t"}})
    assert _code(caught) == ("ProvisionedThroughputExceededException", 400)
    with pytest.raises(ClientError) as caught:
        dynamodb.describe_table(TableName=table)
    assert _code(caught) == ("ThrottlingException", 400)
    with pytest.raises(ClientError) as caught:
        dynamodb.delete_item(TableName=table, Key={"pk": {"S": "t"}})
    assert _code(caught) == ("InternalServerError", 500)
    with pytest.raises(ClientError) as caught:
        s3.put_object(Bucket="faults-bucket", Key="x", Body=b"x")
    assert _code(caught) == ("SlowDown", 503)
    with pytest.raises(ClientError) as caught:
        s3.get_object(Bucket="faults-bucket", Key="x")
    assert _code(caught) == ("InternalError", 500)
    assert answers(faulty.url_of("a"))  # /moto-api/ is never faulted
    faulty.set_faults(None)
    assert _read_stream(kinesis, stream) == []
    assert _keys(dynamodb, table) == set()
    assert s3.list_objects_v2(Bucket="faults-bucket").get("KeyCount") == 0


def test_star_faults_every_operation_of_the_region_but_not_the_admin_or_health_paths(
    faulty: EmbeddedEndpoint,
) -> None:
    kinesis = _client(faulty, "kinesis")
    faulty.set_faults("a:*:error=1")
    with pytest.raises(ClientError) as caught:
        kinesis.list_streams()
    assert _code(caught) == ("InternalFailure", 500)
    assert answers(faulty.url_of("a"))
    assert faulty.fault_status(Side.A)["spec"] == "a:*:error=1"


# --------------------------------------------------------------------------- latency, lost answer


def test_latency_delays_the_answer(faulty: EmbeddedEndpoint) -> None:
    kinesis = _client(faulty, "kinesis")
    stream = _stream(kinesis)
    faulty.set_faults("a:DescribeStreamSummary:latency=600")
    started = time.perf_counter()
    summary = kinesis.describe_stream_summary(StreamName=stream)
    assert time.perf_counter() - started >= 0.6  # an undelayed call takes milliseconds
    assert summary["StreamDescriptionSummary"]["StreamName"] == stream  # the answer is intact
    assert faulty.fault_status(Side.A)["injected"] == {"latency": 1}


def test_lost_answer_carries_the_request_out_and_drops_the_connection(
    faulty: EmbeddedEndpoint,
) -> None:
    kinesis = _client(faulty, "kinesis")
    stream = _stream(kinesis)
    faulty.set_faults("a:PutRecord:lost-answer=1,a:PutRecords:lost-answer=1")
    with pytest.raises(ConnectionClosedError):
        kinesis.put_record(StreamName=stream, Data=b"lost-0", PartitionKey="k")
    with pytest.raises(ConnectionClosedError):
        kinesis.put_records(StreamName=stream, Records=_records("lost-batch", 3))
    faulty.set_faults(None)
    assert _read_stream(kinesis, stream) == [
        b"lost-0",
        b"lost-batch-0",
        b"lost-batch-1",
        b"lost-batch-2",
    ]


def test_lost_answer_with_botocores_max_attempts_one_resends_and_writes_twice(
    faulty: EmbeddedEndpoint,
) -> None:
    """The brief's client config: ``max_attempts`` counts retries, so the record is resent."""
    kinesis = _client(faulty, "kinesis")
    stream = _stream(kinesis)
    retrying = boto3.client(
        "kinesis",
        region_name=faulty.config.region_a,
        endpoint_url=faulty.url_of("a"),
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=20),
    )
    faulty.set_faults("a:PutRecord:lost-answer=1")
    with pytest.raises(ConnectionClosedError):
        retrying.put_record(StreamName=stream, Data=b"twice", PartitionKey="k")
    faulty.set_faults(None)
    assert _read_stream(kinesis, stream) == [b"twice", b"twice"]


# --------------------------------------------------------------------------- runtime, regions, log


def test_set_faults_changes_behaviour_at_runtime_and_none_turns_them_off(
    faulty: EmbeddedEndpoint,
) -> None:
    kinesis = _client(faulty, "kinesis")
    stream = _stream(kinesis)
    assert (
        kinesis.put_records(StreamName=stream, Records=_records("r", 4))["FailedRecordCount"] == 0
    )
    faulty.set_faults("a:PutRecords:partial=1")
    assert faulty.faults == "a:PutRecords:partial=1"
    assert (
        kinesis.put_records(StreamName=stream, Records=_records("r", 4))["FailedRecordCount"] == 4
    )
    faulty.set_faults("a:PutRecords:throttle=1")
    with pytest.raises(ClientError):
        kinesis.put_records(StreamName=stream, Records=_records("r", 4))
    faulty.set_faults(None)
    assert faulty.faults is None and faulty.fault_status(Side.B)["spec"] is None
    assert (
        kinesis.put_records(StreamName=stream, Records=_records("r", 4))["FailedRecordCount"] == 0
    )
    assert len(_read_stream(kinesis, stream)) == 8


def test_a_rule_for_region_b_leaves_region_a_alone(faulty: EmbeddedEndpoint) -> None:
    clients = {side: _client(faulty, "kinesis", side) for side in "ab"}
    streams = {side: _stream(client) for side, client in clients.items()}
    faulty.set_faults("b:PutRecords:partial=1,b:GetRecords:error=1")
    a = clients["a"].put_records(StreamName=streams["a"], Records=_records("a", 5))
    b = clients["b"].put_records(StreamName=streams["b"], Records=_records("b", 5))
    assert (a["FailedRecordCount"], b["FailedRecordCount"]) == (0, 5)
    assert len(_read_stream(clients["a"], streams["a"])) == 5
    with pytest.raises(ClientError):
        _read_stream(clients["b"], streams["b"])


def test_every_fault_is_logged_and_counted(faulty: EmbeddedEndpoint, tmp_path: Path) -> None:
    log = tmp_path / "faults.jsonl"
    kinesis = {side: _client(faulty, "kinesis", side) for side in "ab"}
    streams = {side: _stream(client) for side, client in kinesis.items()}
    faulty.set_faults("a:PutRecords:partial=1,b:PutRecords:throttle=1,b:*:latency=1", log=log)
    for _ in range(3):
        kinesis["a"].put_records(StreamName=streams["a"], Records=_records("x", 4))
        with pytest.raises(ClientError):
            kinesis["b"].put_records(StreamName=streams["b"], Records=_records("x", 4))
    counts = read_fault_log(log)
    assert counts["by_kind"] == {"latency": 3, "partial": 3, "throttle": 3}
    assert counts["by_side"] == {"a": 3, "b": 6}
    assert counts["by_operation"] == {"PutRecords": 9}
    assert counts["partial_entries"] == 12 and counts["unreadable_lines"] == 0
    first = json.loads(log.read_text().splitlines()[0])
    assert set(first) >= {"at_ms", "side", "region", "service", "operation", "kind", "value"}
    assert first["service"] == "kinesis" and first["region"] in (
        faulty.config.region_a,
        faulty.config.region_b,
    )
    assert faulty.fault_status(Side.A)["injected"] == {"partial": 3}


def test_default_log_is_in_the_run_directory(faulty: EmbeddedEndpoint) -> None:
    log = faulty.faults_log
    assert log is not None and log.name == "faults.jsonl"
    before = read_fault_log(log)["total"]
    kinesis = _client(faulty, "kinesis")
    faulty.set_faults("a:ListStreams:error=1")
    with pytest.raises(ClientError):
        kinesis.list_streams()
    assert read_fault_log(log)["total"] == before + 1


def test_admin_path_refuses_a_bad_spec(faulty: EmbeddedEndpoint) -> None:
    request = urllib.request.Request(
        faulty.url_of("a") + "/_xrh/faults",
        data=json.dumps({"spec": "a:PutRecords:partial=2"}).encode(),
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)  # noqa: S310 - 127.0.0.1
    assert caught.value.code == 400
    assert "probability must be in 0..1" in json.loads(caught.value.read())["error"]


def test_a_restarted_region_keeps_the_endpoints_faults(tmp_path: Path) -> None:
    config = parse_config(["--runs-dir", str(tmp_path / "runs")], environ={})
    with EmbeddedEndpoint(config, faults="b:ListStreams:error=1", seed=3) as endpoint:
        assert endpoint.fault_status(Side.B)["seed"] == 3
        endpoint.set_faults("b:ListStreams:throttle=1")
        endpoint.stop_region(Side.B)
        endpoint.start_region(Side.B)
        status = endpoint.fault_status(Side.B)
        assert (status["spec"], status["seed"]) == ("b:ListStreams:throttle=1", 3)
        with pytest.raises(ClientError) as caught:
            _client(endpoint, "kinesis", "b").list_streams()
        assert _code(caught) == ("LimitExceededException", 400)
        _client(endpoint, "kinesis", "a").list_streams()


# --------------------------------------------------------------------------- command line


def test_xrh_endpoint_refuses_a_bad_spec_with_exit_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(sys, "argv", ["xrh"])
    monkeypatch.delenv("XRH_FAULTS", raising=False)
    runs = ["--runs-dir", str(tmp_path)]
    assert xrh_main(["endpoint", *runs, "--faults", "x:PutRecords:partial=0.1"]) == EXIT_USAGE
    assert "--faults 'x:PutRecords:partial=0.1': region must be a or b" in capsys.readouterr().err
    assert (
        xrh_main(["endpoint", *runs, "--faults", "a:*:error=0.1", "--endpoint", "aws"])
        == EXIT_USAGE
    )
    assert "injected by the embedded endpoint only" in capsys.readouterr().err
    monkeypatch.setenv("XRH_FAULTS", "a:PutRecords:partial=1.5")
    assert xrh_main(["endpoint", *runs]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "XRH_FAULTS 'a:PutRecords:partial=1.5': probability must be in 0..1" in err
    assert not list(tmp_path.iterdir())  # refused before any run directory or server
