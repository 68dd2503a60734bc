"""Plays a drill's schedule against the running harness and logs every step it took.

The harness side is a :class:`DrillEnv` (the orchestrator implements it: it owns the embedded
endpoint and the replicator processes); the nemesis only decides when. Every step, and every
undo, is one line of ``drill-timeline.jsonl`` in the run directory (``at_ms``, seconds since the
load began, action, argument, whether it worked), which verify draws on its lag chart.

Whatever happens, :meth:`Nemesis.finish` undoes what is still in force (faults cleared, regions
and replicators thawed, a killed replicator restarted), so the drain and verify that follow run
against a whole system and the run's verdict is about what the faults left behind.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from xrh.drills.model import UNDO, Action, Drill, Step

TIMELINE_FILE = "drill-timeline.jsonl"


class DrillEnv(Protocol):
    def set_faults(self, spec: str | None) -> None: ...
    def pause_region(self, side: str) -> None: ...
    def resume_region(self, side: str) -> None: ...
    def kill_replicator(self, side: str = "a") -> None: ...
    def start_replicator(self, side: str = "a") -> None: ...
    def freeze_replicator(self, side: str = "a") -> None: ...
    def thaw_replicator(self, side: str = "a") -> None: ...
    def second_replicator(self) -> None: ...
    def reshard(self, shards: int) -> None: ...
    def failover(self, to: str) -> None: ...
    def restart_database(self, mode: str) -> None: ...


def _apply(env: DrillEnv, action: Action, arg: str | None) -> None:
    match action:
        case Action.FAULTS:
            env.set_faults(arg)
        case Action.CLEAR_FAULTS:
            env.set_faults(None)
        case Action.PAUSE_REGION:
            env.pause_region(arg or "b")
        case Action.RESUME_REGION:
            env.resume_region(arg or "b")
        case Action.KILL_REPLICATOR:
            env.kill_replicator(arg or "a")
        case Action.START_REPLICATOR:
            env.start_replicator(arg or "a")
        case Action.FREEZE_REPLICATOR:
            env.freeze_replicator(arg or "a")
        case Action.THAW_REPLICATOR:
            env.thaw_replicator(arg or "a")
        case Action.SECOND_REPLICATOR:
            env.second_replicator()
        case Action.RESHARD:
            env.reshard(int(arg or "8"))
        case Action.FAILOVER:
            env.failover(arg or "b")
        case Action.RESTART_DATABASE:
            env.restart_database(arg or "fast")


class Nemesis:
    """One drill's schedule over ``load_s`` seconds of load (a thread: :meth:`start`)."""

    def __init__(
        self,
        drill: Drill,
        env: DrillEnv,
        load_s: float,
        timeline: Path,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.drill = drill
        self.env = env
        self.load_s = max(1.0, load_s)
        self.timeline = timeline
        self._clock = clock
        self._wall_ms = wall_ms
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._started = clock()
        self._open: dict[tuple[Action, str | None], Step] = {}  # undoable steps in force
        self.errors: list[str] = []

    def plan(self) -> list[tuple[float, Action, str | None]]:
        """(seconds after the start, action, argument), undo steps of holds included."""
        out = []
        for step in self.drill.steps:
            at = step.at * self.load_s
            out.append((at, step.action, step.arg))
            if step.hold_s is not None and step.action in UNDO:
                out.append((at + step.hold_s, UNDO[step.action], step.arg))
        return sorted(out, key=lambda item: item[0])

    def start(self) -> None:
        self._started = self._clock()
        self.log("drill", self.drill.name, ok=True, note=self.drill.summary)
        self._thread = threading.Thread(target=self._run, name="xrh-nemesis", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for at, action, arg in self.plan():
            if self._stop.wait(max(0.0, at - (self._clock() - self._started))):
                return
            self.step(action, arg)

    def step(self, action: Action, arg: str | None) -> None:
        """Carry out one action now and log it; a failure is logged, not raised (the drill's
        verdict comes from verify, and a step that could not run is in its timeline)."""
        with self._lock:
            error = None
            try:
                _apply(self.env, action, arg)
            except Exception as exc:  # noqa: BLE001 - logged, the drill goes on
                error = f"{type(exc).__name__}: {exc}"
                self.errors.append(f"{action.value} {arg or ''}: {error}")
            if error is None:
                self._track(action, arg)
            self.log(action.value, arg, ok=error is None, note=error)

    def _track(self, action: Action, arg: str | None) -> None:
        undoes = {v: k for k, v in UNDO.items()}
        # an undo matches its step by action and side (the region paused, the replicator's side)
        side = None if action in (Action.FAULTS, Action.CLEAR_FAULTS) else (arg or "")
        if action in UNDO:
            self._open[(action, side)] = Step(0, action, arg)
        elif action in undoes:
            self._open.pop((undoes[action], side), None)

    def finish(self) -> None:
        """Stop the schedule and undo whatever is still in force (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        for step in list(self._open.values()):
            self.step(UNDO[step.action], step.arg)
        self.log("drill-end", self.drill.name, ok=not self.errors,
                 note="; ".join(self.errors) or None)  # fmt: skip

    def log(self, action: str, arg: str | None, *, ok: bool, note: str | None = None) -> None:
        line = {
            "at_ms": self._wall_ms(),
            "t_s": round(self._clock() - self._started, 3),
            "action": action,
            "arg": arg,
            "ok": ok,
        }
        if note:
            line["note"] = note
        with self.timeline.open("a") as handle:
            handle.write(json.dumps(line, sort_keys=True) + "\n")


def read_timeline(path: Path) -> list[dict]:
    """The steps a drill took (empty when the run was no drill)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out
