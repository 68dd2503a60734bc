"""Standalone shard poller: every shard of the source stream, shared between processes by leases.

One thread per process walks its leased shards round-robin: GetRecords -> ShardReplicator ->
next iterator. Every write for a shard is fenced by its lease (:mod:`replicator.core.fence`):
a batch that outlives the lease renews it (conditional on the lease counter) before its next
write, and stops writing, and drops the shard, once another worker has taken it. A closed shard is finished (lease checkpoint ``SHARD_END``) before its children
are eligible, so per-key order survives a reshard. Workers count each other through heartbeat
rows and take at most their fair share (ceil(shards / workers)); a worker above its share
releases leases at a batch boundary; expired leases (a crashed worker) are stolen.

``start_at_latest``: a shard without a checkpoint whose parents have none either starts at the
time this poller started (AT_TIMESTAMP, not LATEST: a shard taken later, or the children of a
shard that was already closed, lose nothing that arrived after the start); it skipped the older
records, so it never claims a shard watermark (:mod:`replicator.core.watermark`). A child of a
replicated parent starts at its trim horizon: all its records came after the parent.

A replicator that must not write yet (the dynamodb pipeline's applier while the bootstrap copy
runs) says so through an optional ``ready()``: while it answers a reason, the poller keeps its
leases but reads no shard. A shard whose records were trimmed before they were applied
(:class:`~replicator.errors.StreamDataLost`) is dropped for good: logged as ``shard_data_lost``,
counted (``shards_data_lost``) and named by the exit.

Stopping: :meth:`Poller.request_stop` (SIGTERM) finishes the batch in flight, checkpoints and
releases leases; :meth:`Poller.request_drain` (SIGUSR1, or ``until_drained``) exits once every
shard is caught up and no record arrived for ``quiet_s``, or with code 2 after ``drain_timeout_s``
(or when a shard lost records: the target is not whole).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from replicator.adapters.leases import SHARD_END, LeaseTable
from replicator.core.batch import BatchStatus
from replicator.core.checkpoint import CheckpointStore
from replicator.core.fence import LeaseFence
from replicator.core.watermark import ShardInfo
from replicator.errors import CheckpointError, StreamDataLost
from replicator.runners.poller_seams import BatchReplicator, ClaimPublisher, NoClaims, ShardReader

__all__ = [
    "EXIT_NOT_DRAINED", "EXIT_OK", "BatchReplicator", "ClaimPublisher", "NoClaims", "Poller",
    "PollerSettings", "ShardReader",
]  # fmt: skip


EXIT_OK, EXIT_NOT_DRAINED = 0, 2


@dataclass(frozen=True, slots=True)
class PollerSettings:
    batch_limit: int = 1000
    poll_interval_s: float = 0.2
    lease_duration_s: float = 6.0
    renew_interval_s: float = 1.0
    #: bound on one write to the target (the target clients' connect + read timeouts) and on
    #: the clock skew between workers: a write starts only with this much lease left
    write_timeout_s: float = 2.0
    max_clock_skew_s: float = 0.5
    shard_refresh_s: float = 2.0
    claim_interval_s: float = 1.0
    idle_write_interval_s: float = 1.0
    quiet_s: float = 2.0
    drain_timeout_s: float = 120.0
    max_seconds: float | None = None
    until_drained: bool = False
    start_at_latest: bool = False


@dataclass
class _Shard:
    info: ShardInfo
    iterator: str | None = None
    last_seq: str | None = None
    caught_up: bool = False
    #: clock() when the read that found the shard caught up was sent: a drain counts only reads
    #: sent after it was requested (an answer held up by a frozen endpoint may predate records
    #: its producers were acknowledged for before the drain)
    caught_up_read_at: float = float("-inf")
    last_idle_write: float = 0.0
    fence: LeaseFence | None = None
    skipped_history: bool = False  # started at the poller's start time: no shard watermark


@dataclass
class Poller:
    reader: ShardReader
    leases: LeaseTable
    replicator: BatchReplicator
    checkpoints: CheckpointStore
    publisher: ClaimPublisher
    settings: PollerSettings = field(default_factory=PollerSettings)
    clock: Callable[[], float] = time.time
    sleep: Callable[[], None] | Callable[[float], None] = time.sleep
    log: Callable[..., None] = lambda event, **f: None
    on_tick: Callable[[], None] = lambda: None
    #: given the drain request's time, the time after which reads count for the drain, or None
    #: while something outside this poller has yet to finish (active-active: the other region's
    #: forwarder, whose records this poller applies)
    drain_barrier: Callable[[float], float | None] | None = None

    def __post_init__(self) -> None:
        self.owned: dict[str, _Shard] = {}
        self.shards: list[ShardInfo] = []
        self.finished: set[str] = set()
        self.stop = False
        self.drain_since: float | None = None
        self.last_record_at = self.clock()
        self.started_ms = self.ms()
        self.exit_reason = ""
        self.waiting_for: str | None = None  # why the replicator cannot write yet
        self.lost_shards: dict[str, str] = {}  # shard -> why: records trimmed before applied

    def request_stop(self) -> None:
        self.stop = True

    def request_drain(self, since: float | None = None) -> None:
        """Drain; ``since`` (a clock() time) when the request came earlier than this call (the
        drain timeout counts from it)."""
        if self.drain_since is None:
            self.drain_since = self.clock() if since is None else since
            self.log("drain_requested")

    def ms(self) -> int:
        return int(self.clock() * 1000)

    def run(self) -> int:
        s = self.settings
        started = self.clock()
        if s.until_drained:
            self.request_drain()
        next_leases = next_shards = next_claim = 0.0
        code = EXIT_OK
        try:
            while not self.stop:
                now = self.clock()
                if now >= next_shards:
                    try:
                        self.shards = self.reader.list_shards()
                    except Exception as exc:  # noqa: BLE001
                        self.log("list_shards_failed", error=f"{type(exc).__name__}: {exc}")
                    next_shards = now + s.shard_refresh_s
                if now >= next_leases:
                    try:
                        self._leases()
                    except Exception as exc:  # noqa: BLE001 - lease table unreachable: retry
                        self.log("leases_failed", error=f"{type(exc).__name__}: {exc}")
                    next_leases = now + s.renew_interval_s
                did_work = False
                for shard_id in [] if self._waiting() else list(self.owned):
                    try:
                        did_work |= self._poll(shard_id)
                    except StreamDataLost as exc:
                        self._abandon(shard_id, exc)
                    except Exception as exc:  # noqa: BLE001 - an endpoint error: retry the shard
                        self.log(
                            "poll_failed", shard_id=shard_id, error=f"{type(exc).__name__}: {exc}"
                        )
                        if shard_id in self.owned:
                            self.owned[shard_id].iterator = None
                        self.sleep(self.settings.poll_interval_s)  # type: ignore[call-arg]
                if now >= next_claim:
                    self._claim()
                    self._handover_tick()
                    self.on_tick()
                    next_claim = now + s.claim_interval_s
                if self.drain_since is not None:
                    if self._drained():
                        self._claim()
                        self._handover_tick()
                        self.exit_reason = "drained"
                        break
                    if self.clock() - self.drain_since > s.drain_timeout_s:
                        self.exit_reason = "drain timeout"
                        code = EXIT_NOT_DRAINED
                        break
                if s.max_seconds is not None and self.clock() - started > s.max_seconds:
                    self.exit_reason = "max seconds"
                    code = EXIT_NOT_DRAINED if self.drain_since is not None else EXIT_OK
                    break
                if not did_work:
                    self.sleep(s.poll_interval_s)  # type: ignore[call-arg]
            else:
                self.exit_reason = "stop requested"
        finally:
            self._release_all()
            self.on_tick()
        if self.lost_shards:
            self.exit_reason += (
                f"; {len(self.lost_shards)} shard(s) lost records to the stream's retention "
                f"({', '.join(sorted(self.lost_shards))}): bootstrap the target again"
            )
            if self.drain_since is not None:
                code = EXIT_NOT_DRAINED
        self.log("exit", code=code, reason=self.exit_reason, lost_shards=sorted(self.lost_shards))
        return code

    # ------------------------------------------------------------------ leases

    def _eligible(self, info: ShardInfo) -> bool:
        listed = {x.shard_id for x in self.shards}
        if info.shard_id in self.lost_shards:
            return False
        return info.shard_id not in self.finished and all(
            p in self.finished or p not in listed for p in info.parent_ids
        )

    def _leases(self) -> None:
        s = self.settings
        now = self.ms()
        duration = int(s.lease_duration_s * 1000)
        self.leases.heartbeat(now, duration)
        leases, workers = self.leases.list()
        self.finished = {k for k, v in leases.items() if v.checkpoint == SHARD_END}
        for shard_id in list(self.owned):
            state = self.owned[shard_id]
            fence = state.fence
            counter = self.leases.renew(
                shard_id, now, duration, state.last_seq, fence.counter if fence else None
            )
            if counter is None:
                if fence is not None:
                    fence.mark_lost()
                self.log("lease_lost", shard_id=shard_id)
                del self.owned[shard_id]
            elif fence is not None:
                fence.renewed(counter, now + duration)
        live = max(1, sum(1 for exp in workers.values() if exp > now))
        eligible = [i for i in self.shards if self._eligible(i)]
        share = math.ceil(len(eligible) / live) if eligible else 0
        while len(self.owned) > share:
            shard_id = sorted(self.owned)[-1]
            self.leases.release(shard_id, self.owned.pop(shard_id).last_seq)
            self.log("lease_released", shard_id=shard_id, reason="above fair share")
        for info in eligible:
            if len(self.owned) >= share:
                break
            lease = leases.get(info.shard_id)
            if info.shard_id in self.owned or (lease is not None and lease.held(now)):
                continue
            counter = self.leases.take(info.shard_id, now, duration)
            if counter is not None:
                stolen = lease is not None and lease.owner is not None
                self.log("lease_taken", shard_id=info.shard_id, stolen=stolen, counter=counter)
                self.owned[info.shard_id] = _Shard(
                    info, fence=self._fence(info.shard_id, counter, now)
                )

    def _fence(self, shard_id: str, counter: int, now_ms: int) -> LeaseFence:
        s = self.settings
        duration = int(s.lease_duration_s * 1000)

        def renew(at_ms: int, seen: int) -> int | None:
            state = self.owned.get(shard_id)
            last_seq = state.last_seq if state is not None else None
            return self.leases.renew(shard_id, at_ms, duration, last_seq, seen)

        return LeaseFence(
            shard_id,
            counter=counter,
            expires_at_ms=now_ms + duration,
            duration_ms=duration,
            guard_ms=int((s.write_timeout_s + s.max_clock_skew_s) * 1000),
            renew=renew,
            clock_ms=self.ms,
        )

    def _drop(self, shard_id: str, reason: str) -> None:
        """Stop working a shard whose lease is lost (nothing more is written for it)."""
        self.owned.pop(shard_id, None)
        self.replicator.metrics.add("leases_lost")
        self.log("lease_lost", shard_id=shard_id, reason=reason)

    def _abandon(self, shard_id: str, exc: StreamDataLost) -> None:
        """Stop working a shard whose records were trimmed before they were applied: reading it
        again cannot recover them, so it is released and never taken again by this process."""
        state = self.owned.pop(shard_id, None)
        self.lost_shards[shard_id] = str(exc)
        self.replicator.metrics.add("shards_data_lost")
        self.log("shard_data_lost", shard_id=shard_id, error=str(exc), level="ERROR",
                 note="records were trimmed from the stream before they were applied; the "
                 "shard is no longer read: only a new bootstrap copy of the target recovers")  # fmt: skip
        try:
            self.leases.release(shard_id, state.last_seq if state is not None else None)
        except Exception as release_exc:  # noqa: BLE001 - the lease expires anyway
            self.log("release_failed", shard_id=shard_id, error=str(release_exc))

    def _waiting(self) -> bool:
        """Whether the replicator cannot write yet (its optional ``ready()``): said once when
        it starts waiting and once when it may write again."""
        ready = getattr(self.replicator, "ready", None)
        if ready is None:
            return False
        try:
            reason = ready()
        except Exception as exc:  # noqa: BLE001 - never read blind: wait and ask again
            reason = f"ready() failed: {type(exc).__name__}: {exc}"
        if reason != self.waiting_for:
            if reason is not None:
                self.log("apply_waiting", reason=reason, note="no shard is read until it opens")
            else:
                self.log("apply_ready", waited_for=self.waiting_for)
            self.waiting_for = reason
        if reason is None:
            return False
        for state in self.owned.values():
            state.caught_up = False  # nothing is applied: a drain waits (or times out)
        return True

    def _release_all(self) -> None:
        for shard_id, state in list(self.owned.items()):
            try:
                self.leases.release(shard_id, state.last_seq)
            except Exception as exc:  # noqa: BLE001 - best effort on the way out
                self.log("release_failed", shard_id=shard_id, error=str(exc))
        self.owned.clear()
        try:
            self.leases.leave()
        except Exception as exc:  # noqa: BLE001
            self.log("leave_failed", error=str(exc))

    # ------------------------------------------------------------------ shards

    def _start(self, state: _Shard) -> None:
        try:
            rows = self.checkpoints.load()
        except CheckpointError as exc:
            self.log("checkpoint_read_failed", error=str(exc))
            return
        row = rows.get(state.info.shard_id)
        state.last_seq = row.sequence_number if row else None
        at_ms = None
        if row is not None:
            state.skipped_history = row.skipped_history
        elif self.settings.start_at_latest and not any(p in rows for p in state.info.parent_ids):
            at_ms, state.skipped_history = self.started_ms, True
        state.iterator = self.reader.iterator(
            state.info.shard_id, state.last_seq, at_timestamp_ms=at_ms
        )
        if at_ms is not None:
            self.log("shard_started_at", shard_id=state.info.shard_id, at_ms=at_ms,
                     note="older records skipped: this shard claims no watermark")  # fmt: skip

    def _poll(self, shard_id: str) -> bool:
        state = self.owned[shard_id]
        if state.iterator is None:
            self._start(state)
            if state.iterator is None:
                return False
        read_at = self.ms()
        sent_at = self.clock()
        result = self.reader.read(shard_id, state.iterator, self.settings.batch_limit)
        self.replicator.metrics.add("get_records_calls")
        at_tip = (
            result.millis_behind_latest == 0
            if result.millis_behind_latest is not None
            else len(result.records) < self.settings.batch_limit
        )
        lag = self.replicator.metrics.lag(shard_id)
        lag.millis_behind_latest = result.millis_behind_latest
        shard_end = result.next_iterator is None
        if not result.records:
            state.caught_up = at_tip
            state.caught_up_read_at = sent_at
            state.iterator = result.next_iterator
            now = self.clock()
            if shard_end or (
                at_tip and now - state.last_idle_write >= self.settings.idle_write_interval_s
            ):
                self.replicator.idle(
                    shard_id, state.last_seq, read_at, closed=shard_end, fence=state.fence,
                    skipped_history=state.skipped_history,
                )  # fmt: skip
                state.last_idle_write = now
            if state.fence is not None and state.fence.lost:
                self._drop(shard_id, "taken while idle")
            elif shard_end:
                self._finish(shard_id)
            return False
        self.last_record_at = self.clock()
        state.caught_up = False
        batch = self.replicator.process(
            shard_id,
            result.records,
            tip_read_at_ms=read_at if at_tip else None,
            shard_end=shard_end,
            fence=state.fence,
            skipped_history=state.skipped_history,
        )
        if batch.status is BatchStatus.LEASE_LOST or (state.fence and state.fence.lost):
            self._drop(shard_id, f"taken during a batch ({batch.acked} records written before)")
            return False
        if batch.status in (BatchStatus.REPLICATED, BatchStatus.STOOD_DOWN):
            state.last_seq = result.records[-1].sequence_number
            state.iterator = result.next_iterator
            if shard_end:
                self._finish(shard_id)
            return True
        # Failed or partial: resume after the acknowledged prefix, after a pause.
        if batch.acked:
            state.last_seq = result.records[batch.acked - 1].sequence_number
        state.iterator = self.reader.iterator(shard_id, state.last_seq)
        self.log("batch_retry", shard_id=shard_id, status=batch.status.value, error=batch.error)
        self.sleep(self.settings.poll_interval_s)  # type: ignore[call-arg]
        return False

    def _finish(self, shard_id: str) -> None:
        self.leases.finish(shard_id)
        self.finished.add(shard_id)
        self.owned.pop(shard_id, None)
        self.log("shard_finished", shard_id=shard_id)

    def _claim(self) -> None:
        try:
            claim = self.publisher.publish()
        except CheckpointError as exc:
            self.log("claim_failed", error=str(exc))
            return
        if claim is not None:
            self.replicator.metrics.add("claims")
            self.replicator.metrics.watermark_ms = claim.watermark_ms

    def _handover_tick(self) -> None:
        """Handover bookkeeping of the reference replicator (replicator.core.handover)."""
        tick = getattr(self.replicator, "handover_tick", None)
        if tick is not None:
            tick(self.shards, sorted(self.owned), sorted(self.finished))

    def _drained(self) -> bool:
        if self.clock() - self.last_record_at < self.settings.quiet_s:
            return False
        pending = getattr(self.replicator, "handover_pending", None)
        if pending is not None and pending():
            return False  # the new region waits for this region's handover: finish it first
        since = self.drain_since if self.drain_since is not None else float("-inf")
        if self.drain_barrier is not None:
            barrier = self.drain_barrier(since)
            if barrier is None:
                return False
            since = max(since, barrier)
        if not all(s.caught_up and s.caught_up_read_at > since for s in self.owned.values()):
            return False  # every owned shard read to its tip by a read sent after the request
        now = self.ms()
        leases, workers = self.leases.list()
        for info in self.shards:  # nothing eligible left unowned
            if info.shard_id in self.owned or not self._eligible(info):
                continue
            lease = leases.get(info.shard_id)
            if lease is None or not lease.held(now) or workers.get(lease.owner or "", 0) <= now:
                return False
        return True
