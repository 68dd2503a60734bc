"""The ``postgres-cdc`` pipeline's database objects: the source table, the publication, the
logical replication slot, and the seed's notify trigger (``--capture notify``); and their removal.

Every function takes an open psycopg connection (autocommit or not: each commits its own work)
and a resource prefix; names come from :mod:`xrh.postgres_cdc`. Creation is idempotent, so the
orchestrator, the load and capture may all call :func:`create_all` (or the parts they need).

The slot must exist before the load starts: changes made before it exist are never decoded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from xrh import postgres_cdc as cdc

PLUGIN = "pgoutput"


def _ident(name: str) -> str:
    """``name`` quoted as a PostgreSQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _qualified(table: str) -> str:
    """``schema.table`` (or ``table``, taken as public) quoted."""
    schema, _, name = table.rpartition(".")
    return f"{_ident(schema or cdc.SCHEMA)}.{_ident(name)}"


def _run(conn: Any, *statements: tuple[str, Sequence[Any]] | str) -> list[Any]:
    """Run statements in one transaction; the last statement's rows (if any)."""
    rows: list[Any] = []
    with conn.transaction():
        for statement in statements:
            sql, params = (statement, ()) if isinstance(statement, str) else statement
            cur = conn.execute(sql, params)
            rows = cur.fetchall() if cur.description else []
    return rows


def create_table(conn: Any, prefix: str) -> str:
    """The harness table ``public.<table_name(prefix)>`` (idempotent); its qualified name."""
    _run(conn, cdc.table_ddl(prefix))
    return f"{cdc.SCHEMA}.{cdc.table_name(prefix)}"


def create_publication(conn: Any, prefix: str, tables: Sequence[str] | None = None) -> bool:
    """The publication ``FOR TABLE`` the harness table (or ``tables``, ``schema.table`` each).
    An existing publication gets any missing tables added. True when it was created."""
    name = cdc.publication_name(prefix)
    wanted = list(tables) if tables else [f"{cdc.SCHEMA}.{cdc.table_name(prefix)}"]
    exists = _run(conn, ("SELECT 1 FROM pg_publication WHERE pubname = %s", (name,)))
    if not exists:
        _run(conn, f"CREATE PUBLICATION {_ident(name)} FOR TABLE "
                   + ", ".join(_qualified(t) for t in wanted))  # fmt: skip
        return True
    have = {f"{s}.{t}" for s, t in _run(conn, (
        "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s", (name,)))}
    missing = [t for t in wanted if (t if "." in t else f"{cdc.SCHEMA}.{t}") not in have]
    if missing:
        _run(conn, f"ALTER PUBLICATION {_ident(name)} ADD TABLE "
                   + ", ".join(_qualified(t) for t in missing))  # fmt: skip
    return False


def slot_exists(conn: Any, prefix: str) -> bool:
    rows = _run(conn, ("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s",
                       (cdc.slot_name(prefix),)))  # fmt: skip
    return bool(rows)


def create_slot(conn: Any, prefix: str) -> bool:
    """The logical slot with the ``pgoutput`` plugin; an existing one is kept (its confirmed
    position is the capture's checkpoint). True when it was created."""
    if slot_exists(conn, prefix):
        return False
    try:
        _run(conn, ("SELECT pg_create_logical_replication_slot(%s, %s)",
                    (cdc.slot_name(prefix), PLUGIN)))  # fmt: skip
    except Exception as exc:  # created meanwhile by someone else: keep theirs
        if "already exists" in str(exc):
            return False
        raise
    return True


def notify_function_sql(prefix: str) -> str:
    """The seed's trigger function: ``pg_notify`` with the row, the operation, ``txid_current()``
    and ``clock_timestamp()`` (a trigger cannot know its transaction's commit time)."""
    channel = cdc.notify_channel(prefix).replace("'", "''")
    return (
        f"CREATE OR REPLACE FUNCTION {cdc.SCHEMA}.{_ident(cdc.notify_function_name(prefix))}() "
        "RETURNS trigger LANGUAGE plpgsql AS $xrh$\n"
        "BEGIN\n"
        f"  PERFORM pg_notify('{channel}', json_build_object(\n"
        "    'operation', lower(TG_OP),\n"
        "    'schema', TG_TABLE_SCHEMA, 'table', TG_TABLE_NAME,\n"
        "    'xid', txid_current(),\n"
        "    'timestamp', to_char(clock_timestamp() AT TIME ZONE 'UTC',\n"
        "                         'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),\n"
        "    'row', CASE WHEN TG_OP = 'DELETE' THEN row_to_json(OLD) ELSE row_to_json(NEW) END\n"
        "  )::text);\n"
        "  RETURN NULL;\n"
        "END\n"
        "$xrh$"
    )


def _trigger_name(prefix: str) -> str:
    return cdc.notify_function_name(prefix) + "_trigger"


def create_notify_trigger(conn: Any, prefix: str) -> None:
    """The seed's AFTER INSERT OR UPDATE OR DELETE FOR EACH ROW trigger (idempotent)."""
    table = _qualified(cdc.table_name(prefix))
    _run(
        conn,
        notify_function_sql(prefix),
        f"DROP TRIGGER IF EXISTS {_ident(_trigger_name(prefix))} ON {table}",
        f"CREATE TRIGGER {_ident(_trigger_name(prefix))} AFTER INSERT OR UPDATE OR DELETE "
        f"ON {table} FOR EACH ROW EXECUTE FUNCTION "
        f"{cdc.SCHEMA}.{_ident(cdc.notify_function_name(prefix))}()",
    )


def create_all(conn: Any, prefix: str, *, notify: bool = False,
               tables: Sequence[str] | None = None) -> dict[str, bool]:  # fmt: skip
    """Table, publication and slot (and the notify trigger when asked), in that order."""
    create_table(conn, prefix)
    publication = create_publication(conn, prefix, tables)
    slot = create_slot(conn, prefix)
    if notify:
        create_notify_trigger(conn, prefix)
    return {"publication_created": publication, "slot_created": slot}


def drop_all(conn: Any, prefix: str, *, keep_table: bool = False) -> None:
    """Remove everything :func:`create_all` made, the slot first (an abandoned slot keeps WAL
    forever). A slot held by a running capture cannot be dropped: PostgreSQL's error is raised."""
    if slot_exists(conn, prefix):
        _run(conn, ("SELECT pg_drop_replication_slot(%s)", (cdc.slot_name(prefix),)))
    table = _qualified(cdc.table_name(prefix))
    statements = [
        f"DROP PUBLICATION IF EXISTS {_ident(cdc.publication_name(prefix))}",
        f"DROP FUNCTION IF EXISTS {cdc.SCHEMA}.{_ident(cdc.notify_function_name(prefix))}() "
        "CASCADE",
    ]
    if not keep_table:
        statements.append(f"DROP TABLE IF EXISTS {table}")
    _run(conn, *statements)
