"""Sabotaged copiers on the embedded endpoint: each fault shows up as its anomaly, with an
example a person can follow; a clean copy and a late-but-complete copy are valid."""

from __future__ import annotations

import json
import time

import pytest
from verify_sabotage import (
    clean,
    drop_one_in,
    produce,
    read_source,
    send,
    send_first_batch_twice,
    swap_first_pair_of_a_key,
    write_claim,
)

from verify import run_verify
from xrh.aws import AwsClients
from xrh.contracts import parse_iso_ms
from xrh.runs import create_run

pytestmark = pytest.mark.functional
N, KEYS = 120, 15


@pytest.fixture
def run(provisioned):
    run_dir = create_run(provisioned.runs_dir, provisioned.to_public_dict()).path
    clients = AwsClients(provisioned)
    produce(clients, provisioned, run_dir, N, KEYS)
    return provisioned, clients, run_dir


def copy_and_verify(run, sabotage, **kw):
    config, clients, run_dir = run
    send(clients, config, sabotage(read_source(clients, config)))
    kw.setdefault("settle_s", 2)  # the sabotage is final: verify need not wait long for it
    result = run_verify(run_dir, config, progress=False, timeout_s=30, **kw)
    on_disk = json.loads(result.report_json.read_text())
    assert on_disk["verdict"] == result.verdict.value
    return result.report


def test_clean_copy_is_valid(run):
    report = copy_and_verify(run, clean)
    assert report["verdict"] == "valid", report["reasons"]
    assert report["counts"]["acknowledged"] == N
    assert report["counts"]["source_records"] == report["counts"]["target_records"] == N
    assert all(a["count"] == 0 for a in report["anomalies"].values())
    assert report["lag_ms"]["max"] is not None


def test_dropping_one_record_in_n_is_lost(run):
    report = copy_and_verify(run, drop_one_in(40))
    assert report["verdict"] == "invalid"
    lost = report["anomalies"]["lost"]
    assert lost["count"] == N // 40
    example = lost["examples"][0]
    assert example["trace"].startswith("t0-") and example["in_source"] is True
    assert example["source_shard"].startswith("shardId-")
    assert int(example["source_sequence_number"]) > 0 and "key" in example


def test_swapping_two_records_of_a_key_is_reordered(run):
    report = copy_and_verify(run, swap_first_pair_of_a_key)
    assert report["verdict"] == "invalid"
    reordered = report["anomalies"]["reordered"]
    assert reordered["count"] == 1
    example = reordered["examples"][0]
    assert example["overtaken_by"]["trace"] != example["trace"]
    assert example["record"]["target_shard"].startswith("shardId-")
    assert report["anomalies"]["lost"]["count"] == 0


def test_sending_a_batch_twice_is_duplicated_not_fatal_unless_asked(run):
    report = copy_and_verify(run, send_first_batch_twice)
    assert report["verdict"] == "valid"
    dup = report["anomalies"]["duplicated"]
    assert dup["count"] == 10
    assert dup["examples"][0]["target_copies"] == 2
    assert len(dup["examples"][0]["target_copies_at"].split()) == 2
    config, _, run_dir = run
    fatal = run_verify(
        run_dir, config, progress=False, timeout_s=30, fatal_duplicates=True, settle_s=2
    )
    assert fatal.verdict.value == "invalid" and fatal.exit_code == 1


def test_watermark_claimed_ahead_of_the_copy_is_caught(run):
    config, clients, run_dir = run
    records = read_source(clients, config)
    held_back = records[-5:]
    send(clients, config, records[:-5])
    newest = max(parse_iso_ms(r["commit"]) for r in records)
    write_claim(config, run_dir, int(time.time() * 1000), newest)  # claims all of them
    time.sleep(0.05)
    send(clients, config, held_back)
    report = run_verify(run_dir, config, progress=False, timeout_s=30, settle_s=2).report
    assert report["verdict"] == "invalid", report["reasons"]
    ahead = report["anomalies"]["checkpoint_ahead"]
    assert ahead["count"] == 1
    example = ahead["examples"][0]
    assert example["records_missing_at_claim"] == 5
    held_traces = {json.loads(r["Data"])["trace"] for r in held_back}
    assert example["trace"] in held_traces
    assert "reached the target only at" in example["explanation"]
    assert report["anomalies"]["lost"]["count"] == 0
    assert report["details"]["tolerance_ms"] == 0


def test_copier_that_stalls_then_catches_up_is_valid_with_the_lag_visible(run):
    config, clients, run_dir = run
    time.sleep(1.5)
    report = copy_and_verify(run, clean)
    assert report["verdict"] == "valid", report["reasons"]
    assert report["lag_ms"]["max"] >= 1500
    assert report["lag_ms"]["p50"] >= 1000
    buckets = report["details"]["lag_over_time"]["buckets"]
    assert max(b["max"] for b in buckets) >= 1500
    assert report["details"]["lag_per_shard"]
