"""The harness as a drill's nemesis sees it (:class:`xrh.drills.nemesis.DrillEnv`): faults and
pauses through the embedded endpoint, the replicator processes, reshards and failovers through
the same APIs and commands a person would use."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

from loadgen.errors import OrchestrationError
from xrh import runs
from xrh.config import Side

if TYPE_CHECKING:
    from loadgen.orchestrator import Orchestrator, RunState


class HarnessDrillEnv:
    def __init__(self, orchestrator: Orchestrator, state: RunState) -> None:
        self._orch = orchestrator
        self._state = state

    def _endpoint(self, what: str):  # noqa: ANN202 - EmbeddedEndpoint, imported lazily
        endpoint = self._orch.endpoint
        if endpoint is None:
            raise OrchestrationError(f"{what} needs the embedded endpoint")
        return endpoint

    def _replicators(self):  # noqa: ANN202
        if self._state.replicators is None:
            raise OrchestrationError("this drill needs the harness's replicator, not external")
        return self._state.replicators

    def set_faults(self, spec: str | None) -> None:
        """The drill's faults replace the run's --faults; clearing restores them."""
        self._endpoint("injecting faults").set_faults(
            spec or self._orch.options.faults, seed=self._orch.options.seed,
            log=self._state.run.file(runs.FAULTS_FILE),
        )  # fmt: skip

    def pause_region(self, side: str) -> None:
        self._endpoint("pausing a region").pause_region(Side(side))

    def resume_region(self, side: str) -> None:
        self._endpoint("resuming a region").resume_region(Side(side))

    # The replicator actions act on one side's replicator (the action log's consumers: 'a'
    # the fast one, 'b' the lazy one); the other pipelines' drills use side A's.

    def kill_replicator(self, side: str = "a") -> None:
        self._replicators().kill(side)

    def start_replicator(self, side: str = "a") -> None:
        self._replicators().start(side, check=False)

    def freeze_replicator(self, side: str = "a") -> None:
        self._replicators().freeze(side)

    def thaw_replicator(self, side: str = "a") -> None:
        self._replicators().thaw(side)

    def second_replicator(self) -> None:
        self._replicators().start(check=False)

    def reshard(self, shards: int) -> None:
        from xrh.aws import AwsClients
        from xrh.resources import ResourceNames

        config = self._state.config
        AwsClients(config).client("kinesis", Side.A).update_shard_count(
            StreamName=ResourceNames(config.prefix).stream, TargetShardCount=shards,
            ScalingType="UNIFORM_SCALING",
        )  # fmt: skip

    def restart_database(self, mode: str) -> None:
        """The run's throwaway PostgreSQL server stopped (``fast``: cleanly; ``immediate``: a
        crash) and started again (postgres-cdc drills)."""
        self._orch.restart_database(mode)

    def failover(self, to: str) -> None:
        """``xrh failover --to`` as a person would run it; a replicator reads the new active
        region (it copies back what is written there), and producers write there from now."""
        from loadgen.orchestrator import endpoint_flags

        config = self._state.config
        done = subprocess.run(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "xrh", "failover", "--to", to, "--prefix", config.prefix,
             *endpoint_flags(config)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if done.returncode != 0:
            raise OrchestrationError(f"xrh failover --to {to} failed: {done.stderr.strip()}")
        if self._state.replicators is not None:
            self._state.replicators.ensure(to)
        if self._orch.write_to is not None:
            self._orch.write_to(to)
