"""The run's PostgreSQL (postgres-cdc): started before capture and the load, restarted by drills,
stopped after verify.

Without ``--postgres-url`` a throwaway server starts in the run directory (``postgres/``, its
log ``postgres.log``); ``postgres.json`` says where the database is (without a password: one in
``--postgres-url`` reaches capture and verify as libpq's ``PGPASSWORD``, never on disk). The
table, its publication and slot (the notify trigger instead of the slot for ``--capture
notify``) are created before any load, so the slot misses nothing. At the end the throwaway
server is stopped and its data removed; on a user's database the run's slot and publication
are dropped (an abandoned slot holds WAL for ever) and its table kept.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from loadgen.errors import OrchestrationError
from loadgen.replicators import capture_mode

if TYPE_CHECKING:
    from loadgen.options import LoadOptions
    from xrh import runs
    from xrh.config import HarnessConfig
    from xrh.postgres_server import PostgresServer

Say = Callable[[str], None]


def start(run: runs.RunDir, config: HarnessConfig, options: LoadOptions,
          say: Say) -> PostgresServer | None:  # fmt: skip
    """The throwaway server (None with ``--postgres-url``), ``postgres.json``, and the table,
    publication and slot (notify: the trigger instead of the slot) before any load."""
    import psycopg

    from loadgen.postgres_options import public_url, url_password
    from xrh import postgres_cdc as cdc
    from xrh import postgres_setup

    url, prefix = options.postgres.url, config.prefix
    server = None
    if url is None:
        from xrh.postgres_server import throwaway_server

        say("starting a throwaway PostgreSQL server in the run directory...")
        server = throwaway_server(run.path, start=False)
        server.start()
        url = server.url
    elif password := url_password(url):
        os.environ["PGPASSWORD"] = password  # capture (a child) and verify, never on disk
    run.write_json(cdc.POSTGRES_FILE, {
        "url": public_url(url), "managed": server is not None,
        "data_dir": str(server.data_dir) if server is not None else None,
        "table": f"{cdc.SCHEMA}.{cdc.table_name(prefix)}", "slot": cdc.slot_name(prefix),
        "publication": cdc.publication_name(prefix),
    })  # fmt: skip
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        if capture_mode(options) == "notify":
            postgres_setup.create_table(conn, prefix)
            postgres_setup.create_publication(conn, prefix)
            postgres_setup.create_notify_trigger(conn, prefix)
        else:
            postgres_setup.create_all(conn, prefix)
    say(f"database: {public_url(url)}, table {cdc.SCHEMA}.{cdc.table_name(prefix)}")
    return server


def restart(server: PostgresServer | None, mode: str, say: Say) -> None:
    """Restart the run's throwaway server: ``fast`` or ``immediate`` (a crash)."""
    if server is None:
        raise OrchestrationError("restarting the database needs the run's throwaway "
                                 "PostgreSQL server (not --postgres-url)")  # fmt: skip
    say(f"restarting PostgreSQL ({mode})...")
    server.restart(mode)


def stop(server: PostgresServer | None, run: runs.RunDir, config: HarnessConfig,
         options: LoadOptions, say: Say) -> None:  # fmt: skip
    """Stop the throwaway server and remove its data directory; on a user's database drop the
    run's slot, publication and trigger (best effort, idempotent)."""
    if server is not None:
        server.remove()
        say("PostgreSQL stopped; its data directory removed")
        return
    from xrh.postgres_cdc import POSTGRES_FILE

    if options.postgres.url and run.file(POSTGRES_FILE).exists():
        import psycopg

        from xrh import postgres_setup

        try:
            with psycopg.connect(options.postgres.url, autocommit=True,
                                 connect_timeout=10) as conn:  # fmt: skip
                postgres_setup.drop_all(conn, config.prefix, keep_table=True)
        except psycopg.Error as exc:
            say(f"could not drop the run's slot and publication: {exc}")
