"""Every drill as a short functional test: `xrh drill NAME` (a headless Locust run with the
drill's fault schedule, drain and verify) must end valid with the reference replicator, its
steps all taken. `xrh drill --all` runs the same drills longer, on demand.

The default run takes each pipeline's worst faults (:data:`DEFAULT_DRILLS`: crashes, the
failover, the outages that once found real bugs) and the published samples' failures; the
rest of the matrix is marked ``drill_matrix`` and runs with ``pytest --drill-matrix``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_locust_runs import _reap

from xrh.drills import catalogue

pytestmark = pytest.mark.functional
DRILL_SECONDS = "12s"
# Failover switches twice, about 4 s apart at 12 s of load: the second switch comes while the
# new region still works off what it held (the switch history keeps that safe, README
# "Failover without loss"). Drills that need longer say so here.
LONGER: dict[str, str] = {}


DEFAULT_DRILLS = {
    "kinesis": ("replicator-crash", "failover", "source-outage", "lost-answers", "poison-record"),
    "dynamodb": ("bootstrap-crash",),
    "action-log": ("consumer-crash",),
    "active-active": ("clock-skew", "forwarder-crash"),
    "postgres-cdc": ("capture-restart", "database-restart"),
}


def drills_of(pipeline: str) -> list:
    """The pipeline's drill names, those outside :data:`DEFAULT_DRILLS` marked drill_matrix."""
    return [
        pytest.param(d.name, marks=() if d.name in DEFAULT_DRILLS[pipeline]
                     else pytest.mark.drill_matrix)
        for d in catalogue(pipeline)
    ]  # fmt: skip


def run_drill(cwd: Path, name: str, *extra: str, run_time: str | None = None,
              ) -> tuple[int, str, dict, list[dict]]:  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "xrh", "drill", name, "-t", run_time or LONGER.get(name, DRILL_SECONDS),
         "-u", "6", "--settle-seconds", "15", *extra],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=180)
    finally:
        _reap([proc], 10)
    latest = cwd / "runs" / "latest"
    report = json.loads((latest / "report.json").read_text())
    timeline = [
        json.loads(line) for line in (latest / "drill-timeline.jsonl").read_text().splitlines()
    ]
    return proc.returncode, out, report, timeline


@pytest.mark.parametrize("name", drills_of("kinesis"))
def test_reference_replicator_ends_the_drill_valid(tmp_path, name):
    code, out, report, timeline = run_drill(tmp_path, name)
    assert report["verdict"] == "valid", (report["reasons"], out[-3000:])
    assert code == 0, out[-3000:]
    assert timeline[0]["action"] == "drill" and timeline[-1]["action"] == "drill-end"
    assert all(step["ok"] for step in timeline), timeline
    assert report["details"]["drill"]["name"] == name
    if name == "poison-record":
        assert report["details"]["dead_letters"]["count"] >= 1
        assert report["details"]["anomaly_details"]["lost"]["dead_lettered_with_data"] >= 1
    if name in ("throttle-storm", "lost-answers"):
        assert report["details"]["faults"]["total"] > 0


# The dynamodb drills copy a pre-loaded table while it is written; in tests the table holds
# 5,000 items (the drills' own 10,000 on demand, `xrh drill --all --pipeline dynamodb`).
TABLE_DRILL = ("--pipeline", "dynamodb", "--bootstrap-items", "5000")


@pytest.mark.parametrize("name", drills_of("dynamodb"))
def test_reference_replicator_ends_the_table_drill_valid(tmp_path, name):
    code, out, report, timeline = run_drill(tmp_path, name, *TABLE_DRILL, run_time="16s")
    assert report["verdict"] == "valid", (report["reasons"], out[-3000:])
    assert code == 0, out[-3000:]
    assert all(step["ok"] for step in timeline), timeline
    assert report["details"]["drill"]["name"] == name
    bootstrap = report["details"]["bootstrap"]
    assert bootstrap["state"] == "complete" and bootstrap["items_copied"] >= 5000
    assert report["details"]["items_compared"] > 0
    if name == "write-throttling":
        assert report["details"]["faults"]["total"] > 0
    if name == "bootstrap-crash":
        # The copy was taken over from the killed owner, never started over by two at once.
        logs = (tmp_path / "runs" / "latest").glob("replicator-*.log")
        events = sorted((json.loads(line) for log in logs for line in log.read_text().splitlines()
                         if line.startswith("{") and '"bootstrap_taken"' in line),
                        key=lambda e: e["ts"])  # fmt: skip
        assert len(events) == 2, events
        assert events[1]["previous_owner"] == events[0]["owner"] != events[1]["owner"]


# The action log's drills: the fast consumer (A's table) and the lazy one (B's) under failures.
ACTION_LOG = ("--pipeline", "action-log")


@pytest.mark.parametrize("name", drills_of("action-log"))
def test_reference_consumers_end_the_action_log_drill_valid(tmp_path, name):
    # 16 s: the crash drill's kills and restarts come about 2 s apart, time enough for a
    # restarted consumer to start applying (and be killed between writes and checkpoint)
    code, out, report, timeline = run_drill(tmp_path, name, *ACTION_LOG, run_time="16s")
    assert report["verdict"] == "valid", (report["reasons"], out[-3000:])
    assert code == 0, out[-3000:]
    assert all(step["ok"] for step in timeline), timeline
    assert report["details"]["drill"]["name"] == name
    tables = report["details"]["tables"]
    assert tables["A"]["items"] == tables["B"]["items"] == tables["A"]["expected_items"] > 0
    latest = tmp_path / "runs" / "latest"
    if name == "consumer-crash":  # killed three times (a restarted one may die before it logs)
        assert [s["action"] for s in timeline].count("kill-replicator") == 3
        assert len(list(latest.glob("replicator-fast-*.log"))) >= 2
    if name == "throttled-target":
        assert report["details"]["faults"]["total"] > 0
    if name == "lazy-far-behind":  # frozen with the log piling up, then caught up
        lag = report["details"]["consumer_lag"]["consumers"]
        assert lag["lazy"]["max"] > max(2_000, lag["fast"]["p50"])


# On demand: whether a kill lands between the sample's checkpoint and its writes is chance (a
# fresh-clone run once saw all three miss and the drill end valid); verify's catching of what
# it loses is proven by planted faults in tests/unit/verify (lost, stale, double_applied).
@pytest.mark.drill_matrix
def test_the_proof_of_concepts_consumer_fails_the_crash_drill(tmp_path):
    """Checkpoint first, then write: each kill loses the batch it had checkpointed."""
    code, out, report, _ = run_drill(
        tmp_path, "consumer-crash", *ACTION_LOG, "--replicator", "sample",
        "--rate-per-user", "20",  # the sample's one call per action keeps up with this load
    )  # fmt: skip
    assert report["verdict"] == "invalid" and code == 1, (report["reasons"], out[-3000:])
    # A kill after the checkpoint loses the batch; a refused checkpoint write (only logged)
    # replays one, counting its ADDs twice.
    found = {k: report["anomalies"][k] for k in ("lost", "double_applied", "stale")
             if report["anomalies"][k]["count"]}  # fmt: skip
    assert found, report["reasons"]
    assert all(a["examples"][0]["key"] for a in found.values()), found


# Active-active: both regions written at once, each region's replicator forwarding and applying.
ACTIVE = ("--pipeline", "active-active")


@pytest.mark.parametrize("name", drills_of("active-active"))
def test_reference_replicators_end_the_active_active_drill_valid(tmp_path, name):
    code, out, report, timeline = run_drill(tmp_path, name, *ACTIVE)
    assert report["verdict"] == "valid", (report["reasons"], out[-3000:])
    assert code == 0, out[-3000:]
    assert all(step["ok"] for step in timeline), timeline
    details = report["details"]
    assert details["drill"]["name"] == name
    assert details["conflicts"]["conflicted_keys"] > 0  # the hot keys were written from both
    assert details["conflicts"]["resolved"] == details["conflicts"]["conflicted_keys"]
    if name == "staging-throttling":
        assert details["faults"]["total"] > 0


def test_the_published_samples_rules_fail_the_clock_skew_drill(tmp_path):
    """A bare timestamp compared with a strict '<' keeps whole-second ties apart forever."""
    code, out, report, _ = run_drill(tmp_path, "clock-skew", *ACTIVE, "--replicator", "sample")
    assert report["verdict"] == "invalid" and code == 1, (report["reasons"], out[-3000:])
    found = {k: v["count"] for k, v in report["anomalies"].items()
             if isinstance(v, dict) and v.get("count")}  # fmt: skip
    assert found.keys() & {"diverged", "stale", "lost", "resurrected"}, found


# PostgreSQL change capture: the run directory must be open to the server's user (open_dir).
CDC = ("--pipeline", "postgres-cdc", "--keys", "500")


@pytest.mark.parametrize("name", drills_of("postgres-cdc"))
def test_slot_capture_ends_the_postgres_drill_valid(open_dir, name):
    code, out, report, timeline = run_drill(open_dir, name, *CDC, run_time="14s")
    assert report["verdict"] == "valid", (report["reasons"], out[-3000:])
    assert code == 0, out[-3000:]
    assert all(step["ok"] for step in timeline), timeline
    assert report["details"]["drill"]["name"] == name
    counts = report["counts"]
    assert counts["source_records"] > 0 and counts["target_records"] >= counts["source_records"]
    latest = (open_dir / "runs" / "latest").resolve()
    starts = [line for line in (latest / "capture.log").read_text().splitlines()
              if '"event": "start"' in line]  # fmt: skip
    if name == "capture-restart":  # killed twice, restarted (one may die before it logs)
        assert [s["action"] for s in timeline].count("kill-replicator") == 2
        assert len(starts) >= 2
    if name == "database-restart":
        assert [s["action"] for s in timeline].count("restart-database") == 2
    if name == "capture-throttling":
        assert report["details"]["faults"]["total"] > 0


def test_the_seeds_notify_capture_fails_the_capture_restart_drill(open_dir):
    """NOTIFY delivers only to listeners connected at the time: what was committed while the
    capture was down is gone, and verify lists it."""
    code, out, report, _ = run_drill(open_dir, "capture-restart", *CDC, "--capture", "notify",
                                     run_time="14s")  # fmt: skip
    assert report["verdict"] == "invalid" and code == 1, (report["reasons"], out[-3000:])
    lost = report["anomalies"]["lost"]
    assert lost["count"] > 0, report["reasons"]
    example = lost["examples"][0]
    assert example["key"] and example["txn"] and example["trace"], example
