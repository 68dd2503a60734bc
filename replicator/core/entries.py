"""What goes into a PutRecords request: entries, service limits, batch planning, the sink seam.

Split from :mod:`replicator.core.putrecords` (which re-exports everything here) so that the
sender stays readable; import from ``putrecords``.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class DeadLetterReason(enum.Enum):
    TOO_LARGE = "too_large"
    INVALID = "invalid"  # rejected by our checks or by the service's validation


MIB = 1024 * 1024
MAX_HASH_KEY = 2**128 - 1
#: Entry-level error codes PutRecords returns for a record that may succeed when sent again.
RETRYABLE_ENTRY_CODES = frozenset({"ProvisionedThroughputExceededException", "InternalFailure"})
#: Entry-level codes that mean this record itself is unacceptable (dead-lettered at once).
#: Any other code (KMS errors, codes added later) is retried within the bound, then unresolved:
#: only a record that is certainly at fault is dead-lettered.
INVALID_ENTRY_CODES = frozenset({"ValidationException", "InvalidArgumentException"})


@dataclass(frozen=True, slots=True)
class PutEntry:
    """One record to write. ``ref`` is the caller's handle (a source sequence number, a ledger
    trace), returned untouched in results, events and dead letters."""

    partition_key: str
    data: bytes
    explicit_hash_key: str | None = None
    ref: object = None

    @property
    def size(self) -> int:
        """Bytes counted against the limits: partition key (UTF-8) plus data."""
        return len(self.partition_key.encode("utf-8")) + len(self.data)


@dataclass(frozen=True, slots=True)
class Limits:
    """PutRecords service limits; the defaults are the older documented ones (newer API docs
    allow 10 MiB per record and request)."""

    max_entries: int = 500
    max_record_bytes: int = MIB
    max_request_bytes: int = 5 * MIB

    def __post_init__(self) -> None:
        if self.max_entries < 1 or self.max_record_bytes < 1:
            raise ValueError(f"limits must be positive: {self}")
        if self.max_request_bytes < self.max_record_bytes:
            raise ValueError(f"max_request_bytes must be >= max_record_bytes: {self}")

    def rejection(self, entry: PutEntry) -> tuple[DeadLetterReason, str] | None:
        """Why ``entry`` can never be written under these limits, or None if it can."""
        if entry.size > self.max_record_bytes:
            return (
                DeadLetterReason.TOO_LARGE,
                f"record is {entry.size} bytes (partition key + data), limit {self.max_record_bytes}",
            )
        if not 1 <= len(entry.partition_key) <= 256:
            return (
                DeadLetterReason.INVALID,
                f"partition key length {len(entry.partition_key)} is outside 1..256",
            )
        ehk = entry.explicit_hash_key
        if ehk is not None and not (ehk.isdigit() and int(ehk) <= MAX_HASH_KEY):
            return (
                DeadLetterReason.INVALID,
                f"explicit hash key {ehk[:50]!r} is not a decimal in 0..2^128-1",
            )
        return None


def plan_batches(entries: Sequence[PutEntry], limits: Limits | None = None) -> list[list[PutEntry]]:
    """Split ``entries`` into consecutive requests within the limits, keeping input order.

    Every entry must fit on its own (check :meth:`Limits.rejection` first); ValueError if not.
    """
    limits = limits or Limits()
    batches: list[list[PutEntry]] = []
    current: list[PutEntry] = []
    current_bytes = 0
    for entry in entries:
        size = entry.size
        if size > limits.max_record_bytes:
            raise ValueError(f"entry of {size} bytes exceeds max_record_bytes; dead-letter it")
        if current and (
            len(current) >= limits.max_entries or current_bytes + size > limits.max_request_bytes
        ):
            batches.append(current)
            current, current_bytes = [], 0
        current.append(entry)
        current_bytes += size
    if current:
        batches.append(current)
    return batches


@dataclass(frozen=True, slots=True)
class EntryResult:
    """A sink's answer for one entry, aligned with the request."""

    shard_id: str | None = None
    sequence_number: str | None = None
    error_code: str | None = None
    error_message: str | None = None

    @property
    def ok(self) -> bool:
        return self.error_code is None and self.sequence_number is not None


class PutRecordsSink(Protocol):
    """One PutRecords request. Returns one result per entry, in order. Raises
    RetryableRequestError, TerminalRequestError (InvalidRequestError for validation) or
    UnknownOutcomeError when the request as a whole failed."""

    def put_records(self, stream: str, entries: Sequence[PutEntry]) -> Sequence[EntryResult]: ...
