"""botocore failures of a PutRecords call, classified once for the replicator and producers:
what was definitely not written is retryable or invalid; what may have been written is unknown."""

from __future__ import annotations

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    ParamValidationError,
    ReadTimeoutError,
)

from replicator.adapters.kinesis import translate
from replicator.errors import (
    InvalidRequestError,
    RetryableRequestError,
    TerminalRequestError,
    UnknownOutcomeError,
)


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": f"{code}!"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "PutRecords",
    )


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (client_error("ProvisionedThroughputExceededException", 400), RetryableRequestError),
        (client_error("SomethingNew", 503), RetryableRequestError),
        (client_error("TooManyRequests", 429), RetryableRequestError),
        (client_error("ValidationException", 400), InvalidRequestError),
        (client_error("ResourceNotFoundException", 400), TerminalRequestError),
        (client_error("AccessDeniedException", 403), TerminalRequestError),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), RetryableRequestError),
        (ParamValidationError(report="bad"), InvalidRequestError),
        (ReadTimeoutError(endpoint_url="http://127.0.0.1:1"), UnknownOutcomeError),
        (ConnectionClosedError(endpoint_url="http://127.0.0.1:1"), UnknownOutcomeError),
        (RuntimeError("anything else"), UnknownOutcomeError),
    ],
)
def test_translate(exc: Exception, kind: type) -> None:
    assert type(translate(exc)) is kind
