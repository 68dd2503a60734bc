"""The action-log pipeline's drills: the log applied twice over, under failures.

A fast consumer applies ``{prefix}-actions`` to A's table, a lazy one to B's. The reference
consumers must end every drill ``valid``: both tables equal to the fold of the log, no ADD
counted twice. ``catches`` is what the proof of concept's consumer (``--replicator sample``:
checkpoint first, then write, failures only logged) shows instead.
"""

from __future__ import annotations

from xrh.drills.model import Action, Drill, Step

# The fast consumer's checkpoint writes (UpdateItem in A's checkpoint table) mostly refused and
# retried, so a kill lands between a batch's table writes and its checkpoint: the restarted
# consumer replays the batch, and a replayed ADD must not count twice. (Its conditional item
# updates are UpdateItem in A too: they are retried the same way.)
SLOW_CHECKPOINTS = "a:UpdateItem:throttle=0.6"
# Part of every BatchWriteItem left unprocessed and some item writes throttled, in both tables.
TARGET_THROTTLING = (
    "a:BatchWriteItem:partial=0.3,a:UpdateItem:throttle=0.2,"
    "b:BatchWriteItem:partial=0.3,b:UpdateItem:throttle=0.2"
)

DRILLS: tuple[Drill, ...] = (
    Drill(
        "consumer-crash",
        "action-log",
        "the fast consumer SIGKILLed three times between its writes and its checkpoint "
        "(checkpoint writes throttled), restarted each time: the replays must not double an ADD",
        (
            Step(0.1, Action.FAULTS, SLOW_CHECKPOINTS),
            Step(0.25, Action.KILL_REPLICATOR, "a"),
            Step(0.3, Action.START_REPLICATOR, "a"),
            Step(0.45, Action.KILL_REPLICATOR, "a"),
            Step(0.5, Action.START_REPLICATOR, "a"),
            Step(0.65, Action.KILL_REPLICATOR, "a"),
            Step(0.7, Action.START_REPLICATOR, "a"),
            Step(0.8, Action.CLEAR_FAULTS),
        ),
        catches=("lost",),
    ),
    Drill(
        "throttled-target",
        "action-log",
        "BatchWriteItem leaves part of every batch unprocessed and item updates are throttled, "
        "in both regions' tables",
        (Step(0.1, Action.FAULTS, TARGET_THROTTLING), Step(0.8, Action.CLEAR_FAULTS)),
        catches=("lost",),
    ),
    Drill(
        "lazy-far-behind",
        "action-log",
        "the lazy consumer frozen for most of the run (the log piles up behind it), then "
        "thawed: it catches up at its rate and B's table ends equal to the fold",
        (Step(0.1, Action.FREEZE_REPLICATOR, "b"), Step(0.75, Action.THAW_REPLICATOR, "b")),
    ),
)
