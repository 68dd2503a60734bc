"""The postgres-cdc pipeline's drills: change capture under crashes, throttling and a database
restart.

Capture reads a logical replication slot and confirms it only after Kinesis acknowledged, so
the reference capture must end every drill ``valid``: every committed change in A's and B's
``{prefix}-cdc``, in commit order per key, nothing from a rolled-back transaction. ``catches``
is what the seed's trigger + LISTEN/NOTIFY capture (``--replicator sample``, or ``--capture
notify``) shows instead: notifications sent while no listener is connected are gone.

The capture process is the drills' ``capture`` side (``kill-replicator capture``); the kinesis
replicator copying A's change stream to B is side ``a`` as in the kinesis pipeline.
"""

from __future__ import annotations

from xrh.drills.model import Action, Drill, Step

CAPTURE = "capture"
# Capture's PutRecords into A's change stream throttled and partly refused.
CAPTURE_THROTTLING = "a:PutRecords:throttle=0.3,a:PutRecords:partial=0.2"

DRILLS: tuple[Drill, ...] = (
    Drill(
        "capture-restart",
        "postgres-cdc",
        "the capture process SIGKILLed twice under load and restarted each time: the slot "
        "keeps what was not confirmed, so nothing committed is lost",
        (
            Step(0.25, Action.KILL_REPLICATOR, CAPTURE),
            Step(0.4, Action.START_REPLICATOR, CAPTURE),
            Step(0.55, Action.KILL_REPLICATOR, CAPTURE),
            Step(0.7, Action.START_REPLICATOR, CAPTURE),
        ),
        catches=("lost",),
    ),
    Drill(
        "capture-throttling",
        "postgres-cdc",
        "Kinesis throttles and partly refuses capture's PutRecords: retried in order, the slot "
        "confirmed only past what was acknowledged",
        (Step(0.1, Action.FAULTS, CAPTURE_THROTTLING), Step(0.8, Action.CLEAR_FAULTS)),
    ),
    Drill(
        "database-restart",
        "postgres-cdc",
        "PostgreSQL crashes (immediate shutdown) and comes back, then restarts cleanly: "
        "transactions in flight fail or end unknown, capture reconnects and resumes at the slot",
        (
            Step(0.3, Action.RESTART_DATABASE, "immediate"),
            Step(0.65, Action.RESTART_DATABASE, "fast"),
        ),
        catches=("lost",),
    ),
)
