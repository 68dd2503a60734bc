"""Last-writer-wins stamps of the active-active pipeline (xrh.active_active)."""

from __future__ import annotations

import pytest

from xrh.active_active import (
    ZERO,
    Stamp,
    delete_stamp,
    is_tombstone,
    stamp_of,
    timestamp_of,
)


def test_the_region_breaks_a_tie_of_timestamps() -> None:
    assert Stamp(5, "us-east-2") > Stamp(5, "us-east-1") > Stamp(4, "us-west-2")
    assert max([Stamp(5, "us-east-1"), Stamp(5, "us-east-2")]).region == "us-east-2"


def test_stamps_read_from_either_form_of_an_item() -> None:
    typed = {"pk": {"S": "1"}, "last_update_timestamp": {"N": "7"},
             "last_updater_region": {"S": "us-east-1"}}  # fmt: skip
    plain = {"pk": "1", "last_update_timestamp": 7, "last_updater_region": "us-east-1"}
    assert stamp_of(typed) == stamp_of(plain) == Stamp(7, "us-east-1")
    assert stamp_of({"pk": "1"}) == ZERO and stamp_of(None) is None


def test_a_delete_wins_over_what_it_removed_and_loses_to_anything_later() -> None:
    removed = Stamp(1000, "us-east-2")
    deleted = delete_stamp(removed, "us-east-1")
    assert removed < deleted < Stamp(1001, "us-east-2")
    assert is_tombstone({"xrh_deleted": {"BOOL": True}}) and not is_tombstone({"pk": "1"})


def test_whole_seconds_make_ties() -> None:
    assert timestamp_of(1_700_000_000_999, "s") == 1_700_000_000_000
    assert timestamp_of(1_700_000_000_999, "ms") == 1_700_000_000_999
    with pytest.raises(ValueError, match="resolution"):
        timestamp_of(1, "us")
