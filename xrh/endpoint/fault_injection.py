"""WSGI middleware that injects faults in front of moto, inside each embedded server process.

The spec, the decisions and the log format are :mod:`xrh.faults`; this module applies them to
HTTP requests. It sits between werkzeug's server and moto's ``DomainDispatcherApplication``:

- the operation comes from ``X-Amz-Target`` (``Kinesis_20131202.PutRecords``,
  ``DynamoDB_20120810.PutItem``, ``DynamoDBStreams_20120810.GetRecords``) or, for S3's REST API,
  from the method, path and query (:func:`s3_operation`); anything else is never faulted;
- ``/moto-api/`` (health checks) and the admin path are never faulted;
- throttle and error answer at once in the service's own error shape, without calling moto;
- partial rewrites PutRecords or BatchWriteItem to send moto only the surviving entries, then
  merges moto's answer back into a full answer aligned with the request;
- lost-answer lets moto carry the request out, then shuts the socket down and ends the
  request with a ``ConnectionError``, which werkzeug's server treats as a dropped connection
  (no answer, no 500, no log line): the client sees the connection closed with no response;
- latency sleeps before the answer (or the drop) goes out.

With no spec configured the request costs one attribute read and one string prefix check.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import threading
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from xrh.errors import UsageError
from xrh.faults import (
    Decision,
    FaultDecider,
    FaultKind,
    FaultLog,
    FaultPlan,
    Fired,
    fault_event,
    parse_faults,
    seeded_random,
)

ADMIN_PATH = "/_xrh/faults"
_ADMIN_PREFIX = "/_xrh/"
_MOTO_API_PREFIX = "/moto-api"
ACCOUNT_ID = "123456789012"  # moto's default account, named in error messages as AWS would

StartResponse = Callable[..., Any]
Environ = dict[str, Any]

_SERVICES = {
    "Kinesis_20131202": "kinesis",
    "DynamoDB_20120810": "dynamodb",
    "DynamoDBStreams_20120810": "dynamodbstreams",
}
_KINESIS_DATA_PLANE = frozenset(
    {"PutRecord", "PutRecords", "GetRecords", "GetShardIterator", "SubscribeToShard"}
)
_DYNAMODB_DATA_PLANE = frozenset(
    {
        "GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan", "BatchGetItem",
        "BatchWriteItem", "TransactGetItems", "TransactWriteItems", "ExecuteStatement",
        "BatchExecuteStatement", "ExecuteTransaction",
    }
)  # fmt: skip


class AnswerDropped(ConnectionAbortedError):
    """Raised after a lost-answer fault shut the socket down. A ``ConnectionError``, so
    werkzeug's request handler ends the request silently, writing nothing."""


# --------------------------------------------------------------------------- operations


def identify(environ: Environ) -> tuple[str, str] | None:
    """``(service, operation)`` of a request, or None when it is not one we can name."""
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        prefix, _, operation = target.partition(".")
        if not operation:
            return None
        return _SERVICES.get(prefix, prefix.split("_", 1)[0].lower()), operation
    if "/s3/" in environ.get("HTTP_AUTHORIZATION", ""):
        return "s3", s3_operation(
            environ.get("REQUEST_METHOD", "GET"),
            environ.get("PATH_INFO", "/"),
            environ.get("QUERY_STRING", ""),
            environ,
        )
    return None


_S3_BUCKET_SUBRESOURCES = {
    "acl": "BucketAcl", "cors": "BucketCors", "encryption": "BucketEncryption",
    "lifecycle": "BucketLifecycleConfiguration", "location": "BucketLocation",
    "logging": "BucketLogging", "notification": "BucketNotificationConfiguration",
    "ownershipControls": "BucketOwnershipControls", "policy": "BucketPolicy",
    "publicAccessBlock": "PublicAccessBlock", "replication": "BucketReplication",
    "tagging": "BucketTagging", "versioning": "BucketVersioning", "website": "BucketWebsite",
}  # fmt: skip


def s3_operation(method: str, path: str, query: str, environ: Environ | None = None) -> str:
    """A simple mapping of S3's REST requests (path-style) to operation names."""
    query_keys = {key for key, _ in parse_qsl(query, keep_blank_values=True)}
    parts = path.lstrip("/").split("/", 1)
    bucket, key = parts[0], (parts[1] if len(parts) > 1 else "")
    if not bucket:
        return "ListBuckets"
    if not key:
        for name, suffix in _S3_BUCKET_SUBRESOURCES.items():
            if name in query_keys:
                verb = {"GET": "Get", "PUT": "Put", "DELETE": "Delete"}.get(method, "Get")
                return verb + suffix
        if method == "POST" and "delete" in query_keys:
            return "DeleteObjects"
        if method == "GET" and "uploads" in query_keys:
            return "ListMultipartUploads"
        if method == "GET" and "versions" in query_keys:
            return "ListObjectVersions"
        return {
            "PUT": "CreateBucket",
            "DELETE": "DeleteBucket",
            "HEAD": "HeadBucket",
        }.get(method, "ListObjectsV2" if "list-type" in query_keys else "ListObjects")
    if "tagging" in query_keys:
        return {"PUT": "PutObjectTagging", "DELETE": "DeleteObjectTagging"}.get(
            method, "GetObjectTagging"
        )
    if method == "POST":
        return "CreateMultipartUpload" if "uploads" in query_keys else "CompleteMultipartUpload"
    if method == "PUT":
        if "uploadId" in query_keys:
            return "UploadPart"
        copying = environ is not None and "HTTP_X_AMZ_COPY_SOURCE" in environ
        return "CopyObject" if copying else "PutObject"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in query_keys else "DeleteObject"
    if method == "HEAD":
        return "HeadObject"
    return "ListParts" if "uploadId" in query_keys else "GetObject"


# --------------------------------------------------------------------------- error answers


@dataclass(frozen=True, slots=True)
class Answer:
    status: str
    headers: list[tuple[str, str]]
    body: bytes


def _json_answer(status: str, payload: Any, content_type: str) -> Answer:
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = [
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("x-amzn-RequestId", str(uuid.uuid4())),
    ]
    if content_type.endswith("1.0"):  # DynamoDB: botocore checks this checksum when present
        headers.append(("x-amz-crc32", str(zlib.crc32(body) & 0xFFFFFFFF)))
    return Answer(status, headers, body)


def error_answer(service: str, operation: str, kind: FaultKind, method: str = "POST") -> Answer:
    """The answer AWS gives when it throttles or fails a request of ``service``."""
    throttled = kind is FaultKind.THROTTLE
    if service == "s3":
        code, status, message = (
            ("SlowDown", "503 Slow Down", "Please reduce your request rate.")
            if throttled
            else ("InternalError", "500 Internal Server Error",
                  "We encountered an internal error. Please try again.")
        )  # fmt: skip
        request_id = uuid.uuid4().hex[:16].upper()
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message>"
            f"<RequestId>{request_id}</RequestId></Error>"
        ).encode()
        if method == "HEAD":
            body = b""
        headers = [
            ("Content-Type", "application/xml"),
            ("Content-Length", str(len(body))),
            ("x-amz-request-id", request_id),
        ]
        return Answer(status, headers, body)
    if service in ("dynamodb", "dynamodbstreams"):
        content_type = "application/x-amz-json-1.0"
        if not throttled:
            error_type = "com.amazonaws.dynamodb.v20120810#InternalServerError"
            message = "Internal server error"
        elif service == "dynamodbstreams":
            error_type = "com.amazonaws.dynamodb.v20120810#LimitExceededException"
            message = "Rate exceeded"
        elif operation in _DYNAMODB_DATA_PLANE:
            error_type = "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"
            message = (
                "The level of configured provisioned throughput for the table was exceeded. "
                "Consider increasing your provisioning level with the UpdateTable API."
            )
        else:
            error_type = "com.amazon.coral.availability#ThrottlingException"
            message = "Rate exceeded"
    else:
        content_type = "application/x-amz-json-1.1"
        if not throttled:
            error_type, message = "InternalFailure", "Internal service failure."
        elif service == "kinesis" and operation in _KINESIS_DATA_PLANE:
            error_type, message = "ProvisionedThroughputExceededException", "Rate exceeded."
        elif service == "kinesis":
            error_type, message = "LimitExceededException", "Rate exceeded."
        else:
            error_type, message = "ThrottlingException", "Rate exceeded"
    status = "400 Bad Request" if throttled else "500 Internal Server Error"
    return _json_answer(status, {"__type": error_type, "message": message}, content_type)


# --------------------------------------------------------------------------- the middleware


@dataclass(frozen=True, slots=True)
class _Active:
    """The faults in force, with their log and counts; replaced whole on reconfiguration and
    read once per request, so a request never mixes two configurations."""

    plan: FaultPlan
    decider: FaultDecider
    log: FaultLog | None
    counts: Counter[str]
    lock: threading.Lock


class FaultInjector:
    """Wraps a WSGI app (moto's) and injects the configured faults of one region."""

    def __init__(
        self,
        app: Callable[[Environ, StartResponse], Iterable[bytes]],
        *,
        side: str,
        region: str,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._app = app
        self.side = side
        self.region = region
        self._sleep = sleep
        self._active: _Active | None = None
        self._config_lock = threading.Lock()
        self._spec: str | None = None
        self._seed: int | None = None
        self._log: FaultLog | None = None
        self._counts: Counter[str] = Counter()

    # ------------------------------------------------------------------ configuration

    def configure(
        self, spec: str | None, *, seed: int | None = None, log: Path | str | None = None,
        keep_log: bool = False,
    ) -> None:  # fmt: skip
        """Replace the faults in force. ``log``: a path, or None for no log (unless
        ``keep_log``, which keeps the current one). Raises UsageError for a bad spec."""
        plan = parse_faults(spec, source="faults")
        with self._config_lock:
            old_log = self._log
            if not keep_log:
                self._log = FaultLog(Path(log)) if log else None
            self._spec = plan.spec if plan else None
            self._seed = seed
            self._counts = Counter()  # "injected" counts since the faults were last set
            self._active = (
                _Active(
                    plan,
                    FaultDecider(plan, self.side, seeded_random(seed, self.side)),
                    self._log,
                    self._counts,
                    threading.Lock(),
                )
                if plan
                else None
            )
            if old_log is not None and old_log is not self._log:
                old_log.close()

    def status(self) -> dict[str, Any]:
        log = self._log
        return {
            "side": self.side,
            "region": self.region,
            "spec": self._spec,
            "seed": self._seed,
            "log": str(log.path) if log else None,
            "injected": dict(sorted(self._counts.items())),
        }

    # ------------------------------------------------------------------ WSGI

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        active = self._active
        path = environ.get("PATH_INFO", "")
        if path.startswith(_ADMIN_PREFIX):
            return self._admin(environ, start_response)
        if active is None or path.startswith(_MOTO_API_PREFIX):
            return self._app(environ, start_response)
        named = identify(environ)
        if named is None or not active.decider.applies(named[1]):
            return self._app(environ, start_response)
        return self._inject(active, named[0], named[1], environ, start_response)

    def _inject(
        self,
        active: _Active,
        service: str,
        operation: str,
        environ: Environ,
        start_response: StartResponse,
    ) -> Iterable[bytes]:
        body: bytes | None = None
        request: Any = None
        entries = 0
        if active.decider.wants_entries(operation):
            body = _read_body(environ)
            request, entries = _batch_entries(operation, body)
        decision = active.decider.decide(operation, entries)
        if body is not None:
            _replace_body(environ, body)
        if decision is None:
            return self._app(environ, start_response)
        for fired in decision.fired:
            if fired.rule.kind is not FaultKind.PARTIAL:
                self._record(active, fired, service, operation)
        if decision.stop is not None:
            answer = error_answer(service, operation, decision.stop, environ["REQUEST_METHOD"])
        elif decision.failed and request is not None:
            answer = self._partial(operation, request, decision, environ)
            for fired in decision.fired:
                if fired.rule.kind is FaultKind.PARTIAL:
                    self._record(active, fired, service, operation)
        else:
            answer = _call(self._app, environ)
        if decision.latency_ms > 0:
            self._sleep(decision.latency_ms / 1000.0)
        if decision.lost_answer and decision.stop is None:
            _drop_connection(environ)
        start_response(answer.status, answer.headers)
        return [answer.body]

    def _record(self, active: _Active, fired: Fired, service: str, operation: str) -> None:
        with active.lock:
            active.counts[fired.rule.kind.value] += 1
        if active.log is not None:
            active.log.append(
                fault_event(
                    fired, side=self.side, region=self.region, service=service,
                    operation=operation,
                )
            )  # fmt: skip

    def _partial(
        self, operation: str, request: Any, decision: Decision, environ: Environ
    ) -> Answer:
        failed = frozenset(decision.failed)
        if operation == "PutRecords":
            return _partial_put_records(self._app, environ, request, failed)
        return _partial_batch_write(self._app, environ, request, failed)

    # ------------------------------------------------------------------ admin

    def _admin(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        if environ.get("PATH_INFO", "").rstrip("/") != ADMIN_PATH:
            return _plain(start_response, "404 Not Found", {"error": "unknown admin path"})
        if method == "GET":
            return _plain(start_response, "200 OK", self.status())
        if method != "POST":
            return _plain(start_response, "405 Method Not Allowed", {"error": "GET or POST"})
        try:
            payload = json.loads(_read_body(environ) or b"{}")
            if not isinstance(payload, dict):
                raise ValueError("expected a JSON object")
            seed = payload.get("seed")
            if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
                raise ValueError(f"seed must be a whole number, not {seed!r}")
            spec = payload.get("spec")
            if spec is not None and not isinstance(spec, str):
                raise ValueError(f"spec must be a string or null, not {spec!r}")
            log = payload.get("log")
            self.configure(spec, seed=seed, log=log or None, keep_log=log is None)
        except (ValueError, UsageError, OSError) as exc:
            return _plain(start_response, "400 Bad Request", {"error": str(exc)})
        return _plain(start_response, "200 OK", self.status())


# --------------------------------------------------------------------------- helpers


def _plain(start_response: StartResponse, status: str, payload: Any) -> list[bytes]:
    body = json.dumps(payload).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def _read_body(environ: Environ) -> bytes:
    stream = environ["wsgi.input"]
    if environ.get("wsgi.input_terminated"):
        return stream.read()
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    return stream.read(length) if length > 0 else b""


def _replace_body(environ: Environ, body: bytes) -> None:
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    environ.pop("wsgi.input_terminated", None)
    environ.pop("HTTP_TRANSFER_ENCODING", None)


def _batch_entries(operation: str, body: bytes) -> tuple[Any, int]:
    """The parsed request and its number of entries; (None, 0) if it is not what we expect,
    in which case moto answers it as it is (with its own validation error)."""
    try:
        request = json.loads(body)
        if operation == "PutRecords":
            records = request.get("Records")
            return (request, len(records)) if isinstance(records, list) else (None, 0)
        items = request.get("RequestItems")
        if isinstance(items, dict) and all(isinstance(v, list) for v in items.values()):
            return request, sum(len(v) for v in items.values())
    except (ValueError, AttributeError):
        pass
    return None, 0


def _call(app: Callable[..., Iterable[bytes]], environ: Environ) -> Answer:
    """Run the wrapped app to completion and capture its answer."""
    captured: dict[str, Any] = {}
    chunks: list[bytes] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        captured["status"], captured["headers"] = status, list(headers)
        return chunks.append

    result = app(environ, start_response)
    try:
        chunks.extend(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return Answer(captured["status"], captured["headers"], b"".join(chunks))


def _rewrite(answer: Answer, payload: Any) -> Answer:
    """moto's answer with a new JSON body; length and DynamoDB checksum follow the body."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = [
        (k, v) for k, v in answer.headers if k.lower() not in ("content-length", "x-amz-crc32")
    ]
    headers.append(("Content-Length", str(len(body))))
    if any(k.lower() == "x-amz-crc32" for k, _ in answer.headers):
        headers.append(("x-amz-crc32", str(zlib.crc32(body) & 0xFFFFFFFF)))
    return Answer(answer.status, headers, body)


def _partial_put_records(
    app: Callable[..., Iterable[bytes]], environ: Environ, request: dict, failed: frozenset[int]
) -> Answer:
    records = request["Records"]
    stream = request.get("StreamName") or str(request.get("StreamARN", "")).rsplit("/", 1)[-1]
    failure = {
        "ErrorCode": "ProvisionedThroughputExceededException",
        "ErrorMessage": f"Rate exceeded for stream {stream} under account {ACCOUNT_ID}.",
    }
    survivors = [r for i, r in enumerate(records) if i not in failed]
    if not survivors:
        return _json_answer(
            "200 OK",
            {"FailedRecordCount": len(records), "Records": [dict(failure) for _ in records]},
            "application/x-amz-json-1.1",
        )
    _replace_body(environ, json.dumps({**request, "Records": survivors}).encode())
    answer = _call(app, environ)
    if not answer.status.startswith("200"):
        return answer  # moto refused the request as a whole: pass its error on
    payload = json.loads(answer.body)
    written = iter(payload.get("Records") or [])
    merged = [dict(failure) if i in failed else next(written) for i in range(len(records))]
    payload["Records"] = merged
    payload["FailedRecordCount"] = sum(1 for r in merged if "ErrorCode" in r)
    return _rewrite(answer, payload)


def _partial_batch_write(
    app: Callable[..., Iterable[bytes]], environ: Environ, request: dict, failed: frozenset[int]
) -> Answer:
    survivors: dict[str, list] = {}
    unprocessed: dict[str, list] = {}
    index = 0
    for table, items in request["RequestItems"].items():
        for item in items:
            (unprocessed if index in failed else survivors).setdefault(table, []).append(item)
            index += 1
    if not survivors:
        return _json_answer(
            "200 OK", {"UnprocessedItems": unprocessed}, "application/x-amz-json-1.0"
        )
    _replace_body(environ, json.dumps({**request, "RequestItems": survivors}).encode())
    answer = _call(app, environ)
    if not answer.status.startswith("200"):
        return answer
    payload = json.loads(answer.body)
    merged = payload.get("UnprocessedItems") or {}
    for table, items in unprocessed.items():
        merged.setdefault(table, []).extend(items)
    payload["UnprocessedItems"] = merged
    return _rewrite(answer, payload)


def _drop_connection(environ: Environ) -> None:
    """Close the connection without a byte of answer, then end the request (AnswerDropped)."""
    sock = environ.get("werkzeug.socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    raise AnswerDropped("lost-answer fault: the request was carried out, its answer dropped")
