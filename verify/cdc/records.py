"""One change record as verify sees it: parsed against the DMS shape, named, identified, owned.

Names. The record's schema, table and column names are the contract's (:mod:`xrh.postgres_cdc`)
unless the run's ``config.json`` holds ``cdc_names`` (a user's DMS table-mapping rules renamed
them): a dict from the contract's names (``schema``, ``table``, ``key``, ``commit_timestamp``,
``trace``, ``payload``) to the names the records carry. The table itself keeps the contract's
names; only the records are renamed.

Identity (one row of :mod:`verify.store`'s ``ids`` per change, so the kinesis pipeline's
A-to-B checks apply unchanged): an insert or update is its ledger trace (``data.trace``); a
delete, which carries the key only, is (table, transaction id, key): two deletes of one key in
one transaction (re-inserted between them) share an identity. A record that is not a change
record is identified by a hash of its partition key and bytes. A re-sent transaction (capture
restarted before the slot moved) gives the same identities again: duplicates.

Values are normalised so a record's row and the table's row compare as equal text: the key as
an integer, the commit time as epoch microseconds (PostgreSQL's text form or a datetime), the
payload as sorted compact JSON (jsonb's text or a dict).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from verify.model import hash64
from xrh import postgres_cdc as pc
from xrh.contracts import parse_iso_ms

CONTRACT_NAMES = {"schema": pc.SCHEMA, "key": pc.KEY_COLUMN, "commit_timestamp": pc.COMMIT_COLUMN,
                  "trace": pc.TRACE_COLUMN, "payload": pc.PAYLOAD_COLUMN}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Names:
    """The names change records of this run carry (after any table-mapping rename)."""

    schema: str
    table: str
    key: str
    commit_timestamp: str
    trace: str
    payload: str
    renamed: bool = False

    @classmethod
    def of(cls, prefix: str, cdc_names: Any = None) -> Names:
        base = {**CONTRACT_NAMES, "table": pc.table_name(prefix)}
        given = cdc_names if isinstance(cdc_names, dict) else {}
        chosen = {k: str(given.get(k) or v) for k, v in base.items()}
        return cls(**chosen, renamed=chosen != base)

    def columns(self) -> dict[str, str]:
        """Contract column name -> the record's column name."""
        return {pc.KEY_COLUMN: self.key, pc.COMMIT_COLUMN: self.commit_timestamp,
                pc.TRACE_COLUMN: self.trace, pc.PAYLOAD_COLUMN: self.payload}  # fmt: skip


def timestamp_us(value: Any) -> int | None:
    """Epoch microseconds of a datetime or an ISO-8601 / PostgreSQL timestamptz text."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
    else:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    delta = parsed - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def iso_us(epoch_us: int | None) -> str | None:
    """ISO-8601 UTC with microseconds (the form of ``metadata.timestamp``)."""
    if epoch_us is None:
        return None
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=epoch_us)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def key_text(value: Any) -> str | None:
    """A key as text: integers (and integer-valued text) in canonical form, else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value)
    text = str(value).strip()
    try:
        return str(int(text))
    except ValueError:
        return None


def _payload(value: Any) -> Any:
    if isinstance(value, str | bytes):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def normal_body(row: dict[str, Any]) -> str:
    """A row (contract column names) as canonical text, the same for a record and the table."""
    out = {
        pc.KEY_COLUMN: key_text(row.get(pc.KEY_COLUMN)),
        pc.COMMIT_COLUMN: timestamp_us(row.get(pc.COMMIT_COLUMN)),
        pc.TRACE_COLUMN: row.get(pc.TRACE_COLUMN),
        pc.PAYLOAD_COLUMN: _payload(row.get(pc.PAYLOAD_COLUMN)),
    }
    if out[pc.COMMIT_COLUMN] is None and row.get(pc.COMMIT_COLUMN) is not None:
        out[pc.COMMIT_COLUMN] = str(row.get(pc.COMMIT_COLUMN))
    return json.dumps(out, sort_keys=True, separators=(",", ":"), default=str)


@dataclass(frozen=True, slots=True)
class Change:
    """A parsed change record: what the checks need, and its row for the fold (None: delete)."""

    ident: int
    op: str
    txn: str
    key: str
    commit_us: int
    commit_ms: int
    trace: str | None
    own: bool
    body: str | None


class Malformed(ValueError):
    """Not a change record of this shape; the message says what is wrong."""


def parse_change(data: bytes, names: Names, own_prefix: str | None) -> Change | None:
    """The change, None for a record of another table (foreign), :class:`Malformed` else."""
    try:
        record = pc.parse_change_record(data)
    except pc.ChangeRecordError as exc:
        raise Malformed(str(exc)) from None
    meta, body = record["metadata"], record["data"]
    if meta["table-name"] != names.table or meta["schema-name"] != names.schema:
        return None
    if meta["partition-key-type"] != pc.PARTITION_KEY_TYPE:
        raise Malformed(f"partition-key-type {meta['partition-key-type']!r} is not "
                        f"{pc.PARTITION_KEY_TYPE!r}")  # fmt: skip
    raw_key = body.get(names.key)
    if not isinstance(raw_key, int) or isinstance(raw_key, bool):
        raise Malformed(f"data.{names.key} (the key) is {raw_key!r}, not a JSON integer")
    stamp = meta["timestamp"]
    commit_us = timestamp_us(stamp) if isinstance(stamp, str) else None
    if commit_us is None:
        raise Malformed(f"metadata.timestamp {stamp!r} is not an ISO-8601 time")
    op, txn, key = meta["operation"], str(meta["transaction-id"]), str(raw_key)
    trace = body.get(names.trace)
    row = None
    if op == "delete":
        extra = sorted(set(body) - {names.key})
        if extra:
            raise Malformed(f"a delete carries columns besides the key: {', '.join(extra)}")
        trace = None
        ident = hash64(f"d:{names.table}|{txn}|{key}".encode())
    else:
        if not isinstance(trace, str) or not trace:
            raise Malformed(f"an {op} without data.{names.trace} (the statement's trace)")
        missing = [n for n in names.columns().values() if n not in body]
        if missing:
            raise Malformed(f"an {op} without column(s) {', '.join(missing)}")
        row = normal_body({c: body[n] for c, n in names.columns().items()})
        ident = hash64(f"c:{names.table}|{trace}".encode())
    own = own_prefix is None or trace is None or trace.startswith(own_prefix)
    return Change(ident, op, txn, key, commit_us, parse_iso_ms(stamp), trace, own, row)
