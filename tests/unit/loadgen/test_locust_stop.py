"""Real Locust runners stopping KinesisProducerUser (locust_stop_scenario.py, in a subprocess
because importing locust monkey-patches the process; no endpoint, no network, a few seconds).

Locust's own ``User.stop`` kills a user it sees waiting; the kill is delivered later and lands
in the user's next PutRecords when its pause has just ended. With twenty producers stopped at
random moments twelve times over, that used to cut off about a dozen requests (GreenletExit in
Locust's failures, their records ``unknown``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCENARIO = Path(__file__).with_name("locust_stop_scenario.py")


def scenario(*args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, str(SCENARIO), *args],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_stop_never_cuts_a_request_and_every_final_batch_is_sent():
    got = scenario("--rounds", "12", "--users", "20", "--latency-ms", "0.1", "1",
                   "--linger", "0.005", "--rate", "400", "--seed", "3")  # fmt: skip
    assert got["rounds"] == 12 and got["requests"] > 1000
    assert got["cut_off"] == {}, got
    assert got["failures"] == {}, got
    assert set(got["statuses"]) == {"ok"}, got  # nothing unknown, nothing left unsent
    assert got["without_final"] == []
    assert got["max_stop_s"] < 1.0  # waiting users stop at once, requests take milliseconds


def test_a_hanging_request_is_still_cut_off_at_the_stop_timeout():
    got = scenario("--rounds", "2", "--users", "10", "--hang-before-stop", "0.1",
                   "--stop-timeout", "0.5", "--seed", "4")  # fmt: skip
    assert 0.5 <= got["max_stop_s"] < 2.5  # bounded: no second hanging request in on_stop
    assert sum(got["cut_off"].values()) == 20, got  # every user's hanging request, once
    assert set(got["cut_off"]) == {"GreenletExit"}
    assert got["statuses"].get("unknown", 0) > 0
    assert got["unknown_errors"] == ["interrupted: the run stopped during the request"]
    assert got["without_final"] == []  # the final batch is still declared
    # Locust shows why the requests failed, not the signal that cut them off.
    assert sum(got["failures"].values()) == 20
    assert all(f.startswith("RequestCutOff(") for f in got["failures"]), got["failures"]
    assert "GreenletExit" not in json.dumps(got["failures"])


def test_ctrl_c_reaches_the_main_greenlet_never_a_request_in_flight():
    """SIGINT's KeyboardInterrupt used to land in whichever greenlet ran, usually a producer
    busy in PutRecords (cut off, its records unknown, no final batch); now only Locust's main
    greenlet gets it, and the runner stops the users gracefully from there."""
    got = scenario("--rounds", "5", "--users", "10", "--busy", "--latency-ms", "1", "3",
                   "--sigint-after", "0.2", "0.5", "--seed", "5")  # fmt: skip
    assert got["sigints_in_main"] == 5
    assert got["cut_off"] == {}, got
    assert got["failures"] == {}, got
    assert set(got["statuses"]) == {"ok"}, got
    assert got["without_final"] == []
