"""boto3 clients for the two regions: one client per (service, region) per process.

Creating clients is slow and not thread-safe (REFERENCE.md, "Locust with boto3"), so a process
builds one :class:`AwsClients` and shares it. The connection pool is sized to the concurrency
the caller declares, avoiding botocore's "Connection pool is full, discarding connection".

botocore's own retries are a setting: producers and the replicator retry themselves (only the
failed entries, with their own backoff) and pass ``max_attempts=1`` so that a timeout surfaces
as "unknown" instead of being resent blindly. ``max_attempts`` counts every attempt, the first
included (botocore's ``total_max_attempts``): botocore's own ``max_attempts`` counts retries,
so ``1`` there means two sends, and a lost answer would silently write a record twice.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from xrh.config import EndpointMode, HarnessConfig, Side
from xrh.errors import UsageError

LOCAL_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


class AwsClients:
    """Lazily built, cached boto3 clients for region A and B of one configuration."""

    def __init__(
        self,
        config: HarnessConfig,
        *,
        max_pool_connections: int = 10,
        max_attempts: int = 3,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
    ) -> None:
        if config.endpoint_mode is not EndpointMode.AWS and (
            config.endpoint_url_a is None or config.endpoint_url_b is None
        ):
            raise UsageError(
                "no endpoint URL resolved: start the embedded endpoint first (xrh endpoint)"
            )
        self.config = config
        self._pool = max_pool_connections
        self._max_attempts = max_attempts
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._clients: dict[tuple[str, Side], Any] = {}
        self._lock = threading.Lock()
        self._session: Any = None

    def client(self, service: str, side: Side) -> Any:
        key = (service, side)
        client = self._clients.get(key)
        if client is None:
            with self._lock:
                client = self._clients.get(key)
                if client is None:
                    client = self._build(service, side)
                    self._clients[key] = client
        return client

    def _build(self, service: str, side: Side) -> Any:
        import boto3
        from botocore.config import Config

        if self._session is None:
            self._session = boto3.session.Session()
        config = Config(
            max_pool_connections=self._pool,
            retries={"total_max_attempts": self._max_attempts, "mode": "standard"},
            connect_timeout=self._connect_timeout,
            read_timeout=self._read_timeout,
            # Path-style S3 addressing works on moto, LocalStack and AWS alike.
            s3={"addressing_style": "path"},
        )
        kwargs: dict[str, Any] = {"region_name": self.config.region(side), "config": config}
        if self.config.endpoint_mode is not EndpointMode.AWS:
            kwargs["endpoint_url"] = self.config.endpoint_url(side)
            if self.config.endpoint_mode is EndpointMode.EMBEDDED or not os.environ.get(
                "AWS_ACCESS_KEY_ID"
            ):
                kwargs.update(LOCAL_CREDENTIALS)
        return self._session.client(service, **kwargs)
