"""The dynamodb pipeline as a replicator functional test uses it: provisioned in both regions
of the embedded endpoint under a unique prefix, and a table read whole."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from xrh.config import HarnessConfig, parse_config
from xrh.endpoint import EmbeddedEndpoint
from xrh.provision import destroy, provision


def provisioned_tables(
    endpoint: EmbeddedEndpoint, tmp_path: Path, tag: str
) -> Iterator[HarnessConfig]:
    """Provision, yield the config, destroy (while the endpoint lives); ``tag`` starts the
    prefix, so that tests sharing an endpoint never share tables."""
    prefix = f"{tag}{os.getpid() % 10000}-{time.monotonic_ns() % 100000}"
    config = parse_config(
        ["--pipeline", "dynamodb", "--prefix", prefix, "--runs-dir", str(tmp_path / "runs")],
        environ={},
    ).with_endpoints(endpoint.url_of("a"), endpoint.url_of("b"))
    provision(config)
    yield config
    if endpoint.alive():
        destroy(config)


def scan(client: Any, table: str, max_pages: int = 10_000) -> dict[str, dict]:
    """Every item of ``table`` (consistent reads) by its ``pk``."""
    items: dict[str, dict] = {}
    kwargs = {"TableName": table, "ConsistentRead": True}
    for _ in range(max_pages):
        page = client.scan(**kwargs)
        items.update({i["pk"]["S"]: i for i in page["Items"]})
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    raise AssertionError("scan did not end")
