"""What every Lambda handler reads from its environment and how it builds its clients.

A handler is configured by environment variables: a missing one or a value that is not a
positive number is a :class:`~replicator.errors.ReplicatorUsageError` naming it. Clients are
built on the first invocation (nothing at import time) with boto3's own retries off: each
handler's core has its own backoff, and two layers of retries would multiply the wait.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from replicator.errors import ReplicatorUsageError

Clients = Callable[[str, "str | None"], Any]


def require(environ: dict[str, str], names: Iterable[str]) -> None:
    missing = [n for n in names if not environ.get(n)]
    if missing:
        raise ReplicatorUsageError(f"missing environment variables: {', '.join(missing)}")


def positive(environ: dict[str, str], name: str, default: str, kind: type = int) -> Any:
    """A positive ``kind`` (int, or float) from ``name``, else ``default``."""
    value = environ.get(name) or default
    try:
        number = kind(value)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise ReplicatorUsageError(f"{name}={value!r}: expected {what}") from None
    if number <= 0:
        raise ReplicatorUsageError(f"{name}={value!r}: must be positive")
    return number


def boto_clients(pool: int) -> Clients:
    """``clients(service, region)``: boto3 clients with retries off, a 10 s read timeout and a
    connection pool of ``pool`` (at least 10)."""
    import boto3
    from botocore.config import Config

    cfg = Config(
        retries={"total_max_attempts": 1}, read_timeout=10, max_pool_connections=max(10, pool)
    )

    def clients(service: str, region: str | None) -> Any:
        return boto3.client(service, region_name=region, config=cfg)

    return clients


def batch_item_failures(failed_from: str | None) -> dict[str, Any]:
    """The answer of a handler with ReportBatchItemFailures: nothing (the batch succeeded) or
    the sequence number Lambda retries from (acknowledgement is all or nothing from there)."""
    if failed_from is None:
        return {"batchItemFailures": []}
    return {"batchItemFailures": [{"itemIdentifier": failed_from}]}
