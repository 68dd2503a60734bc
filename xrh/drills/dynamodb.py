"""The dynamodb pipeline's drills: a table copied while it is written, under failures.

Each drill loads ``--bootstrap-items`` into region A's table before the replicator starts, so
its bootstrap copy races the Locust users' live writes, then plays its schedule (fractions of
the load's duration; holds in seconds). The reference replicator must end every drill
``valid``: B's table equal to A's, no stale item, no write lost during the bootstrap.
"""

from __future__ import annotations

from xrh.drills.model import Action, Drill, Step

# Every BatchWriteItem to B is slowed while the copy runs, so the kill lands in the middle of
# it (a copy of the drill's items otherwise ends in a few seconds on the embedded endpoint).
SLOW_COPY = "b:BatchWriteItem:latency=100"
# Part of every batch left unprocessed and some requests throttled outright: the replicator
# must retry exactly the unprocessed items, in order per key, and lose none.
WRITE_THROTTLING = "b:BatchWriteItem:partial=0.3,b:BatchWriteItem:throttle=0.1"
# Checkpoint writes (UpdateItem in B) mostly refused, so a kill lands between the table write
# and its checkpoint: the restarted replicator replays the batch, which must change nothing.
SLOW_CHECKPOINTS = "b:UpdateItem:throttle=0.7"

# A copy of 10,000 items takes a few seconds under the drills' load on the embedded endpoint,
# so the live-apply drills' steps (from 0.5 of the load on) come after it.
BOOTSTRAP = ("--bootstrap-items", "10000")

DRILLS: tuple[Drill, ...] = (
    Drill(
        "bootstrap-crash",
        "dynamodb",
        "the replicator SIGKILLed in the middle of its bootstrap copy, restarted: the successor "
        "takes the copy over once the dead owner's heartbeat expires and resumes each segment "
        "where its last acknowledged page ended",
        (
            Step(0.0, Action.FAULTS, SLOW_COPY),
            Step(0.1, Action.KILL_REPLICATOR),
            Step(0.15, Action.START_REPLICATOR),
            Step(0.2, Action.CLEAR_FAULTS),
        ),
        # pages of 250 items, so the first owner has acknowledged some before it dies and the
        # successor visibly resumes those segments instead of starting them again
        replicator_args=("--scan-page-size", "250"),
        load_args=BOOTSTRAP,
        catches=("lost", "stale"),
    ),
    Drill(
        "apply-crash",
        "dynamodb",
        "the replicator SIGKILLed twice during live apply (checkpoint writes throttled, so kills "
        "land between a table write and its checkpoint), restarted each time",
        (
            Step(0.5, Action.FAULTS, SLOW_CHECKPOINTS),
            Step(0.6, Action.KILL_REPLICATOR),
            Step(0.63, Action.START_REPLICATOR),
            Step(0.75, Action.KILL_REPLICATOR),
            Step(0.78, Action.START_REPLICATOR),
            Step(0.85, Action.CLEAR_FAULTS),
        ),
        load_args=BOOTSTRAP,
        catches=("stale",),
    ),
    Drill(
        "write-throttling",
        "dynamodb",
        "BatchWriteItem in B returns unprocessed items for part of every batch and is "
        "throttled outright now and then, through the copy and live apply",
        (Step(0.0, Action.FAULTS, WRITE_THROTTLING), Step(0.8, Action.CLEAR_FAULTS)),
        load_args=BOOTSTRAP,
        catches=("lost", "stale"),
    ),
    Drill(
        "target-outage",
        "dynamodb",
        "region B frozen for 10 s during live apply (every request to it hangs), then back",
        (Step(0.5, Action.PAUSE_REGION, "b", hold_s=10),),
        load_args=BOOTSTRAP,
    ),
)
