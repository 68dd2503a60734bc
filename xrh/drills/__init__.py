"""Drills: load + a fault schedule + verify, for every pipeline (see :mod:`xrh.drills.model`)."""

from __future__ import annotations

from xrh.drills.model import Action, Drill, Step
from xrh.errors import UsageError

__all__ = ["Action", "Drill", "Step", "catalogue", "get_drill"]


def catalogue(pipeline: str = "kinesis") -> tuple[Drill, ...]:
    """Every drill of a pipeline, in the order ``--all`` runs them."""
    from xrh.drills import action_log, active_active, dynamodb, kinesis, postgres_cdc

    every = (*kinesis.DRILLS, *dynamodb.DRILLS, *action_log.DRILLS, *active_active.DRILLS,
             *postgres_cdc.DRILLS)  # fmt: skip
    return tuple(d for d in every if d.pipeline == pipeline)


def get_drill(name: str, pipeline: str = "kinesis", option: str = "--drill") -> Drill:
    for drill in catalogue(pipeline):
        if drill.name == name:
            return drill
    names = ", ".join(d.name for d in catalogue(pipeline)) or "none yet"
    raise UsageError(f"{option} {name!r}: no such {pipeline} drill; choose one of {names}")
