"""No copy back at failover: the previous region's late copies never return to it (pure).

The loop. A failover with a handover time S (:mod:`replicator.core.active`) lets the previous
region P keep copying the records that arrived in its stream before S, and the new region N
copy what arrives in N's stream from S on. P's *late* copies (made after S) land in N after S,
so N would send them back to P: a record of P twice in P's stream (verify: ``looped``, fatal).

The fix, in three parts, with the target region's checkpoint table as the meeting point (so it
survives the loss of P):

1. P records its late copies. After each PutRecords P writes the target sequence numbers of the
   copies it made for a handover (one item per batch per 2,000 copies, scope
   ``handover:kinesis:<stream>:<P>:<S>`` in N's table). Copies made before P learned of the
   switch (its cached answer said "P active" up to ``ttl`` after S) are recorded too: P keeps
   the target sequence numbers of what it wrote in the last ``remember_ms`` in memory, and when
   it first sees the switch it records those sent from ``S - in_flight_ms`` on (a write sent
   before that landed before S: N stands down for it anyway).
2. P also copies what its own producers still wrote into its stream in the first ``grace_ms``
   after S (a request that began before the switch lands after it: without this it would be
   copied by nobody, since P stands down after S and N never reads P's stream). Until P is
   done N forwards nothing into P's stream (part 3), so every record that arrives there before
   S + grace is P's own. P says when it is done: a shard of P is done when P has processed every
   record that arrived in it before S + grace (a processed batch reached a record that arrived
   later, an empty read at the tip after it plus the visibility margin, or the shard finished)
   and checkpointed past them, so a restart never copies them again. Each P worker marks its shards done, heartbeats
   while the handover lasts, and once every listed shard of P's stream is done (or finished)
   one of them marks the handover complete.
3. N holds, then skips. N's replicator does not forward a record that arrived in N at or after
   S until P has marked the handover complete, or P looks dead (no heartbeat for
   ``dead_after_ms`` after S); then it stands down for the recorded copies (they are P's
   records, already in P) and forwards the rest. Held batches are retried by the poller.

Steady state costs no AWS call per record: P records nothing while no switch is in force, and
N reads the handover state once per ``gate_cache_ms`` while holding and once more when it
completes; after that every batch checks a local set.

Limits, stated: a producer that still writes to P later than ``grace_ms`` after S loses those
records (P stands down for them). P dying between a PutRecords and recording its copies (or restarting within
``remember_ms`` of the switch, losing its memory) leaves those copies unrecorded: once N stops
waiting (P's heartbeat expired) they come back to P once each. A P that comes back after N gave
up waiting, and copies more, sends copies that come back once too. N's records written after S
reach P only after the handover completes (or ``dead_after_ms`` if P is gone): bounded lag,
never loss. Clocks of P and N must agree within the margins (as for the handover itself).
A second switch before the first handover completed (about ``grace_ms`` plus two seconds
with a live P) is not covered: P stops its part of the first handover (records it had not
copied yet are stood down) and N, now the previous region, copies P's unrecorded late copies
back. :func:`handover_in_progress` tells a failover command to wait (``xrh failover`` does).
A second switch *after* it completed is covered: the active-region item keeps the earlier
switches, and :func:`gate_batch` puts every record through the gate of the switch in force
when it arrived, so what N still works off after the second switch keeps the first one's
gate (its recorded copies stood down for, not copied back).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from replicator.core.active import Assignment, Switch
from replicator.core.watermark import ShardInfo

COPY_CHUNK = 2_000  # copies per item: 2,000 x ~80 bytes stays far below DynamoDB's 400 KB


@dataclass(frozen=True, slots=True)
class HandoverKey:
    """One switch of one stream: ``previous`` handed over to ``new`` at ``since_ms``."""

    stream: str
    previous: str
    new: str
    since_ms: int

    @property
    def scope(self) -> str:
        return f"handover:kinesis:{self.stream}:{self.previous}:{self.since_ms}"

    @classmethod
    def of(cls, stream: str, assignment: Assignment) -> HandoverKey | None:
        """The handover of the switch in force now."""
        return cls.of_switch(stream, assignment.switch)

    @classmethod
    def of_switch(cls, stream: str, switch: Switch | None) -> HandoverKey | None:
        if switch is None or not switch.previous_region:
            return None
        if switch.previous_region == switch.region:
            return None
        return cls(stream, switch.previous_region, switch.region, switch.since_ms)


@dataclass(frozen=True, slots=True)
class HandoverState:
    complete: bool = False
    heartbeat_ms: int | None = None


class HandoverStore(Protocol):
    """The handover rows of one table (the new region's checkpoint table)."""

    def record_copies(self, key: HandoverKey, part: str, copies: Sequence[str]) -> None: ...

    def mark_done(self, key: HandoverKey, shard_ids: Iterable[str]) -> None: ...

    def done_shards(self, key: HandoverKey) -> set[str]: ...

    def heartbeat(self, key: HandoverKey, at_ms: int) -> None: ...

    def mark_complete(self, key: HandoverKey, at_ms: int) -> None: ...

    def state(self, key: HandoverKey) -> HandoverState: ...

    def copies(self, key: HandoverKey) -> set[str]: ...


@dataclass
class MemoryHandoverStore:
    """In-memory HandoverStore (tests); ``calls`` counts every operation."""

    recorded: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    done: dict[str, set[str]] = field(default_factory=dict)
    states: dict[str, HandoverState] = field(default_factory=dict)
    calls: int = 0
    fail_next: Exception | None = None

    def _call(self) -> None:
        self.calls += 1
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc

    def record_copies(self, key: HandoverKey, part: str, copies: Sequence[str]) -> None:
        self._call()
        self.recorded.setdefault(key.scope, {})[part] = list(copies)

    def mark_done(self, key: HandoverKey, shard_ids: Iterable[str]) -> None:
        self._call()
        self.done.setdefault(key.scope, set()).update(shard_ids)

    def done_shards(self, key: HandoverKey) -> set[str]:
        self._call()
        return set(self.done.get(key.scope, set()))

    def heartbeat(self, key: HandoverKey, at_ms: int) -> None:
        self._call()
        old = self.states.get(key.scope, HandoverState())
        self.states[key.scope] = HandoverState(old.complete, at_ms)

    def mark_complete(self, key: HandoverKey, at_ms: int) -> None:
        self._call()
        self.states[key.scope] = HandoverState(True, at_ms)

    def state(self, key: HandoverKey) -> HandoverState:
        self._call()
        return self.states.get(key.scope, HandoverState())

    def copies(self, key: HandoverKey) -> set[str]:
        self._call()
        return {c for part in self.recorded.get(key.scope, {}).values() for c in part}


@dataclass(frozen=True, slots=True)
class HandoverSettings:
    dead_after_ms: int = 30_000  # N stops waiting for a P without a heartbeat this long
    grace_ms: int = 2_000  # P copies its producers' records that arrive up to S + grace
    in_flight_ms: int = 3_000  # bound on a copy's time in flight (>= the write timeout)
    remember_ms: int = 10_000  # P's memory of its copies (>= cache TTL + tick + in flight)
    gate_cache_ms: int = 500  # N reads the state at most this often while holding
    margin_ms: int = 1_000  # visibility delay: an empty read at t saw what arrived by t - margin


@dataclass(frozen=True, slots=True)
class Gate:
    """N's answer for records that arrived at or after S: hold them, or skip these copies."""

    hold: bool
    skip: frozenset[str] = frozenset()
    reason: str = ""


def copy_id(shard_id: str, sequence_number: str) -> str:
    return f"{shard_id}:{int(sequence_number)}"


@dataclass(frozen=True, slots=True)
class GatedBatch:
    """What the new-region gates say of one batch: ``held_from`` is the index of the first
    record to hold (None: none held) and ``reason`` why; ``flags`` the copy flags of the records
    before it, recorded copies turned off; ``skipped`` how many were."""

    flags: list[bool]
    held_from: int | None = None
    reason: str = ""
    skipped: int = 0


def gate_batch(
    gate: Callable[[HandoverKey], Gate],
    stream: str,
    this_region: str,
    assignment: Assignment,
    arrivals: Sequence[int | None],
    copy_ids: Callable[[int], str],
    flags: Sequence[bool],
) -> GatedBatch:
    """Each record this region copies because it was the new region of the switch in force
    when the record arrived goes through that switch's gate (not only the current switch's: a
    second switch may come while this region still works off what the first one held, and
    the first previous region's late copies among them must not go back)."""
    keys: list[HandoverKey | None] = []
    for flag, arrival in zip(flags, arrivals, strict=True):
        switch = assignment.switch_at(arrival) if flag else None
        keys.append(
            HandoverKey.of_switch(stream, switch)
            if switch is not None and switch.region == this_region
            else None
        )
    if not any(keys):
        return GatedBatch(list(flags))
    gates = {key: gate(key) for key in dict.fromkeys(k for k in keys if k is not None)}
    out, skipped = list(flags), 0
    for i, key in enumerate(keys):
        if key is None:
            continue
        answer = gates[key]
        if answer.hold:
            return GatedBatch(out[:i], i, answer.reason, skipped)
        if answer.skip and copy_ids(i) in answer.skip:
            out[i] = False
            skipped += 1
    return GatedBatch(out, None, "", skipped)


class Handover:
    """Both roles of one replicator: previous region (record, mark done) and new (gate).

    ``outbound``: the target region's table (this replicator as P writes there);
    ``inbound``: this region's own table (this replicator as N reads P's rows there).
    """

    def __init__(
        self,
        *,
        this_region: str,
        outbound: HandoverStore,
        inbound: HandoverStore,
        clock_ms: Callable[[], int],
        settings: HandoverSettings | None = None,
        log: Callable[..., None] = lambda event, **fields: None,
    ) -> None:
        self.this_region = this_region
        self.outbound = outbound
        self.inbound = inbound
        self.clock_ms = clock_ms
        self.settings = settings or HandoverSettings()
        self.log = log
        self._recent: deque[tuple[int, list[str]]] = deque()  # (sent at, copy ids)
        self._flushed: set[HandoverKey] = set()
        self._passed: dict[str, int] = {}  # shard -> every record arrived before this is done
        self._marked: dict[HandoverKey, set[str]] = {}
        self._complete: set[HandoverKey] = set()
        self._gates: dict[HandoverKey, tuple[int, Gate]] = {}
        self._handing_over: HandoverKey | None = None  # as of the last tick
        self.recorded = 0

    def pending(self) -> bool:
        """This region hands over (as of the last tick) and has not completed: a drain waits."""
        return self._handing_over is not None and self._handing_over not in self._complete

    # ---------------------------------------------------------------- previous region (P)

    def wrote(self, sent_at_ms: int, copies: list[str]) -> None:
        """Every PutRecords' written copies, remembered for ``remember_ms`` (memory only)."""
        if copies:
            self._recent.append((sent_at_ms, copies))
        horizon = self.clock_ms() - self.settings.remember_ms
        while self._recent and self._recent[0][0] < horizon:
            self._recent.popleft()

    def record_late(self, key: HandoverKey, part: str, copies: Sequence[str]) -> None:
        """Record copies made for a handover this region hands over (raises on failure)."""
        self._flush(key)
        for start in range(0, len(copies), COPY_CHUNK):
            self.outbound.record_copies(key, f"{part}#{start}", copies[start : start + COPY_CHUNK])
        self.recorded += len(copies)

    def _flush(self, key: HandoverKey) -> None:
        """Copies written before this region knew of the switch that may have landed after S."""
        if key in self._flushed:
            return
        since = key.since_ms - self.settings.in_flight_ms
        late = [c for sent_at, copies in self._recent if sent_at >= since for c in copies]
        for start in range(0, len(late), COPY_CHUNK):
            self.outbound.record_copies(key, f"memory#{start}", late[start : start + COPY_CHUNK])
        self.recorded += len(late)
        self._flushed.add(key)
        if late:
            self.log("handover_recorded_from_memory", copies=len(late), since_ms=key.since_ms)

    def closes_at(self, key: HandoverKey) -> int:
        """P copies what arrived in its stream before this: S plus the grace."""
        return key.since_ms + self.settings.grace_ms

    def passed(self, shard_id: str, arrival_bound_ms: int) -> None:
        """Every record of the shard that arrived before the bound is processed and
        checkpointed."""
        if arrival_bound_ms > self._passed.get(shard_id, -1):
            self._passed[shard_id] = arrival_bound_ms

    def tick(
        self,
        assignment: Assignment | None,
        stream: str,
        shards: Sequence[ShardInfo],
        owned: Iterable[str],
        finished: Iterable[str],
    ) -> None:
        """Once per claim interval (poller): while this region hands over, flush what it
        remembers, heartbeat, mark its shards done and, when all are, the handover complete."""
        if assignment is None:
            return
        key = HandoverKey.of(stream, assignment)
        if key is None or key.previous != self.this_region:
            self._handing_over = None
            return
        self._handing_over = key
        if key in self._complete:
            return
        now = self.clock_ms()
        self._flush(key)
        marked = self._marked.setdefault(key, set())
        close = self.closes_at(key)
        fresh = {s for s in owned if self._passed.get(s, -1) >= close} | set(finished)
        fresh -= marked
        if fresh:
            self.outbound.mark_done(key, sorted(fresh))
            marked |= fresh
        listed = {s.shard_id for s in shards}
        if listed and listed <= marked | self.outbound.done_shards(key):
            self.outbound.mark_complete(key, now)
            self._complete.add(key)
            self.log("handover_complete", since_ms=key.since_ms, shards=len(listed))
            return
        self.outbound.heartbeat(key, now)

    # ---------------------------------------------------------------- new region (N)

    def gate(self, key: HandoverKey) -> Gate:
        """Whether records that arrived at or after S may be forwarded, and which to skip."""
        now = self.clock_ms()
        cached = self._gates.get(key)
        if cached is not None:
            at, gate = cached
            if gate.reason == "complete" or now - at < self.settings.gate_cache_ms:
                return gate  # a complete handover's copies never change
        state = self.inbound.state(key)
        if state.complete:
            gate = Gate(False, frozenset(self.inbound.copies(key)), "complete")
        else:
            last = state.heartbeat_ms if state.heartbeat_ms is not None else key.since_ms
            if now - last >= self.settings.dead_after_ms:
                gate = Gate(False, frozenset(self.inbound.copies(key)), "previous region silent")
            else:
                gate = Gate(True, reason=f"waiting for {key.previous} to finish its handover")
        self._gates[key] = (now, gate)
        return gate


def handover_in_progress(
    store: HandoverStore, key: HandoverKey, now_ms: int, dead_after_ms: int = 30_000
) -> bool:
    """True while the handover ``key`` is neither complete nor abandoned (its previous region
    heartbeat within ``dead_after_ms``, or the switch is younger than that): a failover command
    should not switch again yet. ``store`` reads the new region's table."""
    state = store.state(key)
    if state.complete:
        return False
    last = state.heartbeat_ms if state.heartbeat_ms is not None else key.since_ms
    return now_ms - last < dead_after_ms
