"""In-memory, scriptable stand-ins for the replicator's seams (no boto3, no network).

moto never throttles nor fails part of a batch (REFERENCE.md, "moto"), so failure handling is
tested against these fakes: throttle the 3rd call, fail entries 2 and 7, time out once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from replicator.core.putrecords import EntryResult, PutEntry
from replicator.errors import RetryableRequestError, SinkError, UnknownOutcomeError

HASH_SPACE = 2**128
#: First sequence number handed out: AWS numbers are long decimals, never "1", "2", ...
FIRST_SEQUENCE = 49_600_000_000_000_000_000_000_000_000_000_000_000_000_000


def hash_key_of(entry: PutEntry) -> int:
    """The 128-bit hash key Kinesis routes by: the explicit one, or MD5 of the partition key."""
    if entry.explicit_hash_key is not None:
        return int(entry.explicit_hash_key)
    return int.from_bytes(hashlib.md5(entry.partition_key.encode("utf-8")).digest(), "big")


@dataclass(frozen=True, slots=True)
class StoredRecord:
    shard_id: str
    sequence_number: str
    entry: PutEntry


@dataclass(slots=True)
class _UnknownFault:
    applied: bool  # True: the request was written before the "timeout"


@dataclass
class ScriptedSink:
    """A PutRecords sink over an in-memory stream of ``shard_count`` equal hash ranges.

    Script faults by 1-based call number: :meth:`fail_call` (raise a SinkError),
    :meth:`time_out_call` (UnknownOutcomeError, written or not), :meth:`fail_entries`
    (per-entry error codes by position in that call), or a ``fail_entry`` predicate over
    (entry, call number) for rules such as "always fail this record".
    """

    shard_count: int = 4
    fail_entry: Callable[[PutEntry, int], str | None] | None = None
    calls: list[list[PutEntry]] = field(default_factory=list)
    records: list[StoredRecord] = field(default_factory=list)
    _call_faults: dict[int, SinkError | _UnknownFault] = field(default_factory=dict)
    _entry_faults: dict[int, dict[int, str]] = field(default_factory=dict)
    _next_sequence: int = FIRST_SEQUENCE
    _last_written: list[StoredRecord] = field(default_factory=list)

    def fail_call(self, call: int, error: SinkError) -> ScriptedSink:
        self._call_faults[call] = error
        return self

    def time_out_call(self, call: int, *, applied: bool) -> ScriptedSink:
        self._call_faults[call] = _UnknownFault(applied)
        return self

    def fail_entries(
        self,
        call: int,
        positions: Sequence[int],
        code: str = "ProvisionedThroughputExceededException",
    ) -> ScriptedSink:
        self._entry_faults.setdefault(call, {}).update({p: code for p in positions})
        return self

    def shard_of(self, entry: PutEntry) -> str:
        index = hash_key_of(entry) * self.shard_count // HASH_SPACE
        return f"shardId-{index:012d}"

    def put_records(
        self,
        stream: str,
        entries: Sequence[PutEntry],
        guard: Callable[[], object] | None = None,
    ) -> Sequence[EntryResult]:
        """``guard`` runs first, as the boto3 sink runs it just before sending: if it raises,
        nothing is written and the call is not counted."""
        if guard is not None:
            guard()
        self.calls.append(list(entries))
        call = len(self.calls)
        fault = self._call_faults.get(call)
        if isinstance(fault, SinkError):
            raise fault
        results = self._apply(call, entries)
        if isinstance(fault, _UnknownFault):
            if not fault.applied:
                dropped = {id(r) for r in self._last_written}
                self.records = [r for r in self.records if id(r) not in dropped]
            raise UnknownOutcomeError("read timeout (scripted)", "ReadTimeout")
        return results

    def put_record(self, stream: str, partition_key: str, data: bytes) -> tuple[str, str]:
        """Single-record PutRecord (the sample behaviour): one call, the same scripted faults;
        an entry-level failure is raised, as PutRecord raises it."""
        (result,) = self.put_records(stream, [PutEntry(partition_key, data)])
        if not result.ok:
            raise RetryableRequestError(result.error_message or "", result.error_code)
        return result.shard_id or "", result.sequence_number or ""

    def _apply(self, call: int, entries: Sequence[PutEntry]) -> list[EntryResult]:
        faults = self._entry_faults.get(call, {})
        results = []
        self._last_written = []
        for position, entry in enumerate(entries):
            code = faults.get(position)
            if code is None and self.fail_entry is not None:
                code = self.fail_entry(entry, call)
            if code is not None:
                results.append(EntryResult(error_code=code, error_message="scripted failure"))
                continue
            record = StoredRecord(self.shard_of(entry), str(self._next_sequence), entry)
            self._next_sequence += 1
            self.records.append(record)
            self._last_written.append(record)
            results.append(EntryResult(record.shard_id, record.sequence_number))
        return results

    def refs_by_key(self) -> dict[str, list[object]]:
        """Per partition key, the refs in the order the stream holds them (with duplicates)."""
        out: dict[str, list[object]] = {}
        for record in self.records:
            out.setdefault(record.entry.partition_key, []).append(record.entry.ref)
        return out
