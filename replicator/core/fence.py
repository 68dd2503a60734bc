"""Lease fencing: a poller writes for a shard only while the shard's lease is certainly its own.

The problem. Leases are renewed between polls, and a batch can outlast a lease: PutRecords
retries with backoff, a slow target, a process paused by the OS or a garbage collector. Another
worker then takes the expired lease, starts from the last checkpoint and copies the same
records and newer ones. If the first worker, waking up, went on sending its batch, its older
records would land after the newer ones: the target would end with an older value last for a
key (verify's ``stale``), and its checkpoint could overwrite the new owner's.

The rule. Before every write for a shard (each PutRecords request, each checkpoint row) the
replicator asks :meth:`LeaseFence.check`:

- it may write only if its lease has at least ``guard_ms`` left, where ``guard_ms`` bounds how
  long a write can take (the target clients' connect + read timeouts) plus the clock skew
  between workers. Then the write ends before the lease can expire: a thief (who takes a lease
  only after it expired, by its own clock) never writes before it. This check is local (no AWS
  call) while the poller's regular renewals keep the lease long enough: steady state costs
  nothing;
- otherwise it renews the lease first, conditional on owner AND on the ``leaseCounter`` it last
  saw. If that fails, the lease was taken (or released and taken again): :class:`LeaseLost`,
  the batch stops without another write, and the poller drops the shard;
- every checkpoint write carries the lease counter as a fencing token, and the target's row
  accepts it only if no higher counter wrote there before (``leaseCounter <= :mine``), so a
  stale owner can never move a checkpoint that a newer owner has written, whatever the timing.

Kinesis has no conditional writes, so the target stream is fenced by time only. The limits,
stated: a request abandoned at its client timeout is assumed not to be applied later by the
service; a pause *between* the local check and the request leaving the process (a few
instructions) longer than the guard's skew allowance is not covered; clocks must agree within
the skew allowance. Without a lease (Lambda: one invocation per shard at a time) no fence is
used.
"""

from __future__ import annotations

from collections.abc import Callable

from replicator.errors import LeaseLost, LeaseUnconfirmed

#: renew(now_ms, counter) -> the new counter, or None if the lease is not ours any more.
Renew = Callable[[int, int], "int | None"]


class LeaseFence:
    """One shard's lease as its holder knows it: counter and expiry, renewed when short."""

    def __init__(
        self,
        shard_id: str,
        *,
        counter: int,
        expires_at_ms: int,
        duration_ms: int,
        guard_ms: int,
        renew: Renew,
        clock_ms: Callable[[], int],
    ) -> None:
        if guard_ms >= duration_ms:
            raise ValueError(f"guard {guard_ms} ms must be below the lease of {duration_ms} ms")
        self.shard_id = shard_id
        self.counter = counter
        self.expires_at_ms = expires_at_ms
        self.duration_ms = duration_ms
        self.guard_ms = guard_ms
        self.renew = renew
        self.clock_ms = clock_ms
        self.lost = False
        self.renewals = 0  # renewals the fence itself made (not the poller's regular ones)

    def renewed(self, counter: int, expires_at_ms: int) -> None:
        """The poller renewed the lease itself (conditional on this counter)."""
        self.counter = counter
        self.expires_at_ms = expires_at_ms

    def mark_lost(self) -> None:
        self.lost = True

    def check(self) -> int:
        """The fencing token (lease counter) for a write starting now. Raises LeaseLost when
        the lease is certainly not ours (the shard is dropped), LeaseUnconfirmed when it could
        not be confirmed in time (the write is not made; the batch is retried)."""
        if self.lost:
            raise LeaseLost(f"{self.shard_id}: lease lost")
        now = self.clock_ms()
        if self.expires_at_ms - now >= self.guard_ms:
            return self.counter
        self.renewals += 1
        try:
            counter = self.renew(now, self.counter)
        except Exception as exc:  # noqa: BLE001 - the lease table's errors, whatever they are
            raise LeaseUnconfirmed(f"{self.shard_id}: lease renewal failed: {exc}") from exc
        if counter is None:
            self.lost = True
            raise LeaseLost(f"{self.shard_id}: lease taken by another worker (counter moved)")
        self.counter, self.expires_at_ms = counter, now + self.duration_ms
        if self.expires_at_ms - self.clock_ms() < self.guard_ms:
            # The renewal itself took too long to leave room for a write: do not write now.
            raise LeaseUnconfirmed(f"{self.shard_id}: lease renewal too slow to fence a write")
        return self.counter
