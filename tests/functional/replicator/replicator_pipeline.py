"""A provisioned kinesis pipeline as a replicator functional test uses it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from xrh.aws import AwsClients
from xrh.config import HarnessConfig, Side
from xrh.resources import ResourceNames


class Pipeline(NamedTuple):
    """Unpack it in one line: ``config, names, clients, ka, kb, run_dir = pipeline``."""

    config: HarnessConfig
    names: ResourceNames
    clients: AwsClients
    ka: Any  # region A's Kinesis client
    kb: Any  # region B's Kinesis client
    run_dir: Path

    @classmethod
    def of(cls, config: HarnessConfig, run_dir: Path) -> Pipeline:
        clients = AwsClients(config)
        run_dir.mkdir()
        return cls(
            config, ResourceNames(config.prefix), clients,
            clients.client("kinesis", Side.A), clients.client("kinesis", Side.B), run_dir,
        )  # fmt: skip
