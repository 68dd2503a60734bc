"""boto3 DynamoDB for the table pipelines: the BatchWriteItem sink.

:class:`DynamoTableWriter` is the :class:`~replicator.core.table_writes.TableWriteSink` of the
target table. botocore errors become the replicator's exceptions as for Kinesis
(:func:`translate`): throttling (``ProvisionedThroughputExceededException``,
``ThrottlingException``, ``RequestLimitExceeded``) and 5xx are retryable, a
``ValidationException`` is invalid (the batch writer bisects it down to the item at fault), a
missing table or no permission is terminal, a timeout or a dropped connection is an unknown
outcome. Build the client with botocore retries off (``total_max_attempts`` 1) so that the batch
writer's own backoff is the only one, and with a connection pool at least as large as the
writer's ``max_in_flight``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from botocore.exceptions import ClientError

from replicator.adapters.kinesis import translate as _translate_kinesis
from replicator.adapters.send_guard import SendGuard
from replicator.core.table_writes import WriteRequest, key_id
from replicator.errors import (
    InvalidRequestError,
    RetryableRequestError,
    SinkError,
)

#: DynamoDB codes that mean "nothing written, the same request may succeed later", beyond the
#: Kinesis ones :func:`replicator.adapters.kinesis.translate` knows.
RETRYABLE_CODES = frozenset({"RequestLimitExceeded", "TransactionInProgressException"})
#: Codes that mean "some item of the request is unacceptable": bisect, dead-letter it.
INVALID_CODES = frozenset({"ItemCollectionSizeLimitExceededException"})


def translate(exc: BaseException) -> SinkError:
    """A botocore exception from a DynamoDB call as a SinkError of the right kind."""
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code") or "")
        message = str(exc.response.get("Error", {}).get("Message") or exc)
        if code in RETRYABLE_CODES:
            return RetryableRequestError(message, code)
        if code in INVALID_CODES:
            return InvalidRequestError(message, code)
    return _translate_kinesis(exc)


class DynamoTableWriter:
    """TableWriteSink over a boto3 DynamoDB client (the target region).

    ``batch_write(..., guard=check)`` calls ``check`` once more in botocore's ``before-send``
    event, after the request was built and signed and before any byte leaves
    (:class:`~replicator.adapters.send_guard.SendGuard`, as for
    :class:`replicator.adapters.kinesis.KinesisSink`). Safe to call from several threads (the
    guard is per thread; boto3 clients are thread-safe).
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls = 0
        self._lock = threading.Lock()
        self._guard = SendGuard(client, "before-send.dynamodb.BatchWriteItem")

    def batch_write(
        self,
        table: str,
        requests: Sequence[WriteRequest],
        guard: Callable[[], object] | None = None,
    ) -> list[WriteRequest]:
        wire = [r.wire() for r in requests]
        with self._lock:
            self.calls += 1
        response = self._guard.call(
            guard, lambda: self.client.batch_write_item(RequestItems={table: wire}), translate
        )
        left = (response.get("UnprocessedItems") or {}).get(table) or []
        return unprocessed_requests(requests, left)


def unprocessed_requests(
    requests: Sequence[WriteRequest], unprocessed: Sequence[dict[str, Any]]
) -> list[WriteRequest]:
    """The requests that BatchWriteItem's ``UnprocessedItems`` for the table stand for."""
    if not unprocessed:
        return []
    by_key = {key_id(r.key): r for r in requests}
    names = list(requests[0].key)
    out = []
    for element in unprocessed:
        if "DeleteRequest" in element:
            key = element["DeleteRequest"]["Key"]
        else:
            item = element["PutRequest"]["Item"]
            key = {n: item[n] for n in names if n in item}
        request = by_key.get(key_id(key))
        if request is None:  # not one of ours: the answer is not trustworthy
            raise RetryableRequestError(f"UnprocessedItems names an unknown key {key}", "Unknown")
        out.append(request)
    return out
