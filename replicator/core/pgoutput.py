"""A decoder of PostgreSQL's ``pgoutput`` logical replication messages, protocol version 1 (pure).

Each row of ``pg_logical_slot_peek_binary_changes(slot, ..., 'proto_version', '1',
'publication_names', pub)`` carries one message (PostgreSQL 15 docs, "Logical Replication Message
Formats"); all integers are big-endian, strings are NUL-terminated UTF-8:

- Begin ``B``: Int64 final LSN of the transaction, Int64 commit time (µs since 2000-01-01 UTC),
  Int32 xid.
- Commit ``C``: Int8 flags (0), Int64 commit LSN, Int64 end LSN of the transaction, Int64 commit
  time.
- Origin ``O``: Int64 LSN of the commit on the origin, String origin name.
- Relation ``R``: Int32 relation OID, String namespace, String name, Int8 replica identity
  (``d`` default, ``n`` nothing, ``f`` full, ``i`` index), Int16 columns, then per column Int8
  flags (1: part of the key), String name, Int32 type OID, Int32 type modifier.
- Type ``Y``: Int32 type OID, String namespace, String name.
- Insert ``I``: Int32 relation OID, Byte ``N``, TupleData.
- Update ``U``: Int32 relation OID, optionally Byte ``K`` (key) or ``O`` (old row) and TupleData,
  then Byte ``N`` and TupleData (the new row).
- Delete ``D``: Int32 relation OID, Byte ``K`` or ``O``, TupleData.
- Truncate ``T``: Int32 relation count, Int8 options (1 CASCADE, 2 RESTART IDENTITY), Int32
  relation OIDs.
- Message ``M``: Int8 flags (1 transactional), Int64 LSN, String prefix, Int32 length, bytes.

TupleData: Int16 columns, then per column Byte ``n`` (NULL), ``u`` (unchanged TOASTed value, not
sent) or ``t`` (Int32 length and the value's text form).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
UNCHANGED = object()  # a TOASTed value the update did not change and the WAL does not hold

_I8, _I16, _I32, _U32, _I64 = (struct.Struct(f) for f in ("!b", "!h", "!i", "!I", "!q"))


class DecodeError(ValueError):
    """Bytes that are not a pgoutput v1 message (the message names the offset and why)."""


@dataclass(frozen=True, slots=True)
class Begin:
    final_lsn: int
    commit_us: int  # µs since 2000-01-01 UTC
    xid: int


@dataclass(frozen=True, slots=True)
class Commit:
    flags: int
    commit_lsn: int
    end_lsn: int  # confirm (advance the slot) here once every change before it is acknowledged
    commit_us: int


@dataclass(frozen=True, slots=True)
class Origin:
    lsn: int
    name: str


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type_oid: int
    type_modifier: int
    key: bool


@dataclass(frozen=True, slots=True)
class Relation:
    relid: int
    namespace: str
    name: str
    replica_identity: str
    columns: tuple[Column, ...]

    @property
    def key_columns(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.key)


@dataclass(frozen=True, slots=True)
class TypeInfo:
    oid: int
    namespace: str
    name: str


#: One tuple: per column None (NULL), :data:`UNCHANGED`, or the value's text form.
Tuple = tuple[object, ...]


@dataclass(frozen=True, slots=True)
class Insert:
    relid: int
    new: Tuple


@dataclass(frozen=True, slots=True)
class Update:
    relid: int
    new: Tuple
    old: Tuple | None = None
    old_kind: str | None = None  # "K": key columns only; "O": the whole old row


@dataclass(frozen=True, slots=True)
class Delete:
    relid: int
    old: Tuple
    old_kind: str  # "K" or "O"


@dataclass(frozen=True, slots=True)
class Truncate:
    relids: tuple[int, ...]
    options: int


@dataclass(frozen=True, slots=True)
class LogicalMessage:
    transactional: bool
    lsn: int
    prefix: str
    content: bytes


Message = (
    Begin | Commit | Origin | Relation | TypeInfo | Insert | Update | Delete | Truncate | LogicalMessage
)


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _unpack(self, fmt: struct.Struct) -> int:
        try:
            (value,) = fmt.unpack_from(self.data, self.pos)
        except struct.error:
            raise DecodeError(f"message ends at byte {len(self.data)}, wanted "
                              f"{fmt.size} more at byte {self.pos}") from None  # fmt: skip
        self.pos += fmt.size
        return value

    def i8(self) -> int:
        return self._unpack(_I8)

    def i16(self) -> int:
        return self._unpack(_I16)

    def i32(self) -> int:
        return self._unpack(_I32)

    def u32(self) -> int:
        return self._unpack(_U32)

    def i64(self) -> int:
        return self._unpack(_I64)

    def byte(self) -> str:
        if self.pos >= len(self.data):
            raise DecodeError(f"message ends at byte {self.pos}, wanted a tag")
        self.pos += 1
        return chr(self.data[self.pos - 1])

    def string(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise DecodeError(f"string at byte {self.pos} has no terminating NUL")
        value = self.data[self.pos : end].decode("utf-8")
        self.pos = end + 1
        return value

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise DecodeError(f"{n} bytes wanted at byte {self.pos} of {len(self.data)}")
        value = self.data[self.pos : self.pos + n]
        self.pos += n
        return value

    def tuple(self) -> Tuple:
        count = self.i16()
        values: list[object] = []
        for _ in range(count):
            kind = self.byte()
            if kind == "n":
                values.append(None)
            elif kind == "u":
                values.append(UNCHANGED)
            elif kind == "t":
                values.append(self.take(self.i32()).decode("utf-8"))
            else:
                raise DecodeError(f"column kind {kind!r} at byte {self.pos - 1} (want n, u or t; "
                                  "binary values need proto_version 2 and 'binary')")  # fmt: skip
        return tuple(values)


def decode(data: bytes | bytearray | memoryview) -> Message:
    """One pgoutput v1 message; :class:`DecodeError` for anything else."""
    r = _Reader(bytes(data))
    tag = r.byte()
    if tag == "B":
        msg: Message = Begin(r.i64(), r.i64(), r.u32())
    elif tag == "C":
        msg = Commit(r.i8(), r.i64(), r.i64(), r.i64())
    elif tag == "O":
        msg = Origin(r.i64(), r.string())
    elif tag == "R":
        relid, namespace, name, identity = r.u32(), r.string(), r.string(), r.byte()
        columns = []
        for _ in range(r.i16()):
            flags, col_name, oid, typmod = r.i8(), r.string(), r.u32(), r.i32()
            columns.append(Column(col_name, oid, typmod, bool(flags & 1)))
        msg = Relation(relid, namespace, name, identity, tuple(columns))
    elif tag == "Y":
        msg = TypeInfo(r.u32(), r.string(), r.string())
    elif tag == "I":
        relid = r.u32()
        if (marker := r.byte()) != "N":
            raise DecodeError(f"insert: {marker!r} where 'N' belongs")
        msg = Insert(relid, r.tuple())
    elif tag == "U":
        relid, marker = r.u32(), r.byte()
        old = old_kind = None
        if marker in ("K", "O"):
            old_kind, old = marker, r.tuple()
            marker = r.byte()
        if marker != "N":
            raise DecodeError(f"update: {marker!r} where 'N' belongs")
        msg = Update(relid, r.tuple(), old, old_kind)
    elif tag == "D":
        relid, marker = r.u32(), r.byte()
        if marker not in ("K", "O"):
            raise DecodeError(f"delete: {marker!r} where 'K' or 'O' belongs")
        msg = Delete(relid, r.tuple(), marker)
    elif tag == "T":
        count, options = r.i32(), r.i8()
        msg = Truncate(tuple(r.u32() for _ in range(count)), options)
    elif tag == "M":
        flags, lsn, prefix = r.i8(), r.i64(), r.string()
        msg = LogicalMessage(bool(flags & 1), lsn, prefix, r.take(r.i32()))
    else:
        raise DecodeError(f"unknown message tag {tag!r}")
    if r.pos != len(r.data):
        raise DecodeError(f"{tag!r} message has {len(r.data) - r.pos} bytes left over")
    return msg


def commit_time_iso(commit_us: int) -> str:
    """A pgoutput commit time as ISO-8601 UTC with microseconds and ``Z``."""
    moment = PG_EPOCH + timedelta(microseconds=commit_us)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def commit_time_ms(commit_us: int) -> int:
    """A pgoutput commit time as epoch milliseconds."""
    return (commit_us + 946_684_800_000_000) // 1000


def parse_lsn(text: str) -> int:
    """``"16/B374D848"`` as an integer."""
    high, sep, low = text.partition("/")
    if not sep:
        raise ValueError(f"not an LSN: {text!r}")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"
