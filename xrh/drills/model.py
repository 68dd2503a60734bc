"""What a drill is: load, a schedule of faults and process or region actions, then verify.

Pure data (Jepsen's nemesis schedule): a :class:`Drill` names its steps, each at a fraction
of the load's duration, so one drill runs as a short functional test or a long soak alike.
:mod:`xrh.drills.nemesis` plays the steps against the running harness; the pipelines plug in
their catalogues (:mod:`xrh.drills.kinesis`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Action(enum.Enum):
    FAULTS = "faults"  # arg: an xrh.faults spec, injected by the embedded endpoint
    CLEAR_FAULTS = "clear-faults"
    PAUSE_REGION = "pause-region"  # arg: 'a' or 'b' (SIGSTOP: requests hang, like a partition)
    RESUME_REGION = "resume-region"
    # The replicator actions take the side whose replicator they act on (default 'a'):
    KILL_REPLICATOR = "kill-replicator"  # SIGKILL, no clean-up: leases expire, batches in flight
    START_REPLICATOR = "start-replicator"  # a fresh process (new worker id)
    FREEZE_REPLICATOR = "freeze-replicator"  # SIGSTOP the first replicator: its lease expires
    THAW_REPLICATOR = "thaw-replicator"
    SECOND_REPLICATOR = "second-replicator"  # another poller sharing the shards by leases
    RESHARD = "reshard"  # arg: the source stream's new shard count
    FAILOVER = "failover"  # arg: 'a' or 'b', as `xrh failover --to`
    RESTART_DATABASE = "restart-database"  # arg: 'fast' (clean) or 'immediate' (a crash)


# Actions that leave something to undo if the drill stops early, and the step that undoes it.
UNDO = {
    Action.FAULTS: Action.CLEAR_FAULTS,
    Action.PAUSE_REGION: Action.RESUME_REGION,
    Action.FREEZE_REPLICATOR: Action.THAW_REPLICATOR,
    Action.KILL_REPLICATOR: Action.START_REPLICATOR,
}


@dataclass(frozen=True, slots=True)
class Step:
    at: float  # fraction of the load's duration, 0..1
    action: Action
    arg: str | None = None
    hold_s: float | None = None  # undo after this many seconds (pause 10 s), else a later step

    def __post_init__(self) -> None:
        if not 0 <= self.at <= 1:
            raise ValueError(f"step at {self.at}: must be a fraction of the load, 0..1")


@dataclass(frozen=True, slots=True)
class Drill:
    name: str
    pipeline: str
    summary: str
    steps: tuple[Step, ...]
    replicator_args: tuple[str, ...] = ()  # extra `xrh replicate` flags
    template: str | None = None  # a load template when the drill needs particular records
    # load options the drill needs (`--bootstrap-items 20000`), given to Locust by `xrh drill`
    # and taken by `--drill` for every such option the user left at its default
    load_args: tuple[str, ...] = ()
    expect: str = "valid"  # the reference replicator's verdict
    catches: tuple[str, ...] = field(default_factory=tuple)  # what a faulty replicator shows

    @property
    def fault_window(self) -> tuple[float, float]:
        """From the first step to the last one (as fractions): recovery is measured after."""
        return min(s.at for s in self.steps), max(s.at for s in self.steps)
