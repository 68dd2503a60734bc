"""The drill framework without a harness: catalogues, schedules, the nemesis with a recording
environment (undo of what is in force, failures logged not raised), the matrix's rows."""

from __future__ import annotations

import json
import threading

import pytest

from xrh.drills import Action, Drill, Step, catalogue, get_drill
from xrh.drills.nemesis import Nemesis, read_timeline
from xrh.drills.runner import render_matrix, row
from xrh.errors import UsageError


class Recorder:
    """A DrillEnv that records what it was asked, optionally failing one action."""

    def __init__(self, fail: str | None = None) -> None:
        self.calls: list[tuple[str, object]] = []
        self.fail = fail

    def __getattr__(self, name: str):
        def call(*args: object) -> None:
            self.calls.append((name, args[0] if args else None))
            if name == self.fail:
                raise RuntimeError(f"{name} refused")

        return call


def test_the_kinesis_catalogue_has_the_drills_the_issue_names():
    names = {d.name for d in catalogue("kinesis")}
    assert {"throttle-storm", "lost-answers", "replicator-crash", "target-outage",
            "source-outage", "active-lookup-failure", "reshard", "lease-steal",
            "poison-record"} <= names  # fmt: skip
    assert [d.name for d in catalogue("active-active")] == [
        "clock-skew", "region-paused", "forwarder-crash", "staging-throttling",
    ]  # fmt: skip


def test_the_dynamodb_catalogue_has_the_drills_the_issue_names():
    drills = {d.name: d for d in catalogue("dynamodb")}
    assert {"bootstrap-crash", "apply-crash", "write-throttling", "target-outage"} <= set(drills)
    # Every dynamodb drill copies a pre-loaded table while it is written.
    assert all("--bootstrap-items" in d.load_args for d in drills.values())
    crash = [s.action for s in drills["bootstrap-crash"].steps]
    assert crash.index(Action.KILL_REPLICATOR) < crash.index(Action.START_REPLICATOR)
    assert any("BatchWriteItem:partial" in (s.arg or "") for s in drills["write-throttling"].steps)


def test_the_drill_command_carries_the_pipeline_and_the_drills_load_options():
    import argparse

    from xrh.drills.runner import command

    args = argparse.Namespace(users=4, run_time="12s", rate_per_user=20.0, settle_seconds=15.0,
                              seed=None, pipeline="dynamodb", region_a=None, region_b=None,
                              prefix=None, shards=None, runs_dir=None,
                              bootstrap_items=None)  # fmt: skip
    drill = get_drill("write-throttling", "dynamodb")
    cmd = command(args, drill, "reference")
    assert cmd[cmd.index("--pipeline") + 1] == "dynamodb"
    assert cmd[cmd.index("--drill") + 1] == drill.name  # which brings its --bootstrap-items
    assert "--bootstrap-items" not in cmd
    args.bootstrap_items = 5000  # given: it wins over the drill's own
    cmd = command(args, drill, "reference")
    assert cmd[cmd.index("--bootstrap-items") + 1] == "5000"


def test_an_unknown_drill_is_a_usage_error_naming_the_choices():
    with pytest.raises(UsageError, match="no such kinesis drill.*throttle-storm"):
        get_drill("nope")


def test_steps_are_fractions_of_the_load():
    with pytest.raises(ValueError, match="fraction"):
        Step(1.5, Action.CLEAR_FAULTS)


def test_plan_scales_with_the_load_and_adds_the_undo_of_holds(tmp_path):
    drill = get_drill("target-outage")
    plan = Nemesis(drill, Recorder(), 20, tmp_path / "t.jsonl").plan()
    assert plan == [(6.0, Action.PAUSE_REGION, "b"), (16.0, Action.RESUME_REGION, "b")]
    long = Nemesis(drill, Recorder(), 100, tmp_path / "t.jsonl").plan()
    assert long[0][0] == 30.0 and long[1][0] == 40.0


def test_finish_undoes_what_is_still_in_force_and_logs_every_step(tmp_path):
    drill = Drill("d", "kinesis", "test", (
        Step(0.0, Action.FAULTS, "a:PutRecords:partial=0.1"),
        Step(0.0, Action.PAUSE_REGION, "b"),
        Step(0.0, Action.FREEZE_REPLICATOR),
        Step(1.0, Action.CLEAR_FAULTS),
    ))  # fmt: skip
    env = Recorder()
    nemesis = Nemesis(drill, env, 1000, tmp_path / "t.jsonl")  # the last step never comes
    nemesis.start()
    for _ in range(100):
        if len(env.calls) == 3:
            break
        threading.Event().wait(0.01)
    nemesis.finish()
    assert env.calls[:3] == [("set_faults", "a:PutRecords:partial=0.1"),
                             ("pause_region", "b"), ("freeze_replicator", "a")]  # fmt: skip
    assert sorted(env.calls[3:]) == [("resume_region", "b"), ("set_faults", None),
                                     ("thaw_replicator", "a")]  # fmt: skip
    steps = [s["action"] for s in read_timeline(tmp_path / "t.jsonl")]
    assert steps[0] == "drill" and steps[-1] == "drill-end" and len(steps) == 8
    assert threading.active_count() >= 1 and nemesis._thread is None


def test_a_step_that_fails_is_logged_and_the_drill_goes_on(tmp_path):
    drill = Drill("d", "kinesis", "test", (
        Step(0.0, Action.RESHARD, "8"), Step(0.0, Action.KILL_REPLICATOR),
    ))  # fmt: skip
    env = Recorder(fail="reshard")
    nemesis = Nemesis(drill, env, 1, tmp_path / "t.jsonl")
    for _, action, arg in nemesis.plan():
        nemesis.step(action, arg)
    nemesis.finish()
    timeline = read_timeline(tmp_path / "t.jsonl")
    assert [s["ok"] for s in timeline if s["action"] == "reshard"] == [False]
    assert "refused" in timeline[-1]["note"] and timeline[-1]["ok"] is False
    assert ("start_replicator", "a") in env.calls  # the killed replicator is restarted


def report(lag_buckets, p50=100):
    return {
        "verdict": "valid", "reasons": [], "lag_ms": {"p50": p50},
        "anomalies": {k: {"count": 0, "examples": []} for k in ("lost", "duplicated")},
        "details": {"lag_over_time": {"buckets": lag_buckets}, "dead_letters": {"count": 2},
                    "drill": {"recovery_s": 4.5}},
    }  # fmt: skip


def test_matrix_rows_and_page(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "report.json").write_text(json.dumps(report([])))
    drill = get_drill("poison-record")
    good = row(drill, "reference", 0, run, 31.0)
    assert good["verdict"] == "valid" and good["expected"] == "valid" and good["lost"] == 0
    assert good["dead_lettered"] == 2 and good["recovery_s"] == 4.5
    missing = row(drill, "sample", 2, None, 5.0)
    assert missing["verdict"] == "unknown" and missing["expected"] is None
    page = render_matrix([good, missing])
    assert page.count("<tr class=") == 2 and "poison-record" in page
    assert "http" not in page.replace('xmlns="http', "")  # offline: no external assets


def test_matrix_shows_violations_not_duplicates_and_a_zero_recovery(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    body = report([])
    body["anomalies"]["duplicated"] = {"count": 3, "examples": [{"trace": "d-1"}]}
    body["anomalies"]["lost"] = {"count": 1, "examples": [
        {"explanation": "p-1 <lost> & " + "x" * 400}]}  # fmt: skip
    body["details"]["drill"]["recovery_s"] = 0.0
    (run / "report.json").write_text(json.dumps(body))
    result = row(get_drill("target-outage"), "sample", 1, run, 9.0)
    assert result["counterexamples"] == ["lost: p-1 <lost> & " + "x" * 400]
    page = render_matrix([result])
    assert "<td>0.0</td>" in page
    assert "p-1 &lt;lost&gt; &amp; " in page and "&#x" not in page  # escaped whole, cut first


def test_replicator_steps_name_their_side_and_their_undo_the_same_one(tmp_path):
    drill = Drill("d", "action-log", "test", (
        Step(0.0, Action.FREEZE_REPLICATOR, "b"), Step(0.0, Action.KILL_REPLICATOR, "a"),
    ))  # fmt: skip
    env = Recorder()
    nemesis = Nemesis(drill, env, 1000, tmp_path / "t.jsonl")
    nemesis.start()
    for _ in range(100):
        if len(env.calls) == 2:
            break
        threading.Event().wait(0.01)
    nemesis.finish()
    assert env.calls[:2] == [("freeze_replicator", "b"), ("kill_replicator", "a")]
    assert sorted(env.calls[2:]) == [("start_replicator", "a"), ("thaw_replicator", "b")]


def test_the_action_log_drills_are_catalogued_for_their_pipeline():
    names = [d.name for d in catalogue("action-log")]
    assert names == ["consumer-crash", "throttled-target", "lazy-far-behind"]
    assert all(d.pipeline == "action-log" for d in catalogue("action-log"))
