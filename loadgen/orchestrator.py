"""Around a run: endpoint, run directory, provisioning, the replicator process, drain, verify.

Plain Python (no locust): :mod:`loadgen.locust_users` calls :meth:`Orchestrator.begin` on test
start and :meth:`Orchestrator.finish` on test stop, in the master or local runner only, and
:meth:`Orchestrator.close` when the process quits. Whatever happens (a normal end, Ctrl-C, an
error), :meth:`close` leaves nothing running: the replicator gets SIGTERM then SIGKILL, the
embedded endpoint is stopped.

The reference replicator runs as a separate process (``python -m xrh replicate``), never in
Locust's event loop. When production stops it gets SIGUSR1: it drains and exits 0 once caught
up and quiet, or 2 if it could not drain within ``--drain-timeout``. The action log has two
consumers of region A's actions stream, both started: side ``a`` (``--consumer fast``, region
A's table) and side ``b`` (``--consumer lazy --max-rate <--lazy-rate>``, region B's table); both
get SIGUSR1 and the run waits for both. Active-active starts both sides' replicators the same
way (side ``a``: region A's forwarder and applier, side ``b``: region B's), drained together;
its producers write both regions by ``--region-weights``, so a drill's failover does not move
them.

postgres-cdc (:mod:`loadgen.run_database`): before the load a throwaway PostgreSQL
server starts in the run directory (``postgres/``, its log ``postgres.log``) unless
``--postgres-url`` names a database; ``postgres.json`` says where it is (without a password:
one in ``--postgres-url`` reaches capture and verify as libpq's ``PGPASSWORD``); the table, its
publication and slot (or the notify trigger, for ``--capture notify``) are created; then the
capture process and side A's replicator start. At the end capture drains first, then the
replicator, then verify reads the table; then the throwaway server is stopped and its data
directory removed (a user's database keeps its table; its slot is dropped, as an abandoned slot
holds WAL for ever).
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loadgen import run_database
from loadgen.errors import OrchestrationError
from loadgen.ledger import LedgerCollector, LedgerSummary, LedgerWriter
from loadgen.options import LoadOptions, public_dict
from loadgen.postgres_options import cdc_names
from loadgen.replicators import (
    ReplicatorProcesses,
    replicator_command,
    sides_to_start,
)
from xrh import runs
from xrh.config import EndpointMode, HarnessConfig
from xrh.errors import EXIT_UNKNOWN
from xrh.resources import ResourceNames

if TYPE_CHECKING:
    from xrh.drills.nemesis import Nemesis
    from xrh.postgres_server import PostgresServer

Say = Callable[[str], None]


def endpoint_flags(config: HarnessConfig) -> list[str]:
    """The command-line flags that point another process at the same endpoints."""
    flags = ["--region-a", config.region_a, "--region-b", config.region_b]
    if config.endpoint_mode is EndpointMode.AWS:
        return [*flags, "--endpoint", "aws"]
    if config.endpoint_mode is EndpointMode.URL:
        return [*flags, "--endpoint-url", str(config.endpoint_url_a)]
    return [*flags, "--endpoint-url-a", str(config.endpoint_url_a),
            "--endpoint-url-b", str(config.endpoint_url_b)]  # fmt: skip


def config_to_wire(config: HarnessConfig) -> dict[str, Any]:
    return config.to_public_dict()


def config_from_wire(data: dict[str, Any]) -> HarnessConfig:
    fields = dict(data)
    fields["endpoint_mode"] = EndpointMode(fields["endpoint_mode"])
    fields["runs_dir"] = Path(fields["runs_dir"])
    names = {f.name for f in dataclasses.fields(HarnessConfig)}
    return HarnessConfig(**{k: v for k, v in fields.items() if k in names})


def read_lag(run: runs.RunDir) -> dict[str, Any]:
    """Replication progress from the replicator's metrics file (empty if none yet, or if it
    is not in a shape this reads: the metrics of another pipeline's replicator say nothing
    wrong, at worst nothing)."""
    try:
        metrics = json.loads(run.file(runs.METRICS_FILE).read_text())
        if not isinstance(metrics, dict):
            return {}
        return _lag_of(metrics)
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def _values(value: Any) -> list[Any]:
    """A dict's values or a list's items (metrics may key shards or list them)."""
    if isinstance(value, dict):
        return list(value.values())
    return list(value) if isinstance(value, list) else []


def _lag_of(metrics: dict[str, Any]) -> dict[str, Any]:
    snapshots = _values(metrics.get("workers")) or [metrics]
    shards = [s for snap in snapshots if isinstance(snap, dict)
              for s in _values(snap.get("shards")) if isinstance(s, dict)]  # fmt: skip
    lags = [s.get("commit_lag_ms") for s in shards]
    behind = [s.get("millis_behind_latest") for s in shards]
    lags = [v for v in lags if isinstance(v, int | float)]
    behind = [v for v in behind if isinstance(v, int | float)]
    totals = metrics.get("totals") or metrics.get("counters") or {}
    if not isinstance(totals, dict):
        totals = {}
    marks = [snap.get("watermark_ms") for snap in snapshots if isinstance(snap, dict)]
    marks = [m for m in marks if isinstance(m, int)]
    return {
        "records_copied": totals.get("records_copied"),
        # the dynamodb replicator: its bootstrap copy and the stream changes it applied
        "items_copied": totals.get("bootstrap_items_copied"),
        "changes_applied": totals.get("changes_applied"),
        "commit_lag_ms_max": max(lags) if lags else None,
        "millis_behind_latest_max": max(behind) if behind else None,
        "watermark_ms": max(marks) if marks else None,
        "shards": len(shards),
    }


@dataclass
class RunState:
    run: runs.RunDir
    config: HarnessConfig
    ledger: LedgerWriter
    collector: LedgerCollector
    replicators: ReplicatorProcesses | None = None
    postgres: PostgresServer | None = None  # postgres-cdc: the throwaway server of the run
    nemesis: Nemesis | None = None
    claims_stop: threading.Event | None = None
    claims_thread: threading.Thread | None = None
    started_at: float = 0.0
    summary: LedgerSummary | None = None
    verdict: str | None = None
    exit_code: int | None = None
    report: dict[str, Any] | None = None


class Orchestrator:
    """One per Locust master/local process; a run per test start."""

    def __init__(self, base: HarnessConfig, options: LoadOptions, *, say: Say = print) -> None:
        self.base = base
        self.options = options
        self.say = say
        self.endpoint: Any = None
        self.state: RunState | None = None
        self.last: RunState | None = None
        # Set by the Locust layer: make every producer of the run write to a region (a
        # failover); a local runner switches its own producers, a master tells its workers.
        self.write_to: Callable[[str], None] | None = None

    # ------------------------------------------------------------------ start

    def begin(self) -> RunState:
        """Endpoint (embedded default), run directory, provisioning, replicator process."""
        started = time.time()
        if self.state is not None:
            raise OrchestrationError("a run is already in progress")
        config = self.base
        if config.endpoint_mode is EndpointMode.EMBEDDED and self.endpoint is None:
            from xrh.endpoint import EmbeddedEndpoint

            self.say("starting the embedded endpoint (one moto server per region)...")
            self.endpoint = EmbeddedEndpoint(config)
            self.endpoint.start()
        if self.endpoint is not None:
            config = self.endpoint.config
        run = runs.create_run(config.runs_dir, None)
        if config.endpoint_mode is EndpointMode.EMBEDDED:
            # A fresh stream per run: an endpoint kept across web-UI runs holds older records.
            config = dataclasses.replace(config, prefix=f"{config.prefix}-{run.run_id[-6:]}")
        # the names the records of this run's table carry (--table-mappings; checked again
        # here with the run's final prefix)
        names = (cdc_names(config.prefix, self.options.postgres)
                 if config.pipeline == "postgres-cdc" else {})  # fmt: skip
        run.write_json(runs.CONFIG_FILE, {**config.to_public_dict(),
                                          "load": public_dict(self.options), **names})  # fmt: skip
        self.say(f"run directory: {run.path}")
        from xrh.provision import provision

        provision(config)
        ledger = LedgerWriter(run.file(runs.LEDGER_FILE))
        state = RunState(run, config, ledger, LedgerCollector(ledger), started_at=time.time())
        self.state = state
        if config.pipeline == "dynamodb" and self.options.bootstrap_items:
            # Before the replicator (its bootstrap copy then races the users' live writes)
            # and before the run's faults, which are meant for the load, not for set-up.
            from loadgen.bootstrap import load_bootstrap

            load_bootstrap(config, self.options, ledger, run.run_id, say=self.say)
        if config.pipeline == "postgres-cdc":  # the database, before capture and the load
            self._start_database(state)
        # Faults start once the run's resources exist; each run logs them in its own directory.
        if self.endpoint is not None:
            self.endpoint.set_faults(
                self.options.faults, seed=self.options.seed, log=run.file("faults.jsonl")
            )
        elif self.options.faults:
            from loadgen.errors import LoadgenUsageError

            raise LoadgenUsageError(
                f"--faults {self.options.faults!r}: faults are injected by the embedded endpoint "
                f"only, not with the {config.endpoint_mode.value} endpoint"
            )
        if self.options.replicator != "external":
            self._start_replicator(state)
        if config.pipeline == "kinesis":  # watermark claims over stream checkpoints
            self._watch_claims(state)
        self._start_drill(state, time.time() - started)
        return state

    def _start_database(self, state: RunState) -> None:
        state.postgres = run_database.start(state.run, state.config, self.options, self.say)

    def restart_database(self, mode: str = "fast") -> None:
        """Restart the run's throwaway server (a drill): ``fast`` or ``immediate`` (a crash)."""
        run_database.restart(self.state.postgres if self.state is not None else None, mode,
                             self.say)  # fmt: skip

    def _stop_database(self, state: RunState) -> None:
        server, state.postgres = state.postgres, None
        run_database.stop(server, state.run, state.config, self.options, self.say)

    def _watch_claims(self, state: RunState) -> None:
        """Look at the target's checkpoint table every half second for the whole run, so
        verify holds each watermark claim against what the target had when it was made,
        whatever the replicator logs itself (verify.claims)."""
        from verify.claims import CheckpointSampler
        from xrh.aws import AwsClients

        sampler = CheckpointSampler(
            AwsClients(state.config, max_attempts=2, connect_timeout=2.0, read_timeout=5.0),
            state.config, ResourceNames(state.config.prefix).stream,
            log_path=state.run.file(runs.OBSERVED_CLAIMS_FILE), observer="orchestrator",
        )  # fmt: skip
        state.claims_stop = threading.Event()
        state.claims_thread = threading.Thread(
            target=sampler.run, args=(state.claims_stop,), name="xrh-claims", daemon=True
        )
        state.claims_thread.start()

    def _stop_watching_claims(self, state: RunState) -> None:
        if state.claims_stop is not None and state.claims_thread is not None:
            state.claims_stop.set()
            state.claims_thread.join(timeout=10)
            state.claims_stop = state.claims_thread = None

    def _start_replicator(self, state: RunState) -> None:
        """Side A's replicator; for the action log both consumers (A fast, B lazy), for
        active-active both regions' replicators."""

        def command(side: str) -> list[str]:
            return replicator_command(state.config, self.options, state.run.path, side,
                                      endpoint_flags(state.config))  # fmt: skip

        state.replicators = ReplicatorProcesses(command, state.run.path, self.say)
        for side in sides_to_start(state.config.pipeline):
            state.replicators.start(side)

    def _start_drill(self, state: RunState, setup_s: float) -> None:
        """The drill's nemesis, over what is left of --run-time after set-up."""
        drill = self.options.drill
        if drill is None:
            return
        from loadgen.drill_env import HarnessDrillEnv
        from xrh.drills.nemesis import TIMELINE_FILE, Nemesis

        load_s = max(5.0, (self.options.run_time_s or 60.0) - setup_s)
        env = HarnessDrillEnv(self, state)
        state.nemesis = Nemesis(drill, env, load_s, state.run.file(TIMELINE_FILE))
        self.say(f"drill {drill.name}: {drill.summary} (over {load_s:.0f}s of load)")
        state.nemesis.start()

    # ------------------------------------------------------------------ finish

    def finish(
        self, *, workers_ok: bool = True, sleep: Callable[[float], None] = time.sleep
    ) -> int:
        """Close the ledger, drain the replicator, verify, print the summary: the exit code."""
        state = self.state
        if state is None:
            return (
                self.last.exit_code
                if self.last and self.last.exit_code is not None
                else EXIT_UNKNOWN
            )
        incomplete: list[str] = []
        try:
            state.summary = state.ledger.close(clean=workers_ok)
            s = state.summary
            self.say(
                f"ledger: {s.rows} attempts ({', '.join(f'{k} {v}' for k, v in sorted(s.by_status.items()))})"
                + ("" if s.complete else f"; INCOMPLETE, missing {', '.join(s.missing) or 'worker batches'}")
            )  # fmt: skip
            self._end_drill(state)
            if state.replicators is not None:
                reason = self._drain(state, sleep)
                if reason:
                    incomplete.append(reason)
            self._stop_watching_claims(state)
            if not self.options.verify:
                self.say("--no-verify: skipping verify")
                state.exit_code = 0
                return 0
            from verify import print_summary, run_verify

            self.say("verifying...")
            result = run_verify(
                state.run.path, state.config, timeout_s=self.options.verify_timeout_s,
                progress=True, incomplete=incomplete or None, settle_s=self.options.settle_s,
            )  # fmt: skip
            state.report = result.report
            state.verdict = result.verdict.value
            state.exit_code = result.exit_code
            print_summary(result.report)
            self.say(f"report: {result.report_json}")
            return result.exit_code
        except BaseException:
            state.exit_code = EXIT_UNKNOWN
            raise
        finally:
            self._stop_replicator(state)
            self._stop_database(state)
            self.last, self.state = state, None

    def _drain(self, state: RunState, sleep: Callable[[float], None]) -> str | None:
        assert state.replicators is not None

        def progress() -> None:
            lag = read_lag(state.run)
            done = f"{lag.get('records_copied') or 0} records copied"
            if state.config.pipeline == "dynamodb":
                done = (f"{lag.get('items_copied') or 0} items copied by the bootstrap, "
                        f"{lag.get('changes_applied') or 0} changes applied")  # fmt: skip
            elif len(sides_to_start(state.config.pipeline)) > 1:  # say which side is not done
                sides = state.replicators.running_sides() if state.replicators else []
                who = {"action-log": "consumers", "postgres-cdc": "capture and replicator"}.get(
                    state.config.pipeline, "replicators")  # fmt: skip
                self.say(f"  draining: {who} still running: {', '.join(sides) or '-'}")
                return
            self.say(f"  draining: {done}, max lag {lag.get('commit_lag_ms_max')} ms")

        return state.replicators.drain(self.options.drain_timeout_s, sleep, progress)

    def _end_drill(self, state: RunState) -> None:
        """Stop the schedule and undo what is in force, before the drain (idempotent)."""
        if state.nemesis is not None:
            nemesis, state.nemesis = state.nemesis, None
            nemesis.finish()
            if nemesis.errors:
                self.say(f"drill steps that failed: {'; '.join(nemesis.errors)}")

    def _stop_replicator(self, state: RunState) -> None:
        self._end_drill(state)
        self._stop_watching_claims(state)
        if state.replicators is not None:
            state.replicators.stop()

    # ------------------------------------------------------------------ teardown

    def abort(self, reason: str) -> None:
        """An abnormal end: kill the replicator, keep the ledger marked incomplete."""
        state = self.state
        if state is None:
            return
        self.say(f"run aborted: {reason}")
        try:
            state.summary = state.ledger.close(clean=False, timeout=10)
        except Exception as exc:  # noqa: BLE001 - best effort while aborting
            self.say(f"ledger: {exc}")
        finally:
            self._stop_replicator(state)
            self._stop_database(state)
            self.last, self.state = state, None

    def close(self) -> None:
        """Stop everything this process started (idempotent)."""
        if self.state is not None:
            self.abort("the process is quitting")
        if self.endpoint is not None:
            endpoint, self.endpoint = self.endpoint, None
            endpoint.stop()

    @property
    def stream(self) -> str:
        config = self.state.config if self.state else self.base
        return ResourceNames(config.prefix).stream
