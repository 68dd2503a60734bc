"""psycopg 3: the logical replication slot capture reads, and the seed's LISTEN connection.

psycopg 3 does not speak the streaming replication protocol, so :class:`PostgresSlot` uses the
logical decoding SQL functions: ``pg_logical_slot_peek_binary_changes`` (reads without
consuming, from the slot's confirmed position) and ``pg_replication_slot_advance`` (confirms).
Errors become :class:`~replicator.core.capture.SourceUnavailable` (connection lost, server
restarting; the connection is opened again at the next call) or
:class:`~replicator.core.capture.SlotBusy` (SQLSTATE 55006, "replication slot ... is active for
PID n": another capture holds it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from replicator.core.capture import SlotBusy, SourceUnavailable
from replicator.core.capture_batch import Row
from replicator.core.pgoutput import Relation, format_lsn

OBJECT_IN_USE = "55006"
CONNECT_TIMEOUT_S = 5


class _Connection:
    """One autocommit connection, opened on first use and after any connection failure."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn: psycopg.Connection[Any] | None = None
        self.calls = 0

    def execute(self, query: Any, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self.calls += 1
        try:
            if self.conn is None or self.conn.closed:
                self.conn = psycopg.connect(self.url, autocommit=True,
                                            connect_timeout=CONNECT_TIMEOUT_S)  # fmt: skip
            cur = self.conn.execute(query, params)
            return cur.fetchall() if cur.description else []
        except psycopg.Error as exc:
            if getattr(exc, "sqlstate", None) == OBJECT_IN_USE:
                raise SlotBusy(_first_line(exc)) from exc
            if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
                self.close()
            raise SourceUnavailable(f"{type(exc).__name__}: {_first_line(exc)}") from exc

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(psycopg.Error):
                self.conn.close()
        self.conn = None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class PostgresSlot:
    """The slot seam of :class:`~replicator.core.capture.Capture` (and the TOAST lookup)."""

    def __init__(self, url: str, slot: str, publication: str) -> None:
        self.slot, self.publication = slot, publication
        self.db = _Connection(url)
        self._types: dict[int, str] = {}

    @property
    def calls(self) -> int:
        return self.db.calls

    def peek(self, upto_changes: int) -> list[Row]:
        rows = self.db.execute(
            "SELECT (lsn - '0/0'::pg_lsn)::bigint, xid::text::bigint, data "
            "FROM pg_logical_slot_peek_binary_changes(%s, NULL, %s, 'proto_version', '1', "
            "'publication_names', %s)",
            (self.slot, upto_changes, self.publication),
        )
        return [(int(lsn), int(xid), bytes(data)) for lsn, xid, data in rows]

    def advance(self, lsn: int) -> None:
        self.db.execute("SELECT pg_replication_slot_advance(%s, %s::pg_lsn)",
                        (self.slot, format_lsn(lsn)))  # fmt: skip

    def pending_bytes(self) -> int | None:
        rows = self.db.execute(
            "SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint "
            "FROM pg_replication_slots WHERE slot_name = %s",
            (self.slot,),
        )
        return int(rows[0][0]) if rows and rows[0][0] is not None else None

    def lookup(self, relation: Relation, keys: Sequence[str]) -> dict[str, str | None] | None:
        """The row's current values as text (an unchanged TOASTed value), or None if it is gone."""
        key_columns = relation.key_columns
        conditions = [
            sql.SQL("{} = CAST(%s AS {})").format(sql.Identifier(c.name),
                                                  sql.SQL(self._type_name(c.type_oid)))  # fmt: skip
            for c in key_columns
        ]
        query = sql.SQL("SELECT {} FROM {}.{} WHERE {}").format(
            sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c.name))
                               for c in relation.columns),  # fmt: skip
            sql.Identifier(relation.namespace), sql.Identifier(relation.name),
            sql.SQL(" AND ").join(conditions),
        )  # fmt: skip
        rows = self.db.execute(query, list(keys))
        if not rows:
            return None
        return {c.name: v for c, v in zip(relation.columns, rows[0], strict=True)}

    def _type_name(self, oid: int) -> str:
        if oid not in self._types:
            self._types[oid] = str(self.db.execute("SELECT %s::oid::regtype::text", (oid,))[0][0])
        return self._types[oid]

    def close(self) -> None:
        self.db.close()


class NotifyListener:
    """``LISTEN channel`` on one connection; :meth:`receive` waits for notifications. A lost
    connection is opened again (and LISTEN sent again): what was notified meanwhile is gone."""

    def __init__(self, url: str, channel: str) -> None:
        self.url, self.channel = url, channel
        self.conn: psycopg.Connection[Any] | None = None
        self.connections = 0  # LISTEN sessions opened: each one after the first lost a gap

    def receive(self, timeout_s: float, limit: int = 1000) -> list[str]:
        try:
            if self.conn is None or self.conn.closed:
                self.conn = psycopg.connect(self.url, autocommit=True,
                                            connect_timeout=CONNECT_TIMEOUT_S)  # fmt: skip
                self.conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                self.connections += 1
            return [n.payload for n in self.conn.notifies(timeout=timeout_s, stop_after=limit)]
        except psycopg.Error as exc:
            self.close()
            raise SourceUnavailable(f"{type(exc).__name__}: {_first_line(exc)}") from exc

    def columns(self, schema: str, table: str) -> list[tuple[str, str, bool]]:
        """The table's columns: (name, type, part of the primary key), in table order."""
        with psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
            rows = conn.execute(
                "SELECT a.attname, format_type(a.atttypid, a.atttypmod), "
                "coalesce(a.attnum = ANY(i.indkey), false) "
                "FROM pg_attribute a LEFT JOIN pg_index i ON i.indrelid = a.attrelid "
                "AND i.indisprimary WHERE a.attrelid = %s::regclass AND a.attnum > 0 "
                "AND NOT a.attisdropped ORDER BY a.attnum",
                (f'"{schema}"."{table}"',),
            ).fetchall()
        return [(name, type_name, bool(key)) for name, type_name, key in rows]

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(psycopg.Error):
                self.conn.close()
        self.conn = None
