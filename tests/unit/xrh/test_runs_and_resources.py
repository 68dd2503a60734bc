"""Run directories and resource specs."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from xrh.config import Side, parse_config
from xrh.errors import UsageError
from xrh.resources import BucketSpec, StreamSpec, TableSpec, replicated_names, resources_for
from xrh.runs import CONFIG_FILE, create_run, open_run


def test_run_directory_name_config_and_latest(tmp_path: Path) -> None:
    first = create_run(tmp_path, {"prefix": "xrh"})
    second = create_run(tmp_path, {"prefix": "xrh"})
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", second.run_id)
    assert first.run_id != second.run_id
    assert (tmp_path / "latest").resolve() == second.path.resolve()
    assert second.read_json(CONFIG_FILE) == {"prefix": "xrh"}
    assert open_run(tmp_path / "latest").path == second.path.resolve()


def test_open_run_of_missing_directory_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such run directory"):
        open_run(tmp_path / "nope")


def test_kinesis_pipeline_resources_per_region() -> None:
    config = parse_config(["--prefix", "demo", "--shards", "2"], environ={})
    specs_a = resources_for(config, Side.A)
    specs_b = resources_for(config, Side.B)
    assert StreamSpec("demo-stream", 2) in specs_a
    assert BucketSpec("demo-dead-letter-us-east-1") in specs_a
    assert BucketSpec("demo-dead-letter-us-east-2") in specs_b
    active = next(s for s in specs_b if isinstance(s, TableSpec) and s.name == "demo-active-region")
    # Both regions start with region A active, as the seed's global table would say.
    assert active.items == ({"streamName": "demo-stream", "activeRegion": "us-east-1"},)


def test_pipeline_without_resources_is_a_usage_error() -> None:
    config = dataclasses.replace(parse_config([], environ={}), pipeline="no-such-pipeline")
    with pytest.raises(UsageError, match="not available for this pipeline yet"):
        resources_for(config, Side.A)


def test_postgres_cdc_resources_are_the_kinesis_ones_around_the_change_stream() -> None:
    config = parse_config(["--prefix", "demo", "--pipeline", "postgres-cdc"], environ={})
    for side in (Side.A, Side.B):
        specs = resources_for(config, side)
        streams = [s.name for s in specs if s.kind == "kinesis stream"]
        assert streams == ["demo-cdc"]
        active = next(s for s in specs if s.name == "demo-active-region")
        assert active.items[0]["streamName"] == "demo-cdc"
    assert replicated_names(config).stream == "demo-cdc"
    assert replicated_names(config).checkpoint_table == "demo-checkpoints"


def test_action_log_resources_put_the_log_in_a_and_a_table_in_each_region() -> None:
    config = parse_config(["--prefix", "demo", "--pipeline", "action-log"], environ={})
    specs_a, specs_b = resources_for(config, Side.A), resources_for(config, Side.B)
    assert StreamSpec("demo-actions", config.shards) in specs_a
    assert not any(isinstance(s, StreamSpec) for s in specs_b)
    for specs in (specs_a, specs_b):
        items = next(s for s in specs if isinstance(s, TableSpec) and s.name == "demo-items")
        assert items.hash_key == "pk" and items.stream_view_type is None
        assert any(isinstance(s, TableSpec) and s.name == "demo-checkpoints" for s in specs)


def test_active_active_resources_are_the_same_in_both_regions() -> None:
    config = parse_config(["--prefix", "demo", "--pipeline", "active-active"], environ={})
    for side in (Side.A, Side.B):
        specs = resources_for(config, side)
        assert StreamSpec("demo-staging", config.shards) in specs
        items = next(s for s in specs if isinstance(s, TableSpec) and s.name == "demo-items")
        assert items.stream_view_type == "NEW_AND_OLD_IMAGES"
