"""What the replicator benchmarks set up alike: one embedded endpoint per module, and a freshly
provisioned pipeline on it under a prefix of its own for each measured run."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

from xrh.config import HarnessConfig, parse_config
from xrh.endpoint import EmbeddedEndpoint
from xrh.provision import provision

_prefixes = itertools.count(1)


def embedded_endpoint(tmp_path_factory) -> Iterator[EmbeddedEndpoint]:
    """The body of a benchmark module's ``endpoint`` fixture (scope ``module``)."""
    config = parse_config(["--runs-dir", str(tmp_path_factory.mktemp("runs"))], environ={})
    with EmbeddedEndpoint(config) as started:
        yield started


def provisioned(endpoint: EmbeddedEndpoint, tag: str, pipeline: str = "kinesis") -> HarnessConfig:
    """A new pipeline in both regions of ``endpoint``, prefix ``<tag>-<pid>-<n>``."""
    prefix = f"{tag}-{os.getpid() % 10000}-{next(_prefixes)}"
    config = parse_config(["--pipeline", pipeline, "--prefix", prefix], environ={})
    config = config.with_endpoints(endpoint.url_of("a"), endpoint.url_of("b"))
    provision(config)
    return config
