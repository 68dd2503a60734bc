"""The item producer's boto3 DynamoDB sink: PutItem, UpdateItem, DeleteItem, BatchWriteItem.

Every failure of a call becomes an :class:`ItemRequestError` saying what the ledger needs: was
the write definitely not made (``fail``), and may it be sent again, or may it have been made
(``unknown``, never sent again). The line (REFERENCE.md, "DynamoDB"; DESIGN.md, "Ledger"):

- ``fail``, retried: a throttle (ProvisionedThroughputExceededException, ThrottlingException,
  RequestLimitExceeded, HTTP 429) or a connection that could not be opened (the request never
  reached the service);
- ``fail``, not retried: any other 4xx (ValidationException, ResourceNotFoundException, no
  permission) or a request botocore refused to build: it can never succeed as it is;
- ``unknown``: a read timeout, a connection dropped after the request left, any 5xx
  (InternalServerError: the service may have applied it) and anything unrecognised.

Clients must be built with botocore retries off (``AwsClients(max_attempts=1)``): a timeout then
surfaces here instead of being resent blindly.

Each call returns the request's size in bytes (the HTTP body botocore sent, taken from its
``before-send`` event), which Locust shows as the response length; with ``report`` set each call
is also timed (``perf_counter``, ms) and reported as ``report(name, ms, size, exc)``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from loadgen.routing import RoutedSink, WriteTarget

ItemReport = Callable[[str, float, int, BaseException | None], None]

THROTTLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "LimitExceededException",
        "TooManyRequestsException",
    }
)

FAIL = "fail"
UNKNOWN = "unknown"


class ItemRequestError(Exception):
    """A whole request failed. ``status``: ``fail`` (not written) or ``unknown`` (may be);
    ``retryable``: a ``fail`` that may succeed when sent again (throttle, no connection)."""

    def __init__(self, status: str, code: str, message: str, *, retryable: bool = False,
                 size: int = 0) -> None:  # fmt: skip
        super().__init__(f"{code}: {message}" if message else code)
        self.status = status
        self.code = code
        self.message = message
        self.retryable = retryable and status == FAIL
        self.size = size


class UnprocessedItems(Exception):
    """Part of a BatchWriteItem was not written (shown in Locust's failures; the producer
    retries exactly those items)."""


def classify(exc: BaseException) -> ItemRequestError:
    """A botocore exception as an :class:`ItemRequestError` (``fail`` / ``unknown``)."""
    from botocore.exceptions import (
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ParamValidationError,
    )

    if isinstance(exc, ItemRequestError):
        return exc
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "ClientError")
        message = str(error.get("Message") or exc)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in THROTTLE_CODES or status == 429:
            return ItemRequestError(FAIL, code, message, retryable=True)
        if status >= 500 or status == 0:
            return ItemRequestError(UNKNOWN, code, message)  # the service may have applied it
        return ItemRequestError(FAIL, code, message)
    if isinstance(exc, ConnectTimeoutError | EndpointConnectionError):
        return ItemRequestError(FAIL, type(exc).__name__, str(exc), retryable=True)
    if isinstance(exc, ParamValidationError):
        return ItemRequestError(FAIL, "ParamValidationError", str(exc))  # never sent
    # ReadTimeoutError, ConnectionClosedError, other HTTPClientError, anything else
    return ItemRequestError(UNKNOWN, type(exc).__name__, str(exc))


def _size_state(client: Any) -> Any:
    """A (thread- or, under gevent, greenlet-) local holding the size of the last request this
    thread sent through ``client``; the hook is registered once per client."""
    state = getattr(client, "_xrh_request_size", None)
    if state is None:
        state = threading.local()

        def before_send(request: Any = None, **_: Any) -> None:
            body = getattr(request, "body", None)
            state.size = len(body) if body else 0
            return None  # botocore sends the request

        events = getattr(getattr(client, "meta", None), "events", None)
        if events is not None:
            events.register("before-send.dynamodb", before_send)
        client._xrh_request_size = state
    return state


class DynamoItemSink:
    """The four item writes over one boto3 DynamoDB client (one region)."""

    def __init__(self, client: Any, report: ItemReport | None = None) -> None:
        self.client = client
        self.report = report
        self.calls = 0
        self._size = _size_state(client)

    def _call(self, name: str, method: Callable[..., Any], **kwargs: Any) -> tuple[Any, int]:
        self.calls += 1
        self._size.size = 0
        start = time.perf_counter()
        try:
            response = method(**kwargs)
        except BaseException as exc:
            ms = (time.perf_counter() - start) * 1000
            size = getattr(self._size, "size", 0)
            if not isinstance(exc, Exception):  # GreenletExit, KeyboardInterrupt: cut off
                if self.report is not None:
                    from loadgen.kinesis_sink import RequestCutOff

                    self.report(name, ms, size, RequestCutOff(ms))
                raise
            error = classify(exc)
            error.size = size
            if self.report is not None:
                self.report(name, ms, size, error)
            raise error from exc
        ms = (time.perf_counter() - start) * 1000
        size = getattr(self._size, "size", 0)
        if self.report is not None:
            unprocessed = _count_unprocessed(response) if name == "BatchWriteItem" else 0
            exc = None
            if unprocessed:
                total = sum(len(v) for v in kwargs["RequestItems"].values())
                exc = UnprocessedItems(f"{unprocessed} of {total} items unprocessed")
            self.report(name, ms, size, exc)
        return response, size

    def put_item(self, table: str, item: Mapping[str, Any]) -> int:
        return self._call("PutItem", self.client.put_item, TableName=table, Item=item)[1]

    def update_item(self, table: str, key: Mapping[str, Any], expression: str,
                    names: Mapping[str, str], values: Mapping[str, Any]) -> int:  # fmt: skip
        return self._call(
            "UpdateItem", self.client.update_item, TableName=table, Key=key,
            UpdateExpression=expression, ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )[1]  # fmt: skip

    def delete_item(self, table: str, key: Mapping[str, Any]) -> int:
        return self._call("DeleteItem", self.client.delete_item, TableName=table, Key=key)[1]

    def delete_item_old(self, table: str, key: Mapping[str, Any]) -> tuple[Any, int]:
        """A DeleteItem with ``ReturnValues=ALL_OLD``: (the item it removed or None, size);
        the active-active pipeline stamps a delete from the version it removed."""
        response, size = self._call("DeleteItem", self.client.delete_item, TableName=table,
                                    Key=key, ReturnValues="ALL_OLD")  # fmt: skip
        return response.get("Attributes") or None, size

    def batch_write(self, table: str, requests: Sequence[Mapping[str, Any]],
                    key_name: str) -> tuple[list[str], int]:  # fmt: skip
        """One BatchWriteItem; returns (the hash keys of the unprocessed requests, size)."""
        response, size = self._call(
            "BatchWriteItem", self.client.batch_write_item, RequestItems={table: list(requests)}
        )
        keys = []
        for request in (response.get("UnprocessedItems") or {}).get(table, ()):
            if "PutRequest" in request:
                keys.append(request["PutRequest"]["Item"][key_name]["S"])
            else:
                keys.append(request["DeleteRequest"]["Key"][key_name]["S"])
        return keys, size


def _count_unprocessed(response: Mapping[str, Any]) -> int:
    return sum(len(v) for v in (response.get("UnprocessedItems") or {}).values())


class RoutedItemSink(RoutedSink):
    """The item sinks of both regions; :meth:`pin` (inherited) chooses one for the next write
    and its retries (:mod:`loadgen.routing`)."""

    def __init__(self, sinks: Mapping[Any, DynamoItemSink], target: WriteTarget) -> None:
        super().__init__(dict(sinks), target)  # type: ignore[arg-type]

    @property
    def _sink(self) -> DynamoItemSink:
        return self._sinks[self._pinned]  # type: ignore[return-value]

    def put_item(self, table: str, item: Mapping[str, Any]) -> int:
        return self._sink.put_item(table, item)

    def update_item(self, table: str, key: Mapping[str, Any], expression: str,
                    names: Mapping[str, str], values: Mapping[str, Any]) -> int:  # fmt: skip
        return self._sink.update_item(table, key, expression, names, values)

    def delete_item(self, table: str, key: Mapping[str, Any]) -> int:
        return self._sink.delete_item(table, key)

    def delete_item_old(self, table: str, key: Mapping[str, Any]) -> tuple[Any, int]:
        return self._sink.delete_item_old(table, key)

    def batch_write(self, table: str, requests: Sequence[Mapping[str, Any]],
                    key_name: str) -> tuple[list[str], int]:  # fmt: skip
        return self._sink.batch_write(table, requests, key_name)
