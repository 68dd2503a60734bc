"""Create, check and remove a pipeline's resources in both regions, idempotently.

:func:`plan` compares the specs of :mod:`xrh.resources` with what exists and returns one
:class:`Step` per resource and region; :func:`apply` carries the steps out. Running provisioning
again finds everything present and changes nothing; ``destroy`` removes only what the specs name.
Each resource kind has a small backend in :mod:`xrh.provision.backends` (exists, create, delete).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

from xrh.aws import AwsClients
from xrh.config import HarnessConfig, Side
from xrh.provision.backends import backend_for
from xrh.resources import ResourceSpec, resources_for


class Action(enum.Enum):
    CREATE = "create"
    KEEP = "exists, unchanged"
    DELETE = "delete"
    ABSENT = "absent, nothing to delete"


@dataclass(frozen=True, slots=True)
class Step:
    side: Side
    region: str
    spec: ResourceSpec
    action: Action

    @property
    def changes(self) -> bool:
        return self.action in (Action.CREATE, Action.DELETE)

    def describe(self, done: bool = False) -> str:
        verb = (
            {Action.CREATE: "created", Action.DELETE: "deleted"}.get(self.action) if done else None
        )
        what = verb or self.action.value
        return f"{self.side.value.upper()} {self.region:<14} {self.spec.kind:<15} {self.spec.name}: {what}"


def plan(config: HarnessConfig, clients: AwsClients, *, destroy: bool = False) -> list[Step]:
    """What provisioning (or ``destroy``) would do, per region; reads only."""
    steps = []
    for side in Side:
        for spec in resources_for(config, side):
            exists = backend_for(spec).exists(clients, side, spec)
            if destroy:
                action = Action.DELETE if exists else Action.ABSENT
            else:
                action = Action.KEEP if exists else Action.CREATE
            steps.append(Step(side, config.region(side), spec, action))
    return steps


def apply(
    steps: list[Step],
    clients: AwsClients,
    *,
    report: Callable[[str], None] = lambda _line: None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Step]:
    """Carry out the steps that change something; return them. Creation waits until usable."""
    done = []
    for step in steps:
        backend = backend_for(step.spec)
        if step.action is Action.CREATE:
            backend.create(clients, step.side, step.spec, sleep)
        elif step.action is Action.DELETE:
            backend.delete(clients, step.side, step.spec, sleep)
        else:
            continue
        done.append(step)
        report(step.describe(done=True))
    return done


def provision(config: HarnessConfig, clients: AwsClients | None = None) -> list[Step]:
    """Create whatever of the pipeline's resources is missing in both regions."""
    clients = clients or AwsClients(config)
    return apply(plan(config, clients), clients)


def destroy(config: HarnessConfig, clients: AwsClients | None = None) -> list[Step]:
    """Remove the pipeline's resources from both regions."""
    clients = clients or AwsClients(config)
    return apply(plan(config, clients, destroy=True), clients)


__all__ = ["Action", "Step", "apply", "destroy", "plan", "provision"]
