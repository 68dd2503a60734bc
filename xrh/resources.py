"""Declarative definitions of the AWS resources each pipeline needs, per region.

A pipeline is a function from the configuration to a list of specs; provisioning
(:mod:`xrh.provision`) turns specs into create, check and delete calls. A new pipeline (the
DynamoDB ones of DESIGN.md) adds its tables here as more specs, and provisioning needs no change.

Names are fixed contracts shared by the replicator, the load generator and verify:

=======================  ====================================  ===============================
resource                 name                                  key schema
=======================  ====================================  ===============================
source/target stream     ``{prefix}-stream``                   (Kinesis, same name in A and B)
active-region table      ``{prefix}-active-region``            HASH ``streamName`` (S)
checkpoint table         ``{prefix}-checkpoints``              HASH ``scope`` (S), RANGE ``shardId`` (S)
lease table              ``{prefix}-leases``                   HASH ``leaseKey`` (S)
dead-letter bucket       ``{prefix}-dead-letter-{region}``     S3 (bucket names are global)
items table              ``{prefix}-items``                    HASH ``pk`` (S); stream
                                                               NEW_AND_OLD_IMAGES in A
                                                               (``dynamodb`` pipeline)
actions stream           ``{prefix}-actions``                  (Kinesis, in A: the table's log,
                                                               ``action-log`` pipeline)
staging stream           ``{prefix}-staging``                  (Kinesis, in A and B: the other
                                                               region's changes to apply,
                                                               ``active-active`` pipeline)
change stream            ``{prefix}-cdc``                      (Kinesis, in A and B: capture
                                                               writes A's, the kinesis
                                                               replicator copies it to B,
                                                               ``postgres-cdc`` pipeline)
=======================  ====================================  ===============================

The active-region table is seeded with ``{"streamName": <stream>, "activeRegion": <region A>}``
in both regions, as the seed's global table would hold it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from xrh.config import HarnessConfig, Side
from xrh.contracts import (
    ITEM_KEY,
    WATERMARK_SHARD_ID,  # noqa: F401  (re-exported: the watermark row)
)


@dataclass(frozen=True, slots=True)
class ResourceNames:
    prefix: str

    @property
    def stream(self) -> str:
        return f"{self.prefix}-stream"

    @property
    def active_region_table(self) -> str:
        return f"{self.prefix}-active-region"

    @property
    def checkpoint_table(self) -> str:
        return f"{self.prefix}-checkpoints"

    @property
    def lease_table(self) -> str:
        return f"{self.prefix}-leases"

    @property
    def actions_stream(self) -> str:
        return f"{self.prefix}-actions"

    @property
    def staging_stream(self) -> str:
        return f"{self.prefix}-staging"

    @property
    def cdc_stream(self) -> str:
        return f"{self.prefix}-cdc"

    @property
    def items_table(self) -> str:
        return f"{self.prefix}-items"

    def dead_letter_bucket(self, region: str) -> str:
        return f"{self.prefix}-dead-letter-{region}"


@dataclass(frozen=True, slots=True)
class StreamSpec:
    name: str
    shards: int

    kind = "kinesis stream"


@dataclass(frozen=True, slots=True)
class TableSpec:
    """An on-demand DynamoDB table; ``items`` are written once, when the table is created."""

    name: str
    hash_key: str
    range_key: str | None = None
    stream_view_type: str | None = None
    items: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    kind = "dynamodb table"


@dataclass(frozen=True, slots=True)
class BucketSpec:
    name: str

    kind = "s3 bucket"


ResourceSpec = StreamSpec | TableSpec | BucketSpec


def replicated_stream(config: HarnessConfig) -> str:
    """The stream the kinesis pipeline's replicator copies between regions: ``{prefix}-stream``,
    or ``{prefix}-cdc`` in the ``postgres-cdc`` pipeline (capture's output)."""
    names = ResourceNames(config.prefix)
    return names.cdc_stream if config.pipeline == "postgres-cdc" else names.stream


@dataclass(frozen=True, slots=True)
class ReplicatedNames(ResourceNames):
    """The names the kinesis replicator works with: ``stream`` is :func:`replicated_stream`
    (its checkpoint scope, leases and active-region item are keyed by that stream)."""

    replicated: str = ""

    @property
    def stream(self) -> str:
        return self.replicated or f"{self.prefix}-stream"


def replicated_names(config: HarnessConfig) -> ReplicatedNames:
    return ReplicatedNames(config.prefix, replicated_stream(config))


def kinesis_pipeline(config: HarnessConfig, side: Side) -> list[ResourceSpec]:
    """Resources of the ``kinesis`` pipeline in one region (and of ``postgres-cdc``, whose
    change stream the same replicator copies: :func:`replicated_stream`)."""
    names = ResourceNames(config.prefix)
    stream = replicated_stream(config)
    return [
        StreamSpec(stream, config.shards),
        TableSpec(
            names.active_region_table,
            hash_key="streamName",
            items=({"streamName": stream, "activeRegion": config.region_a},),
        ),
        TableSpec(names.checkpoint_table, hash_key="scope", range_key="shardId"),
        TableSpec(names.lease_table, hash_key="leaseKey"),
        BucketSpec(names.dead_letter_bucket(config.region(side))),
    ]


def dynamodb_pipeline(config: HarnessConfig, side: Side) -> list[ResourceSpec]:
    """Resources of the ``dynamodb`` pipeline in one region: the items table (its stream, new
    and old images, in A, the source), checkpoints and leases (the target's checkpoint table
    also holds the bootstrap copy's rows, :mod:`xrh.contracts`), dead letters."""
    names = ResourceNames(config.prefix)
    return [
        TableSpec(
            names.items_table,
            hash_key=ITEM_KEY,
            stream_view_type="NEW_AND_OLD_IMAGES" if side is Side.A else None,
        ),
        TableSpec(names.checkpoint_table, hash_key="scope", range_key="shardId"),
        TableSpec(names.lease_table, hash_key="leaseKey"),
        BucketSpec(names.dead_letter_bucket(config.region(side))),
    ]


def action_log_pipeline(config: HarnessConfig, side: Side) -> list[ResourceSpec]:
    """Resources of the ``action-log`` pipeline in one region: the actions stream (A only; both
    consumers read it there), the items table each consumer applies the log to, checkpoints
    and leases of the consumer writing into this region, dead letters."""
    names = ResourceNames(config.prefix)
    stream = [StreamSpec(names.actions_stream, config.shards)] if side is Side.A else []
    return [
        *stream,
        TableSpec(names.items_table, hash_key=ITEM_KEY),
        TableSpec(names.checkpoint_table, hash_key="scope", range_key="shardId"),
        TableSpec(names.lease_table, hash_key="leaseKey"),
        BucketSpec(names.dead_letter_bucket(config.region(side))),
    ]


def active_active_pipeline(config: HarnessConfig, side: Side) -> list[ResourceSpec]:
    """Resources of the ``active-active`` pipeline in one region (the same in both): the items
    table with its stream (new and old images: the forwarder reads it), the staging stream the
    other region's forwarder writes to, checkpoints and leases of this region's forwarder and
    applier, dead letters."""
    names = ResourceNames(config.prefix)
    return [
        TableSpec(names.items_table, hash_key=ITEM_KEY, stream_view_type="NEW_AND_OLD_IMAGES"),
        StreamSpec(names.staging_stream, config.shards),
        TableSpec(names.checkpoint_table, hash_key="scope", range_key="shardId"),
        TableSpec(names.lease_table, hash_key="leaseKey"),
        BucketSpec(names.dead_letter_bucket(config.region(side))),
    ]


PIPELINE_RESOURCES = {
    "kinesis": kinesis_pipeline,
    "dynamodb": dynamodb_pipeline,
    "action-log": action_log_pipeline,
    "active-active": active_active_pipeline,
    "postgres-cdc": kinesis_pipeline,
}


def resources_for(config: HarnessConfig, side: Side) -> list[ResourceSpec]:
    """The specs of ``config.pipeline`` in one region; UsageError if it has none yet."""
    from xrh.errors import UsageError

    try:
        build = PIPELINE_RESOURCES[config.pipeline]
    except KeyError:
        raise UsageError(
            f"--pipeline {config.pipeline}: provisioning is not available for this pipeline yet "
            f"(available: {', '.join(sorted(PIPELINE_RESOURCES))})"
        ) from None
    return build(config, side)
