"""The active-active pipeline's drills: both regions written at once, under failures.

Writers in both regions share a hot set of keys, so conflicts are constant; each drill plays its
schedule (fractions of the load's duration; holds in seconds). The reference replicator must
end every drill ``valid``: both tables equal, each key on the ledger's (timestamp, region)
winner, no deleted key back, nothing forwarded back to its origin. ``catches`` is what the
published sample (strict ``<`` on the bare timestamp, real deletes, whole-batch failure) shows.
"""

from __future__ import annotations

from xrh.drills.model import Action, Drill, Step

# Whole seconds and region B's writers 2 s ahead: most conflicts are timestamp ties or are won
# by B's skewed clock, the cases a bare timestamp gets wrong.
CLOCK_SKEW = ("--clock-skew-ms", "b=+2000", "--timestamp-resolution", "s", "--conflict-keys", "20")
# Region A's staging stream refuses part of every PutRecords of B's forwarder, and the other
# way round: per-key order must hold through the resends.
STAGING_THROTTLING = (
    "a:PutRecords:partial=0.3,a:PutRecords:throttle=0.1,"
    "b:PutRecords:partial=0.3,b:PutRecords:throttle=0.1"
)

DRILLS: tuple[Drill, ...] = (
    Drill(
        "clock-skew",
        "active-active",
        "region B's writers 2 s ahead and stamps in whole seconds: conflicts are ties or won by "
        "the skewed clock",
        (Step(0.0, Action.CLEAR_FAULTS),),
        load_args=CLOCK_SKEW,
        catches=("diverged", "stale"),
    ),
    Drill(
        "region-paused",
        "active-active",
        "region B frozen for 8 s while both regions write the hot keys (B's writes and its "
        "replicator hang, then land late and older)",
        (Step(0.3, Action.PAUSE_REGION, "b", hold_s=8),),
        catches=("diverged", "stale"),
    ),
    Drill(
        "forwarder-crash",
        "active-active",
        "region A's replicator (forwarder and applier) SIGKILLed twice and restarted",
        (
            Step(0.25, Action.KILL_REPLICATOR, "a"),
            Step(0.3, Action.START_REPLICATOR, "a"),
            Step(0.55, Action.KILL_REPLICATOR, "a"),
            Step(0.6, Action.START_REPLICATOR, "a"),
        ),
        catches=("diverged", "stale"),
    ),
    Drill(
        "staging-throttling",
        "active-active",
        "both staging streams refuse part of every PutRecords and throttle some outright",
        (Step(0.1, Action.FAULTS, STAGING_THROTTLING), Step(0.8, Action.CLEAR_FAULTS)),
        catches=("diverged", "stale"),
    ),
)
