"""The ``postgres-cdc`` pipeline's contracts: the source table, the ledger rows of its load, and
the JSON shape of each change record (AWS DMS's Kinesis target format, REFERENCE.md).

Flow. Producers run transactions against a PostgreSQL table; capture (``xrh capture``) reads the
table's committed changes from a logical replication slot and puts one record per change to
``{prefix}-cdc`` in region A; the kinesis pipeline's reference replicator copies that stream to
the same-named stream in region B. Verify holds both streams (and the table) against the ledger.

Source table. ``public.<table>`` with :func:`table_name` (the prefix with every character
outside ``[a-z0-9_]`` turned into ``_``, so users can type it unquoted in psql)::

    key              bigint PRIMARY KEY
    commit_timestamp timestamptz NOT NULL  -- the producer's clock when it ran the statement
    trace            text NOT NULL         -- the ledger trace of the statement that wrote this version
    payload          jsonb NOT NULL        -- rendered from the run's template

The publication :func:`publication_name` covers the table; the slot :func:`slot_name` uses the
built-in ``pgoutput`` plugin. Replica identity stays DEFAULT: a delete carries the key only.

Change record (one Kinesis record per changed row; UTF-8 JSON, no whitespace promises)::

    {"data": {<column>: <value>, ...},
     "metadata": {"timestamp": "2026-11-24T10:00:00.123456Z",   # the transaction's commit time
                  "record-type": "data",
                  "operation": "insert" | "update" | "delete",
                  "partition-key-type": "primary-key",
                  "schema-name": "public", "table-name": "<table>",
                  "transaction-id": 7421}}                       # the PostgreSQL xid (32 bits)

``data`` holds the new row for inserts and updates and the key columns for deletes. Column
values: PostgreSQL's integer types and ``boolean`` as JSON numbers and booleans, NULL as
``null``, every other type as its PostgreSQL text form in a string (a timestamptz as
``"2026-11-24 10:00:00.123+00"``, a jsonb as its text). Table-mapping renames apply to
``schema-name``, ``table-name`` and the column names in ``data``. The partition key is
:func:`partition_key` of the row's primary-key values, so every change of one row goes to one
shard, in commit order.

Ledger rows (one per statement, ``pipeline`` = ``postgres-cdc``, ``target`` = ``public.<table>``,
``region`` = region A, no shard or sequence number): ``op`` ``insert`` | ``update`` | ``delete``
(what the statement did: an upsert that inserted is ``insert``), ``key`` the row's key,
``commit_ts`` the statement's ``commit_timestamp`` (epoch ms), ``txn`` the transaction's xid as
text, ``rows`` the number of rows the statement changed (0 or 1; a statement that changed
nothing produces no change record), ``status`` the *transaction's* outcome: ``ok`` (COMMIT
acknowledged), ``fail`` (rolled back, on purpose with ``error`` = :data:`ROLLED_BACK`, or failed
before COMMIT was sent) or ``unknown`` (COMMIT sent, answer lost). Statements of one transaction
are consecutive ``seq`` of one producer, in the order they ran. In a failed transaction a
statement that never ran (after the one that failed) has its planned ``op`` and NULL
``commit_ts`` and ``rows``; ``txn`` is NULL when the xid was never learned (no connection, or
the first statement failed).

Capture progress. The slot is the checkpoint: its confirmed position is advanced only past
transactions all of whose records Kinesis acknowledged. Capture appends about once a second to
``capture-lag.jsonl`` (:data:`LAG_FILE`) in the run directory: ``{"ts_ms", "mode": "slot" |
"notify", "confirmed_lsn", "pending_bytes", "records_put", "last_commit_ms"}`` (``pending_bytes``
is the WAL between the slot's confirmed position and the server's current one; null for notify).

The run directory's ``postgres.json`` (:data:`POSTGRES_FILE`) says where the database is:
``{"url": "postgresql://...", "managed": true | false, "data_dir": <path or null>, "table":
"public.<table>", "slot": ..., "publication": ...}`` (``managed``: the harness started a
throwaway server for the run and stops it at the end). Capture, the load and verify read it; a
user's ``--postgres-url`` is written there without its password, which the harness gives capture
and verify as libpq's ``PGPASSWORD`` in their environment (never on a command line or on disk).

``--capture notify`` (the seed's trigger + LISTEN/NOTIFY design, reproduced for comparison)
uses the trigger function :func:`notify_function_name` and channel :func:`notify_channel`; its
records have the same shape, with ``transaction-id`` from ``txid_current()``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

PIPELINE = "postgres-cdc"
SCHEMA = "public"
KEY_COLUMN = "key"
COMMIT_COLUMN = "commit_timestamp"
TRACE_COLUMN = "trace"
PAYLOAD_COLUMN = "payload"
COLUMNS = (KEY_COLUMN, COMMIT_COLUMN, TRACE_COLUMN, PAYLOAD_COLUMN)

OPERATIONS = ("insert", "update", "delete")
RECORD_TYPE = "data"
PARTITION_KEY_TYPE = "primary-key"
ROLLED_BACK = "rolled back on purpose"
LAG_FILE = "capture-lag.jsonl"
POSTGRES_FILE = "postgres.json"
CAPTURE_MODES = ("slot", "notify")

_UNSAFE = re.compile(r"[^a-z0-9_]")


def table_name(prefix: str) -> str:
    """The source table's name for a resource prefix (``xrh-ab12`` -> ``xrh_ab12``)."""
    return _UNSAFE.sub("_", prefix.lower())


def slot_name(prefix: str) -> str:
    return f"{table_name(prefix)}_slot"


def publication_name(prefix: str) -> str:
    return f"{table_name(prefix)}_pub"


def notify_channel(prefix: str) -> str:
    return f"{table_name(prefix)}_changes"


def notify_function_name(prefix: str) -> str:
    return f"{table_name(prefix)}_notify"


def table_ddl(prefix: str) -> str:
    """CREATE TABLE for the source table (idempotent)."""
    return (
        f"CREATE TABLE IF NOT EXISTS {SCHEMA}.{table_name(prefix)} ("
        f"{KEY_COLUMN} bigint PRIMARY KEY, "
        f"{COMMIT_COLUMN} timestamptz NOT NULL, "
        f"{TRACE_COLUMN} text NOT NULL, "
        f"{PAYLOAD_COLUMN} jsonb NOT NULL)"
    )


def partition_key(key_values: Sequence[Any]) -> str:
    """The Kinesis partition key of a row: its primary-key values in text, joined by ``.``."""
    return ".".join("" if value is None else _text(value) for value in key_values)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def change_record(
    *,
    data: Mapping[str, Any],
    operation: str,
    commit_time: str,
    schema: str,
    table: str,
    transaction_id: int,
) -> dict[str, Any]:
    """One change record as a dict (``commit_time``: ISO-8601 UTC with microseconds and ``Z``)."""
    if operation not in OPERATIONS:
        raise ValueError(f"operation {operation!r} is not one of {', '.join(OPERATIONS)}")
    return {
        "data": dict(data),
        "metadata": {
            "timestamp": commit_time,
            "record-type": RECORD_TYPE,
            "operation": operation,
            "partition-key-type": PARTITION_KEY_TYPE,
            "schema-name": schema,
            "table-name": table,
            "transaction-id": int(transaction_id),
        },
    }


def encode(record: Mapping[str, Any]) -> bytes:
    """The record's bytes as put to Kinesis (compact JSON, keys in the order given)."""
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()


class ChangeRecordError(ValueError):
    """Bytes that are not a change record of this shape (the message names what is wrong)."""


def parse_change_record(data: bytes) -> dict[str, Any]:
    """The record as a dict, checked against the shape above; :class:`ChangeRecordError` else."""
    try:
        record = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ChangeRecordError(f"not JSON: {exc}") from None
    if not isinstance(record, dict):
        raise ChangeRecordError("not a JSON object")
    body, meta = record.get("data"), record.get("metadata")
    if not isinstance(body, dict):
        raise ChangeRecordError("'data' is missing or not an object")
    if not isinstance(meta, dict):
        raise ChangeRecordError("'metadata' is missing or not an object")
    for name in ("timestamp", "record-type", "operation", "partition-key-type", "schema-name",
                 "table-name", "transaction-id"):  # fmt: skip
        if name not in meta:
            raise ChangeRecordError(f"metadata has no {name!r}")
    if meta["record-type"] != RECORD_TYPE:
        raise ChangeRecordError(f"record-type {meta['record-type']!r} is not {RECORD_TYPE!r}")
    if meta["operation"] not in OPERATIONS:
        raise ChangeRecordError(f"operation {meta['operation']!r} is not one of {OPERATIONS}")
    if not isinstance(meta["transaction-id"], int) or isinstance(meta["transaction-id"], bool):
        raise ChangeRecordError("transaction-id is not an integer")
    return record
