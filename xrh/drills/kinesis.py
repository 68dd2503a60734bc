"""The kinesis pipeline's drills: every failure a replicator meets in production, scripted.

Each drill's steps are fractions of the load's duration (``-t``); holds are in seconds. The
reference replicator must end every drill ``valid``; ``catches`` says what a replicator with
the published sample's behaviour shows instead.
"""

from __future__ import annotations

from xrh.drills.model import Action, Drill, Step

THROTTLE_STORM = (
    "a:PutRecords:partial=0.2,a:PutRecords:throttle=0.1,a:GetRecords:throttle=0.2,"
    "b:PutRecords:partial=0.2,b:PutRecords:throttle=0.1"
)
LOST_ANSWERS = (
    "a:PutRecords:lost-answer=0.05,b:PutRecords:lost-answer=0.05,a:GetRecords:lost-answer=0.05"
)
# The replicator's checkpoint writes (UpdateItem in B) mostly refused and retried with backoff,
# so kills land between the target's acknowledgement and the checkpoint write (a latency fault
# would not do: the request is carried out before its answer is delayed).
SLOW_CHECKPOINTS = "b:UpdateItem:throttle=0.7"
# The active-region table is read with GetItem in the replicator's own region A (the lease
# table uses Scan, PutItem, UpdateItem, DeleteItem there; the checkpoints live in B).
ACTIVE_LOOKUP_DOWN = "a:GetItem:error=1.0"

# A template where about one record in 500 is 6 KB: over the 4 KiB the poison drill's
# replicator is told the target accepts, so it must dead-letter those with their data.
POISON_TEMPLATE = (
    '{"key": {{key}}, "commitTimestamp": "{{date.utc("YYYY-MM-DDTHH:mm:ss.SSS[Z]")}}", '
    '"pad": "{{random.weightedArrayElement({"weights":[0.998,0.002],"data":["","'
    + "x" * 6000
    + '"]})}}", "trace": "{{trace}}"}'
)

DRILLS: tuple[Drill, ...] = (
    Drill(
        "throttle-storm",
        "kinesis",
        "partial failures and whole-request throttling in both regions, source reads throttled",
        (Step(0.2, Action.FAULTS, THROTTLE_STORM), Step(0.7, Action.CLEAR_FAULTS)),
        catches=("duplicated",),
    ),
    Drill(
        "lost-answers",
        "kinesis",
        "PutRecords and GetRecords carried out but their answers dropped, both regions",
        (Step(0.2, Action.FAULTS, LOST_ANSWERS), Step(0.7, Action.CLEAR_FAULTS)),
    ),
    Drill(
        "replicator-crash",
        "kinesis",
        "the replicator SIGKILLed three times (checkpoint writes throttled, so kills land "
        "between the target's acknowledgement and the checkpoint write), restarted each time",
        (
            Step(0.1, Action.FAULTS, SLOW_CHECKPOINTS),
            Step(0.2, Action.KILL_REPLICATOR),
            Step(0.25, Action.START_REPLICATOR),
            Step(0.4, Action.KILL_REPLICATOR),
            Step(0.45, Action.START_REPLICATOR),
            Step(0.6, Action.KILL_REPLICATOR),
            Step(0.65, Action.START_REPLICATOR),
            Step(0.7, Action.CLEAR_FAULTS),
        ),
    ),  # fmt: skip
    Drill(
        "target-outage",
        "kinesis",
        "region B frozen for 10 s (every request to it hangs), then back",
        (Step(0.3, Action.PAUSE_REGION, "b", hold_s=10),),
    ),
    Drill(
        "source-outage",
        "kinesis",
        "region A frozen for 10 s: producers and the replicator's reads hang, then back",
        (Step(0.3, Action.PAUSE_REGION, "a", hold_s=10),),
    ),
    Drill(
        "active-lookup-failure",
        "kinesis",
        "the active-region table unreadable in region A for a while",
        (Step(0.15, Action.FAULTS, ACTIVE_LOOKUP_DOWN), Step(0.85, Action.CLEAR_FAULTS)),
        catches=("lost",),
    ),
    Drill(
        "failover",
        "kinesis",
        "`xrh failover --to b` under load (producers move to B, a replicator copies B back to "
        "A), then `--to a` and back",
        (Step(0.3, Action.FAILOVER, "b"), Step(0.65, Action.FAILOVER, "a")),
        catches=("lost", "looped"),
    ),
    Drill(
        "reshard",
        "kinesis",
        "the source stream resharded from 4 to 8 shards under load (parents before children)",
        (Step(0.4, Action.RESHARD, "8"),),
        catches=("reordered", "stale"),
    ),
    Drill(
        "lease-steal",
        "kinesis",
        "two pollers share the shards; the first is frozen past its lease expiry (its lease is "
        "stolen), then resumed",
        (Step(0.15, Action.SECOND_REPLICATOR), Step(0.35, Action.FREEZE_REPLICATOR, hold_s=10)),
        catches=("stale", "reordered"),
    ),
    Drill(
        "poison-record",
        "kinesis",
        "about one record in 500 is larger than the target accepts: dead-lettered with its "
        "data, counted, explained, never blocking the shard",
        (Step(0.0, Action.CLEAR_FAULTS),),
        replicator_args=("--max-record-bytes", "4096"),
        template=POISON_TEMPLATE,
    ),
)
