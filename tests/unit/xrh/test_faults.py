"""Injected faults: the spec, seeded decisions, the log, and the middleware with a fake app."""

from __future__ import annotations

import io
import json
import os
import random
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from loadgen.errors import LoadgenUsageError
from loadgen.options import load_options, public_dict
from xrh.endpoint.fault_injection import (
    ADMIN_PATH,
    AnswerDropped,
    FaultInjector,
    error_answer,
    identify,
    s3_operation,
)
from xrh.errors import UsageError
from xrh.faults import (
    FaultDecider,
    FaultKind,
    FaultLog,
    FaultRule,
    Fired,
    fault_event,
    parse_faults,
    read_fault_log,
    seeded_random,
)

# --------------------------------------------------------------------------- parsing


def test_good_spec_parses_into_rules_in_order() -> None:
    plan = parse_faults(
        " a:PutRecords:partial=0.05, B:*:latency=20 ,a:GetRecords:lost-answer=1,"
        "b:PutItem:throttle=0,a:*:error=0.5"
    )
    assert plan is not None
    assert plan.rules == (
        FaultRule("a", "PutRecords", FaultKind.PARTIAL, 0.05),
        FaultRule("b", "*", FaultKind.LATENCY, 20.0),
        FaultRule("a", "GetRecords", FaultKind.LOST_ANSWER, 1.0),
        FaultRule("b", "PutItem", FaultKind.THROTTLE, 0.0),
        FaultRule("a", "*", FaultKind.ERROR, 0.5),
    )
    assert plan.spec == (
        "a:PutRecords:partial=0.05,b:*:latency=20,a:GetRecords:lost-answer=1,"
        "b:PutItem:throttle=0,a:*:error=0.5"
    )
    assert parse_faults(plan.spec) == plan
    assert [r.region for r in plan.for_side("b")] == ["b", "b"]


@pytest.mark.parametrize("empty", [None, "", "   "])
def test_empty_spec_means_no_faults(empty: str | None) -> None:
    assert parse_faults(empty) is None


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("a:PutRecords:partial=1.5", "probability must be in 0..1"),
        ("a:PutRecords:throttle=-0.1", "probability must be in 0..1"),
        ("x:PutRecords:partial=0.1", "region must be a or b, not 'x'"),
        ("a:PutRecords", "expected REGION:Operation:kind=value"),
        ("a:PutRecords:partial=0.1:extra", "expected REGION:Operation:kind=value"),
        ("a:putRecords:error=0.1", "operation must be an API name"),
        ("a::error=0.1", "operation must be an API name"),
        ("a:PutRecords:partial", "expected kind=value"),
        ("a:PutRecords:drop=0.1", "unknown kind 'drop'"),
        ("a:PutRecords:error=often", "error needs a number, not 'often'"),
        ("a:PutRecords:error=nan", "needs a finite number"),
        ("a:*:latency=-5", "latency must be 0..600000 milliseconds"),
        ("a:*:latency=inf", "needs a finite number"),
        ("a:*:latency=700000", "latency must be 0..600000 milliseconds"),
        ("a:GetItem:partial=0.1", "partial applies to PutRecords and BatchWriteItem only"),
    ],
)
def test_bad_item_is_one_line_naming_the_item_and_why(spec: str, why: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_faults(f"b:*:latency=1,{spec}")
    message = str(caught.value)
    assert message.startswith(f"--faults {spec!r}: ")
    assert why in message and "\n" not in message


def test_the_documented_message_and_the_source_name() -> None:
    with pytest.raises(UsageError, match=r"^--faults 'a:PutRecords:partial=1.5': probability must"):
        parse_faults("a:PutRecords:partial=1.5")
    with pytest.raises(UsageError, match=r"^XRH_FAULTS 'q:\*:error=1': region"):
        parse_faults("q:*:error=1", source="XRH_FAULTS")


@pytest.mark.parametrize("spec", ["a:*:error=1,", ",a:*:error=1", "a:*:error=1,,b:*:error=1"])
def test_empty_items_are_mistakes(spec: str) -> None:
    with pytest.raises(UsageError, match="empty item"):
        parse_faults(spec)


def test_the_same_region_operation_and_kind_twice_is_a_mistake() -> None:
    with pytest.raises(UsageError, match="throttle for a:PutRecords is given twice"):
        parse_faults("a:PutRecords:throttle=0.1,a:PutRecords:throttle=0.2")
    assert parse_faults("a:PutRecords:throttle=0.1,b:PutRecords:throttle=0.2") is not None


# --------------------------------------------------------------------------- decisions


def _decider(spec: str, side: str = "a", seed: int | None = 7) -> FaultDecider:
    plan = parse_faults(spec)
    assert plan is not None
    return FaultDecider(plan, side, seeded_random(seed, side))


def _failed_indices(decider: FaultDecider, rounds: int = 20, entries: int = 30) -> list:
    out = []
    for _ in range(rounds):
        decision = decider.decide("PutRecords", entries)
        out.append(decision.failed if decision else ())
    return out


def test_decisions_are_reproducible_for_a_seed_and_differ_between_regions() -> None:
    spec = "a:PutRecords:partial=0.3,b:PutRecords:partial=0.3"
    first = _failed_indices(_decider(spec, "a", seed=42))
    assert first == _failed_indices(_decider(spec, "a", seed=42))
    assert first != _failed_indices(_decider(spec, "b", seed=42))
    assert first != _failed_indices(_decider(spec, "a", seed=43))
    failed = sum(len(f) for f in first)
    assert 0.2 * 600 < failed < 0.4 * 600


@pytest.mark.parametrize("kind", ["throttle", "error", "lost-answer"])
def test_probability_zero_never_fires_and_one_always_does(kind: str) -> None:
    never = _decider(f"a:*:{kind}=0")
    always = _decider(f"a:*:{kind}=1")
    for _ in range(2000):
        assert never.decide("GetRecords") is None
        decision = always.decide("GetRecords")
        assert decision is not None
        assert decision.stop is FaultKind(kind) or (kind == "lost-answer" and decision.lost_answer)


def test_partial_zero_and_one_are_exact() -> None:
    assert _decider("a:PutRecords:partial=0").decide("PutRecords", 500) is None
    decision = _decider("a:PutRecords:partial=1").decide("PutRecords", 500)
    assert decision is not None and decision.failed == tuple(range(500))
    assert decision.fired == (Fired(FaultRule("a", "PutRecords", FaultKind.PARTIAL, 1.0), 500),)


class _AlwaysNearlyOne(random.Random):
    """A random source at the top of its range: 1.0 - epsilon."""

    def random(self) -> float:
        return 1.0 - 2**-53


def test_probability_one_fires_even_at_the_top_of_the_random_range() -> None:
    plan = parse_faults("a:*:throttle=1")
    assert plan is not None
    decision = FaultDecider(plan, "a", _AlwaysNearlyOne()).decide("PutItem")
    assert decision is not None and decision.stop is FaultKind.THROTTLE


def test_rules_apply_to_their_region_and_operation_only() -> None:
    decider = _decider("b:PutRecords:throttle=1,a:GetRecords:throttle=1", side="a")
    assert decider.decide("PutRecords", 3) is None
    assert decider.applies("GetRecords") and not decider.applies("PutRecords")


def test_a_named_operation_wins_over_star_for_the_same_kind() -> None:
    decider = _decider("a:*:throttle=1,a:PutRecords:throttle=0")
    assert decider.decide("PutRecords", 5) is None
    assert decider.decide("GetRecords") is not None
    assert decider.rules_for("PutRecords")[FaultKind.THROTTLE].operation == "PutRecords"


def test_partial_star_means_the_batch_operations_only() -> None:
    decider = _decider("a:*:partial=1")
    assert not decider.applies("GetRecords") and not decider.wants_entries("PutItem")
    assert decider.wants_entries("PutRecords") and decider.wants_entries("BatchWriteItem")


def test_order_latency_then_a_stop_which_draws_nothing_more() -> None:
    decider = _decider("a:PutRecords:partial=1,a:*:lost-answer=1,a:*:latency=15,a:*:throttle=1")
    decision = decider.decide("PutRecords", 4)
    assert decision is not None
    assert decision.latency_ms == 15 and decision.stop is FaultKind.THROTTLE
    assert not decision.lost_answer and decision.failed == ()
    assert [f.rule.kind for f in decision.fired] == [FaultKind.LATENCY, FaultKind.THROTTLE]


def test_latency_lost_answer_and_partial_combine() -> None:
    decision = _decider("a:PutRecords:partial=1,a:*:lost-answer=1,a:*:latency=5").decide(
        "PutRecords", 2
    )
    assert decision is not None
    assert (decision.latency_ms, decision.lost_answer, decision.failed) == (5, True, (0, 1))
    kinds = [f.rule.kind for f in decision.fired]
    assert kinds == [FaultKind.LATENCY, FaultKind.LOST_ANSWER, FaultKind.PARTIAL]


def test_unseeded_decider_still_decides() -> None:
    decision = _decider("a:*:error=1", seed=None).decide("Query")
    assert decision is not None and decision.stop is FaultKind.ERROR


# --------------------------------------------------------------------------- the log


def test_log_lines_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "faults.jsonl"
    log = FaultLog(path)
    partial = Fired(FaultRule("a", "PutRecords", FaultKind.PARTIAL, 0.05), 3)
    throttle = Fired(FaultRule("b", "*", FaultKind.THROTTLE, 1.0))
    event = fault_event(
        partial, side="a", region="us-east-1", service="kinesis", operation="PutRecords", at_ms=5
    )
    assert event == {
        "at_ms": 5, "side": "a", "region": "us-east-1", "service": "kinesis",
        "operation": "PutRecords", "kind": "partial", "value": 0.05, "entries": 3,
    }  # fmt: skip
    log.append(event)
    for _ in range(2):
        log.append(
            fault_event(
                throttle, side="b", region="us-east-2", service="dynamodb", operation="PutItem"
            )
        )
    log.close()
    log.append(event)  # after close: ignored, never written to a reused descriptor
    with open(path, "a") as handle:
        handle.write('{"kind": "error", "side": "a"')  # a torn last line
    counts = read_fault_log(path)
    assert counts == {
        "total": 3,
        "by_kind": {"partial": 1, "throttle": 2},
        "by_side": {"a": 1, "b": 2},
        "by_operation": {"PutItem": 2, "PutRecords": 1},
        "partial_entries": 3,
        "unreadable_lines": 1,
    }
    lines = path.read_text().splitlines()
    assert json.loads(lines[1])["value"] == 1 and "entries" not in json.loads(lines[1])


def test_missing_log_counts_nothing(tmp_path: Path) -> None:
    assert read_fault_log(tmp_path / "none.jsonl")["total"] == 0


def test_two_writers_sharing_a_file_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "faults.jsonl"
    logs = [FaultLog(path), FaultLog(path)]  # as two server processes would open it
    rule = FaultRule("a", "*", FaultKind.ERROR, 1.0)
    padding = "x" * 3000

    def write(log: FaultLog, side: str) -> None:
        event = fault_event(Fired(rule), side=side, region=padding, service="s", operation="Op")
        for _ in range(300):
            log.append(event)

    threads = [
        threading.Thread(target=write, args=(log, s)) for log, s in zip(logs, "ab", strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    for log in logs:
        log.close()
    counts = read_fault_log(path)
    assert counts["unreadable_lines"] == 0 and counts["by_side"] == {"a": 300, "b": 300}


# --------------------------------------------------------------------------- middleware


def test_operations_are_named_from_the_target_header_or_s3_rest() -> None:
    assert identify({"HTTP_X_AMZ_TARGET": "Kinesis_20131202.PutRecords"}) == (
        "kinesis",
        "PutRecords",
    )
    assert identify({"HTTP_X_AMZ_TARGET": "DynamoDBStreams_20120810.GetRecords"}) == (
        "dynamodbstreams",
        "GetRecords",
    )
    s3 = {"HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=t/20240101/us-east-1/s3/aws4_request"}
    assert identify({**s3, "REQUEST_METHOD": "PUT", "PATH_INFO": "/b/k"}) == ("s3", "PutObject")
    assert identify({"PATH_INFO": "/moto-api/"}) is None
    cases = {
        ("GET", "/", ""): "ListBuckets",
        ("PUT", "/b", ""): "CreateBucket",
        ("GET", "/b", "list-type=2&prefix=x"): "ListObjectsV2",
        ("GET", "/b", ""): "ListObjects",
        ("HEAD", "/b", ""): "HeadBucket",
        ("POST", "/b", "delete"): "DeleteObjects",
        ("PUT", "/b", "versioning"): "PutBucketVersioning",
        ("GET", "/b/k/x.json", ""): "GetObject",
        ("HEAD", "/b/k", ""): "HeadObject",
        ("DELETE", "/b/k", ""): "DeleteObject",
        ("POST", "/b/k", "uploads"): "CreateMultipartUpload",
        ("PUT", "/b/k", "partNumber=1&uploadId=u"): "UploadPart",
        ("POST", "/b/k", "uploadId=u"): "CompleteMultipartUpload",
    }
    for (method, path, query), operation in cases.items():
        assert s3_operation(method, path, query) == operation, (method, path, query)


def test_error_answers_are_each_services_own() -> None:
    def code(service: str, operation: str, kind: FaultKind) -> tuple[str, str]:
        answer = error_answer(service, operation, kind)
        if service == "s3":
            text = answer.body.decode()
            return answer.status[:3], text.split("<Code>")[1].split("<")[0]
        return answer.status[:3], json.loads(answer.body)["__type"].rsplit("#", 1)[-1]

    throttle, error = FaultKind.THROTTLE, FaultKind.ERROR
    assert code("kinesis", "PutRecords", throttle) == (
        "400",
        "ProvisionedThroughputExceededException",
    )
    assert code("kinesis", "DescribeStream", throttle) == ("400", "LimitExceededException")
    assert code("kinesis", "PutRecords", error) == ("500", "InternalFailure")
    assert code("dynamodb", "PutItem", throttle) == (
        "400",
        "ProvisionedThroughputExceededException",
    )
    assert code("dynamodb", "DescribeTable", throttle) == ("400", "ThrottlingException")
    assert code("dynamodb", "Query", error) == ("500", "InternalServerError")
    assert code("s3", "PutObject", throttle) == ("503", "SlowDown")
    assert code("s3", "GetObject", error) == ("500", "InternalError")


class _FakeSocket:
    def __init__(self) -> None:
        self.shut = False

    def shutdown(self, _how: int) -> None:
        self.shut = True


class _FakeKinesis:
    """Answers PutRecords like moto: one sequence number per record it was sent."""

    def __init__(self) -> None:
        self.sent: list[list[dict]] = []

    def __call__(self, environ: dict, start_response: Any) -> list[bytes]:
        body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        records = json.loads(body)["Records"]
        self.sent.append(records)
        answer = {
            "FailedRecordCount": 0,
            "Records": [{"SequenceNumber": r["Data"], "ShardId": "s-0"} for r in records],
        }
        data = json.dumps(answer).encode()
        start_response("200 OK", [("Content-Length", str(len(data)))])
        return [data]


def _put_records_environ(n: int) -> dict:
    body = json.dumps(
        {"StreamName": "s", "Records": [{"Data": str(i), "PartitionKey": "k"} for i in range(n)]}
    ).encode()
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/",
        "HTTP_X_AMZ_TARGET": "Kinesis_20131202.PutRecords",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "werkzeug.socket": _FakeSocket(),
    }


def _run(app: FaultInjector, environ: dict) -> tuple[str, dict]:
    got: dict[str, Any] = {}

    def start_response(status: str, headers: list) -> None:
        got["status"], got["headers"] = status, dict(headers)

    body = b"".join(app(environ, start_response))
    assert int(got["headers"]["Content-Length"]) == len(body)
    return got["status"], json.loads(body)


def test_partial_put_records_sends_survivors_and_answers_aligned(tmp_path: Path) -> None:
    moto = _FakeKinesis()
    app = FaultInjector(moto, side="a", region="us-east-1")
    app.configure("a:PutRecords:partial=0.5", seed=3, log=tmp_path / "f.jsonl")
    status, answer = _run(app, _put_records_environ(40))
    assert status == "200 OK"
    failed = [i for i, r in enumerate(answer["Records"]) if "ErrorCode" in r]
    assert 0 < len(failed) < 40 and answer["FailedRecordCount"] == len(failed)
    assert [r["Data"] for r in moto.sent[0]] == [str(i) for i in range(40) if i not in failed]
    for i, record in enumerate(answer["Records"]):
        if i in failed:
            assert record["ErrorCode"] == "ProvisionedThroughputExceededException"
            assert "SequenceNumber" not in record and "ShardId" not in record
        else:
            assert record["SequenceNumber"] == str(i)
    assert read_fault_log(tmp_path / "f.jsonl")["partial_entries"] == len(failed)
    assert app.status()["injected"] == {"partial": 1}


def test_partial_one_never_calls_moto_and_lost_answer_carries_out_then_drops() -> None:
    moto = _FakeKinesis()
    app = FaultInjector(moto, side="a", region="us-east-1")
    app.configure("a:PutRecords:partial=1")
    status, answer = _run(app, _put_records_environ(3))
    assert moto.sent == [] and answer["FailedRecordCount"] == 3
    app.configure("a:PutRecords:lost-answer=1")
    environ = _put_records_environ(2)
    with pytest.raises(AnswerDropped):
        app(environ, lambda *_: None)
    assert len(moto.sent) == 1 and environ["werkzeug.socket"].shut
    assert issubclass(AnswerDropped, ConnectionError)  # werkzeug's "connection dropped"


def test_no_faults_passes_through_and_admin_path_reconfigures() -> None:
    moto = _FakeKinesis()
    app = FaultInjector(moto, side="b", region="us-east-2")
    _run(app, _put_records_environ(2))
    assert len(moto.sent) == 1

    def admin(method: str, payload: Any = None) -> tuple[str, dict]:
        body = json.dumps(payload).encode() if payload is not None else b""
        environ = {"REQUEST_METHOD": method, "PATH_INFO": ADMIN_PATH,
                   "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)}  # fmt: skip
        return _run(app, environ)

    status, state = admin("POST", {"spec": "b:PutRecords:throttle=1", "seed": 9})
    assert status == "200 OK" and state["spec"] == "b:PutRecords:throttle=1" and state["seed"] == 9
    status, answer = _run(app, _put_records_environ(2))
    assert status.startswith("400") and len(moto.sent) == 1
    status, state = admin("POST", {"spec": "b:PutRecords:partial=7"})
    assert status.startswith("400") and "probability must be in 0..1" in state["error"]
    assert admin("GET")[1]["spec"] == "b:PutRecords:throttle=1"  # a refused spec changes nothing
    assert admin("POST", {"spec": None})[1]["spec"] is None
    _run(app, _put_records_environ(2))
    assert len(moto.sent) == 2


# --------------------------------------------------------------------------- loadgen options


def test_locust_faults_option_is_validated_and_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("XRH_")]:
        monkeypatch.delenv(name)
    options = load_options(SimpleNamespace(faults="a:PutRecords:partial=0.05"))
    assert options.faults == "a:PutRecords:partial=0.05"
    assert public_dict(options)["faults"] == "a:PutRecords:partial=0.05"
    assert load_options(SimpleNamespace(faults="")).faults is None
    monkeypatch.setenv("XRH_FAULTS", "b:*:latency=5")
    assert load_options(SimpleNamespace(faults="")).faults == "b:*:latency=5"
    with pytest.raises(LoadgenUsageError, match=r"^XRH_FAULTS 'b:\*:latency=-5': latency"):
        monkeypatch.setenv("XRH_FAULTS", "b:*:latency=-5")
        load_options(SimpleNamespace(faults=""))
    with pytest.raises(LoadgenUsageError, match="probability must be in 0..1"):
        load_options(SimpleNamespace(faults="a:PutRecords:partial=1.5"))
    with pytest.raises(LoadgenUsageError, match="injected by the embedded endpoint only"):
        load_options(SimpleNamespace(faults="a:*:error=0.1", endpoint="aws"))
    with pytest.raises(LoadgenUsageError, match="injected by the embedded endpoint only"):
        load_options(SimpleNamespace(faults="a:*:error=0.1", endpoint_url="http://127.0.0.1:4566"))
