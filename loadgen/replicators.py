"""The replicator processes of a run: started, drained, stopped, and (in drills) killed,
frozen, restarted or joined by a second poller.

Each process is ``python -m xrh replicate --side S`` (never in Locust's event loop), writing to
the run's ``replicator-S.log``; processes of one side share its source shards through the
lease table. Side B's replicator is started when a drill fails over to B (it copies what
producers write there back to A). When
production stops every live process gets SIGUSR1: each drains and exits 0 once caught up and
quiet, or 2 if it could not within ``--drain-timeout``.

The ``postgres-cdc`` pipeline adds the capture process, side :data:`CAPTURE` (``python -m xrh
capture``: the table's committed changes into region A's ``{prefix}-cdc``; its own JSON log is
``capture.log``, its output ``capture-output.log``), started, killed, frozen and restarted like a
replicator (drills name it ``capture``). It drains first: the kinesis replicator copying A's
change stream to B gets SIGUSR1 only once capture has put everything and exited.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loadgen.errors import OrchestrationError
from xrh.processes import stop_process

if TYPE_CHECKING:
    from loadgen.options import LoadOptions
    from xrh.config import HarnessConfig

LOG_NAME = "replicator-a.log"  # side A's; side B's is replicator-b.log
CAPTURE = "capture"  # postgres-cdc: the capture process's side
DRAINED_FIRST = (CAPTURE,)  # sides drained before the others (they feed them)


def log_name(side: str) -> str:
    """The file a side's process writes its output to."""
    return "capture-output.log" if side == CAPTURE else f"replicator-{side}.log"


def process_name(side: str) -> str:
    return "capture" if side == CAPTURE else f"replicator of side {side.upper()}"


def sides_to_start(pipeline: str) -> tuple[str, ...]:
    """The replicators a run starts: side A's; the action log's two consumers of region A's
    actions stream, side ``a`` the fast one (A's table), side ``b`` the lazy one (B's);
    active-active's two regions, each side's forwarder (its table's stream to the other
    region's staging stream) and applier (its staging stream to its table); postgres-cdc's
    capture, then side A's replicator (A's change stream to B)."""
    if pipeline == "postgres-cdc":
        return (CAPTURE, "a")
    return ("a", "b") if pipeline in ("action-log", "active-active") else ("a",)


def replicator_command(config: HarnessConfig, options: LoadOptions, run_path: Path, side: str,
                       endpoint: list[str]) -> list[str]:  # fmt: skip
    """``python -m xrh replicate`` for ``side`` of the run (``endpoint``: the flags that point
    it at the run's endpoints); the action log's consumer of the side
    (:data:`xrh.action_log.CONSUMERS`), the lazy one at ``--max-rate`` ``--lazy-rate``; for
    side :data:`CAPTURE`, :func:`capture_command`. In postgres-cdc the published sample is the
    seed's notify capture (``--replicator sample``), so side A's copier stays the reference."""
    if side == CAPTURE:
        return capture_command(config, options, run_path, endpoint)
    sample = options.replicator == "sample" and config.pipeline != "postgres-cdc"
    consumer: list[str] = []
    if config.pipeline == "action-log":
        consumer = ["--consumer", "fast"] if side == "a" else [
            "--consumer", "lazy", "--max-rate", f"{options.lazy_rate:g}"]  # fmt: skip
    return [
        sys.executable, "-m", "xrh", "replicate", "--pipeline", config.pipeline,
        "--side", side, "--run-dir", str(run_path), "--prefix", config.prefix, *endpoint,
        "--drain-timeout", str(options.drain_timeout_s),
        *(["--behaviour", "sample"] if sample else []),
        *(["--scan-segments", str(options.scan_segments)]
          if config.pipeline == "dynamodb" else []),
        *consumer,
        *(options.drill.replicator_args if options.drill else ()),
    ]  # fmt: skip


def capture_mode(options: LoadOptions) -> str:
    """``--capture``, or ``notify`` for ``--replicator sample`` (the seed's design)."""
    return "notify" if options.replicator == "sample" else options.postgres.capture


def capture_command(config: HarnessConfig, options: LoadOptions, run_path: Path,
                    endpoint: list[str]) -> list[str]:  # fmt: skip
    """``python -m xrh capture`` for the run: the database from the run's ``postgres.json``
    (a password of ``--postgres-url`` reaches it as ``PGPASSWORD``, never on a command line)."""
    mode = capture_mode(options)
    return [
        sys.executable, "-m", "xrh", "capture", "--pipeline", config.pipeline,
        "--run-dir", str(run_path), "--prefix", config.prefix, *endpoint,
        *(["--capture", mode] if mode != "slot" else []),
        *(["--table-mappings", mappings] if (mappings := options.postgres.table_mappings) else []),
        "--drain-timeout", str(options.drain_timeout_s),
    ]  # fmt: skip


class ReplicatorProcesses:
    def __init__(
        self, command: Callable[[str], list[str]], run_path: Path, say: Callable[[str], None]
    ) -> None:
        """``command(side)``: the command line of a replicator reading region ``side``."""
        self.command = command
        self.run_path = run_path
        self.say = say
        self.processes: list[subprocess.Popen[bytes]] = []
        self._sides: dict[int, str] = {}  # pid -> side
        self._logs: dict[str, Any] = {}

    @property
    def primary(self) -> subprocess.Popen[bytes] | None:
        """The first live side-A process (the one drills kill or freeze by default)."""
        return self.first_of("a")

    def first_of(self, side: str) -> subprocess.Popen[bytes] | None:
        """The first live process of ``side`` (the action log's consumer of that side)."""
        return next(
            (p for p in self.processes if p.poll() is None and self._sides[p.pid] == side), None
        )

    def start(self, side: str = "a", *, check: bool = True) -> subprocess.Popen[bytes]:
        log = self._logs.get(side)
        if log is None:
            log = self._logs[side] = (self.run_path / log_name(side)).open("ab")
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            self.command(side), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        self.processes.append(process)
        self._sides[process.pid] = side
        if check:
            time.sleep(0.5)
            if process.poll() is not None:
                raise OrchestrationError(
                    f"the {process_name(side)} exited at once with code {process.returncode}; "
                    f"see {self.run_path / log_name(side)}"
                )
        self.say(f"{process_name(side)} started (pid {process.pid})")
        return process

    def ensure(self, side: str) -> None:
        """A replicator reading region ``side`` is running (started if none is)."""
        if not any(p.poll() is None and self._sides[p.pid] == side for p in self.processes):
            self.start(side, check=False)

    def kill(self, side: str = "a") -> None:
        """SIGKILL the side's first process: no clean-up, its leases expire, a batch may be
        half done."""
        process = self._require("kill", side)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        self.say(f"{process_name(side)} killed (pid {process.pid})")

    def freeze(self, side: str = "a") -> None:
        os.kill(self._require("freeze", side).pid, signal.SIGSTOP)

    def thaw(self, side: str | None = None) -> None:
        """SIGCONT every live process of ``side`` (of every side if None)."""
        for process in self.processes:
            if process.poll() is None and side in (None, self._sides[process.pid]):
                os.kill(process.pid, signal.SIGCONT)

    def _require(self, what: str, side: str) -> subprocess.Popen[bytes]:
        process = self.first_of(side)
        if process is None:
            raise OrchestrationError(f"no running {process_name(side)} to {what}")
        return process

    def running_sides(self) -> list[str]:
        """The sides with a live process, in the order they were first started."""
        return [side for side in dict.fromkeys(self._sides.values())
                if any(p.poll() is None and self._sides[p.pid] == side for p in self.processes)]  # fmt: skip

    def _gone(self) -> str | None:
        """A side started that has no live process left: its table or stream would miss
        what it did not apply (the other side draining says nothing about it)."""
        running = set(self.running_sides())
        for side in dict.fromkeys(self._sides.values()):
            if side not in running:
                codes = [p.returncode for p in self.processes if self._sides[p.pid] == side]
                return (f"the {process_name(side)} exited early (codes {codes}); "
                        f"see {log_name(side)}")  # fmt: skip
        return None

    def drain(self, timeout_s: float, sleep: Callable[[float], None],
              progress: Callable[[], None]) -> str | None:  # fmt: skip
        """SIGUSR1 to every live process, wait for all; a reason if any did not drain, or if
        a side started has no live process left to drain (every side must drain). The sides
        of :data:`DRAINED_FIRST` (capture) get it first, the others once they have exited."""
        live = [p for p in self.processes if p.poll() is None]
        if not live:
            codes = [p.returncode for p in self.processes]
            return f"the replicator exited early (codes {codes}); see {LOG_NAME}"
        self.say("load stopped; waiting for the replicator to drain (SIGUSR1)...")
        gone = self._gone()
        self.thaw()
        first = [p for p in live if self._sides[p.pid] in DRAINED_FIRST]
        for stage in (first, [p for p in live if p not in first]):
            for process in stage:
                process.send_signal(signal.SIGUSR1)
            deadline = time.monotonic() + timeout_s + 30
            last_note = 0.0
            while any(p.poll() is None for p in stage) and time.monotonic() < deadline:
                if time.monotonic() - last_note >= 2:
                    progress()
                    last_note = time.monotonic()
                sleep(0.2)
        codes = [p.poll() for p in live]
        logs = ", ".join(log_name(side) for side in dict.fromkeys(self._sides.values()))
        if any(code is None for code in codes):
            return f"the replicator did not drain within {timeout_s:.0f}s"
        if gone is not None:
            return gone
        if all(code == 0 for code in codes):
            self.say("replicator drained")
            return None
        if 2 in codes:
            return f"the replicator could not drain within {timeout_s:.0f}s"
        return f"the replicator exited with code(s) {codes}; see {logs}"

    def stop(self) -> None:
        """SIGTERM (then SIGKILL) every process; close the log (idempotent)."""
        self.thaw()
        for process in self.processes:
            stop_process(process)
        for log in self._logs.values():
            log.close()
        self._logs.clear()
