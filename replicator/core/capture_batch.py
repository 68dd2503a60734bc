"""One peek's rows as whole transactions of change records (pure).

``pg_logical_slot_peek_binary_changes`` returns (lsn, xid, message) rows, whole committed
transactions in commit order. :class:`BatchDecoder` turns them into :class:`Transaction` objects
holding one :class:`~replicator.core.putrecords.PutEntry` per captured change (tables chosen
and named by the table mappings), the changes that cannot become records (dead letters, with
the raw message and why), and the Commit's end LSN, the position to confirm once every entry of
the transaction and of those before it is acknowledged. Rows after the last Commit (a cut
transaction, which peek should never return) are left for the next peek.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from replicator.core import pgoutput as pg
from replicator.core.dms_records import Lookup, Unbuildable, build
from replicator.core.putrecords import PutEntry
from replicator.core.table_mappings import TableMap, TableMappings

#: A peek row: (LSN of the message's record, xid, message bytes).
Row = tuple[int, int, bytes]


@dataclass(frozen=True, slots=True)
class Unwritable:
    """A change that cannot become a record: the raw message (its full data) and why."""

    partition_key: str
    message: bytes
    lsn: int
    reason: str
    detail: str


@dataclass(slots=True)
class Transaction:
    xid: int
    commit_us: int
    end_lsn: int
    entries: list[PutEntry] = field(default_factory=list)
    unwritable: list[Unwritable] = field(default_factory=list)

    @property
    def commit_ms(self) -> int:
        return pg.commit_time_ms(self.commit_us)


class BatchDecoder:
    """Decodes peek rows; keeps the relations it has seen (each peek sends them again)."""

    def __init__(self, mappings: TableMappings, lookup: Lookup | None = None,
                 log: Callable[..., None] | None = None) -> None:  # fmt: skip
        self.mappings = mappings
        self.lookup = lookup
        self.log = log or (lambda event, **fields: None)
        self.relations: dict[int, pg.Relation] = {}
        self._maps: dict[int, TableMap | None] = {}
        self.skipped: dict[str, int] = {}  # what was read and is not a record, by kind

    def decode(self, rows: Iterable[Row]) -> list[Transaction]:
        done: list[Transaction] = []
        current: Transaction | None = None
        for lsn, xid, data in rows:
            try:
                msg = pg.decode(data)
            except pg.DecodeError as exc:
                if current is None:
                    raise
                current.unwritable.append(Unwritable("", bytes(data), lsn, "undecodable", str(exc)))
                continue
            if isinstance(msg, pg.Begin):
                current = Transaction(msg.xid, msg.commit_us, msg.final_lsn)
            elif isinstance(msg, pg.Commit):
                if current is not None:
                    current.end_lsn = msg.end_lsn
                    current.commit_us = msg.commit_us
                    done.append(current)
                current = None
            elif isinstance(msg, pg.Relation):
                self.relations[msg.relid] = msg
                self._maps.pop(msg.relid, None)
            elif isinstance(msg, pg.Insert | pg.Update | pg.Delete) and current is not None:
                self._change(current, msg, lsn, bytes(data))
            elif isinstance(msg, pg.Truncate):
                names = [self._name(r) for r in msg.relids]
                self._skip("truncate")
                self.log("truncate_not_captured", tables=names, xid=xid,
                         note="DMS records rows, not TRUNCATE; the removed rows are not records")  # fmt: skip
            else:
                self._skip(type(msg).__name__.lower())
        return done

    def _skip(self, kind: str) -> None:
        self.skipped[kind] = self.skipped.get(kind, 0) + 1

    def _name(self, relid: int) -> str:
        rel = self.relations.get(relid)
        return f"{rel.namespace}.{rel.name}" if rel else f"relation {relid}"

    def _map(self, rel: pg.Relation) -> TableMap | None:
        if rel.relid not in self._maps:
            self._maps[rel.relid] = self.mappings.table(
                rel.namespace, rel.name, [c.name for c in rel.columns]
            )
        return self._maps[rel.relid]

    def _change(self, txn: Transaction, msg: pg.Insert | pg.Update | pg.Delete, lsn: int,
                raw: bytes) -> None:  # fmt: skip
        rel = self.relations.get(msg.relid)
        if rel is None:
            txn.unwritable.append(Unwritable("", raw, lsn, "unbuildable",
                                             f"no Relation message for relation {msg.relid}"))  # fmt: skip
            return
        table_map = self._map(rel)
        if table_map is None:
            self._skip("not_selected")
            return
        if isinstance(msg, pg.Delete):
            operation, values, key_only = "delete", msg.old, msg.old_kind == "K"
        else:
            operation = "insert" if isinstance(msg, pg.Insert) else "update"
            values, key_only = msg.new, False
        try:
            built = build(rel, table_map, operation, values, commit_us=txn.commit_us,
                          xid=txn.xid, lookup=self.lookup, key_only=key_only)  # fmt: skip
        except (Unbuildable, ValueError) as exc:
            key = ".".join(str(v) for c, v in zip(rel.columns, values, strict=False) if c.key)
            txn.unwritable.append(Unwritable(key, raw, lsn, "unbuildable", str(exc)))
            return
        txn.entries.append(PutEntry(built.partition_key, built.data, ref=lsn))


def confirmable(transactions: Sequence[Transaction], resolved: int) -> tuple[int | None, int]:
    """The end LSN of the last transaction all of whose entries (and all before) are among the
    first ``resolved`` entries sent, and how many transactions that covers."""
    position, count, covered = None, 0, 0
    for txn in transactions:
        count += len(txn.entries)
        if count > resolved:
            break
        position, covered = txn.end_lsn, covered + 1
    return position, covered
