"""One small backend per resource kind: exists, create (and wait until usable), delete.

Every AWS call goes through :func:`call`, which retries connection failures and throttling with
exponential backoff and then raises :class:`~xrh.errors.ProvisionError` naming the endpoint, so an
unreachable endpoint is reported, not a traceback.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, Protocol

from xrh.aws import AwsClients
from xrh.config import Side
from xrh.errors import ProvisionError
from xrh.resources import BucketSpec, ResourceSpec, StreamSpec, TableSpec

Sleep = Callable[[float], None]

RETRIES = 6
WAIT_TIMEOUT_S = 300.0
_RETRYABLE_CODES = {
    "ThrottlingException",
    "LimitExceededException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "InternalFailure",
    "ServiceUnavailable",
}


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def call(client: Any, operation: str, sleep: Sleep = time.sleep, **kwargs: Any) -> Any:
    """``client.<operation>(**kwargs)`` with backoff on connection errors and throttling."""
    from botocore.exceptions import ClientError, ConnectionError, EndpointConnectionError

    delay = 0.2
    for attempt in range(1, RETRIES + 1):
        try:
            return getattr(client, operation)(**kwargs)
        except (EndpointConnectionError, ConnectionError) as exc:
            if attempt == RETRIES:
                raise ProvisionError(
                    f"{client.meta.endpoint_url} ({client.meta.region_name}) is unreachable after "
                    f"{RETRIES} attempts: {exc}"
                ) from exc
        except ClientError as exc:
            if _code(exc) not in _RETRYABLE_CODES or attempt == RETRIES:
                raise
        sleep(random.uniform(0, delay))
        delay = min(delay * 2, 5.0)
    raise AssertionError("unreachable")  # pragma: no cover


def _wait(
    check: Callable[[], bool], what: str, sleep: Sleep, timeout: float = WAIT_TIMEOUT_S
) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.1
    while not check():
        if time.monotonic() > deadline:
            raise ProvisionError(f"{what} did not become ready within {timeout:.0f}s")
        sleep(delay)
        delay = min(delay * 2, 5.0)


class Backend(Protocol):
    def exists(self, clients: AwsClients, side: Side, spec: Any) -> bool: ...
    def create(self, clients: AwsClients, side: Side, spec: Any, sleep: Sleep) -> None: ...
    def delete(self, clients: AwsClients, side: Side, spec: Any, sleep: Sleep) -> None: ...


class StreamBackend:
    def _status(
        self, clients: AwsClients, side: Side, name: str, sleep: Sleep = time.sleep
    ) -> str | None:
        from botocore.exceptions import ClientError

        try:
            summary = call(
                clients.client("kinesis", side), "describe_stream_summary", sleep, StreamName=name
            )
        except ClientError as exc:
            if _code(exc) == "ResourceNotFoundException":
                return None
            raise
        return str(summary["StreamDescriptionSummary"]["StreamStatus"])

    def exists(self, clients: AwsClients, side: Side, spec: StreamSpec) -> bool:
        return self._status(clients, side, spec.name) not in (None, "DELETING")

    def create(self, clients: AwsClients, side: Side, spec: StreamSpec, sleep: Sleep) -> None:
        kinesis = clients.client("kinesis", side)
        call(kinesis, "create_stream", sleep, StreamName=spec.name, ShardCount=spec.shards)
        _wait(
            lambda: self._status(clients, side, spec.name, sleep) == "ACTIVE",
            f"stream {spec.name}",
            sleep,
        )

    def delete(self, clients: AwsClients, side: Side, spec: StreamSpec, sleep: Sleep) -> None:
        kinesis = clients.client("kinesis", side)
        call(kinesis, "delete_stream", sleep, StreamName=spec.name, EnforceConsumerDeletion=True)
        _wait(
            lambda: self._status(clients, side, spec.name, sleep) is None,
            f"deleting {spec.name}",
            sleep,
        )


class TableBackend:
    def _status(
        self, clients: AwsClients, side: Side, name: str, sleep: Sleep = time.sleep
    ) -> str | None:
        from botocore.exceptions import ClientError

        try:
            table = call(clients.client("dynamodb", side), "describe_table", sleep, TableName=name)
        except ClientError as exc:
            if _code(exc) == "ResourceNotFoundException":
                return None
            raise
        return str(table["Table"]["TableStatus"])

    def exists(self, clients: AwsClients, side: Side, spec: TableSpec) -> bool:
        return self._status(clients, side, spec.name) not in (None, "DELETING")

    def create(self, clients: AwsClients, side: Side, spec: TableSpec, sleep: Sleep) -> None:
        dynamodb = clients.client("dynamodb", side)
        keys = [(spec.hash_key, "HASH")] + ([(spec.range_key, "RANGE")] if spec.range_key else [])
        kwargs: dict[str, Any] = {
            "TableName": spec.name,
            "KeySchema": [{"AttributeName": n, "KeyType": t} for n, t in keys],
            "AttributeDefinitions": [{"AttributeName": n, "AttributeType": "S"} for n, _ in keys],
            "BillingMode": "PAY_PER_REQUEST",
        }
        if spec.stream_view_type:
            kwargs["StreamSpecification"] = {
                "StreamEnabled": True,
                "StreamViewType": spec.stream_view_type,
            }
        call(dynamodb, "create_table", sleep, **kwargs)
        _wait(
            lambda: self._status(clients, side, spec.name, sleep) == "ACTIVE",
            f"table {spec.name}",
            sleep,
        )
        for item in spec.items:
            call(
                dynamodb,
                "put_item",
                sleep,
                TableName=spec.name,
                Item={k: {"S": str(v)} for k, v in item.items()},
            )

    def delete(self, clients: AwsClients, side: Side, spec: TableSpec, sleep: Sleep) -> None:
        call(clients.client("dynamodb", side), "delete_table", sleep, TableName=spec.name)
        _wait(
            lambda: self._status(clients, side, spec.name, sleep) is None,
            f"deleting {spec.name}",
            sleep,
        )


class BucketBackend:
    def exists(self, clients: AwsClients, side: Side, spec: BucketSpec) -> bool:
        from botocore.exceptions import ClientError

        try:
            call(clients.client("s3", side), "head_bucket", Bucket=spec.name)
        except ClientError as exc:
            if _code(exc) in ("404", "NoSuchBucket", "NotFound"):
                return False
            raise ProvisionError(f"bucket {spec.name}: {exc}") from exc
        return True

    def create(self, clients: AwsClients, side: Side, spec: BucketSpec, sleep: Sleep) -> None:
        s3 = clients.client("s3", side)
        region = clients.config.region(side)
        kwargs: dict[str, Any] = {"Bucket": spec.name}
        if region != "us-east-1":  # us-east-1 rejects an explicit location constraint
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        call(s3, "create_bucket", sleep, **kwargs)

    def delete(self, clients: AwsClients, side: Side, spec: BucketSpec, sleep: Sleep) -> None:
        s3 = clients.client("s3", side)
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=spec.name):
            keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
            if keys:
                call(s3, "delete_objects", sleep, Bucket=spec.name, Delete={"Objects": keys})
        call(s3, "delete_bucket", sleep, Bucket=spec.name)


_BACKENDS: dict[type, Backend] = {
    StreamSpec: StreamBackend(),
    TableSpec: TableBackend(),
    BucketSpec: BucketBackend(),
}


def backend_for(spec: ResourceSpec) -> Backend:
    return _BACKENDS[type(spec)]
