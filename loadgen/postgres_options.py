"""The ``postgres-cdc`` pipeline's load options: how its transactions look and where the database is.

- ``--statements-per-txn N``: each transaction runs 1..N statements (uniform), default 3;
- ``--rollback-share S``: share of transactions that end with ROLLBACK on purpose, default 0.05;
- ``--pg-ops``: the statements' operations by weight, default ``insert=5,update=4,delete=1``
  (an insert is an upsert: on a key that exists it updates, and the ledger says so);
- ``--postgres-url URL``: an existing database instead of the throwaway server; its password
  is never written to ``config.json`` or ``postgres.json`` (:func:`public_url`);
- ``--capture slot|notify``: how the capture process reads the changes (a logical replication
  slot, or the seed's trigger and LISTEN/NOTIFY), default ``slot``;
- ``--table-mappings @file|JSON``: AWS DMS table-mapping rules for capture (selection and
  renames, :mod:`replicator.core.table_mappings`), checked here with capture's parser (a fault
  names the rule id and field); the rules must select the harness table. The names its records
  then carry are written to ``config.json`` as ``cdc_names`` (:func:`cdc_names`), where verify
  reads them.

Resolved by :func:`loadgen.options.load_options` into :class:`PostgresOptions`; given to a run
of another pipeline each of them is refused (exit 3), as the other pipelines' options are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from loadgen.errors import LoadgenUsageError
from loadgen.item_writes import ops_text, parse_ops
from xrh.postgres_cdc import CAPTURE_MODES, COLUMNS, OPERATIONS, PIPELINE, SCHEMA, table_name

DEFAULT_PG_OPS = (("insert", 5.0), ("update", 4.0), ("delete", 1.0))
DEFAULT_STATEMENTS = 3
MAX_STATEMENTS = 1000
DEFAULT_ROLLBACK_SHARE = 0.05
#: (dest, flag) of the options of this pipeline only
POSTGRES_OPTIONS = (("statements_per_txn", "--statements-per-txn"),
                    ("rollback_share", "--rollback-share"), ("pg_ops", "--pg-ops"),
                    ("postgres_url", "--postgres-url"), ("capture", "--capture"),
                    ("table_mappings", "--table-mappings"))  # fmt: skip


@dataclass(frozen=True, slots=True)
class PostgresOptions:
    statements_per_txn: int = DEFAULT_STATEMENTS  # each transaction: 1..N statements
    rollback_share: float = DEFAULT_ROLLBACK_SHARE  # of transactions, rolled back on purpose
    ops: tuple[tuple[str, float], ...] = DEFAULT_PG_OPS  # (insert | update | delete, weight)
    url: str | None = None  # --postgres-url (with its password); None: the throwaway server
    capture: str = CAPTURE_MODES[0]  # slot | notify
    table_mappings: str | None = None  # --table-mappings as JSON text (an @file read); None: default


def add_postgres_options(add: Callable[..., None]) -> None:
    """Register the options through :func:`loadgen.options.add_options`'s ``add``."""
    add("--statements-per-txn", default=None, help="postgres-cdc: each transaction runs 1..N "
        f"statements, uniformly (default {DEFAULT_STATEMENTS})")  # fmt: skip
    add("--rollback-share", default=None, help="postgres-cdc: share of transactions that end "
        f"with ROLLBACK on purpose, 0..1 (default {DEFAULT_ROLLBACK_SHARE})")  # fmt: skip
    add("--pg-ops", default=None, help="postgres-cdc: statements by weight "
        f"(default {ops_text(DEFAULT_PG_OPS)}; insert is an upsert)")  # fmt: skip
    add("--postgres-url", default=None, help="postgres-cdc: an existing database "
        "(postgresql://user:password@host:port/db) instead of a throwaway server; the "
        "password is never written to the run directory")  # fmt: skip
    add("--capture", default=None, help="postgres-cdc: how capture reads the changes: slot "
        "(a logical replication slot) or notify (the seed's trigger and LISTEN/NOTIFY) "
        "(default slot)")  # fmt: skip
    add("--table-mappings", default=None, help="postgres-cdc: AWS DMS table-mapping rules for "
        "capture (@file or inline JSON): selection and renames; the harness table must be "
        "selected (default: the harness table under its own names)")  # fmt: skip


def public_url(url: str | None) -> str | None:
    """``url`` without its password (``postgresql://u:secret@h/db`` -> ``postgresql://u@h/db``);
    a ``password=`` query parameter is dropped too."""
    if not url:
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}@{host}"
    query = "&".join(p for p in parts.query.split("&") if p and not p.lower().startswith("password="))
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def url_password(url: str | None) -> str | None:
    """The password in ``url``, if it holds one."""
    return urlsplit(url).password if url else None


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
        raise LoadgenUsageError(f"--postgres-url {public_url(url)!r}: not a URL of the form "
                                "postgresql://user:password@host:port/database")  # fmt: skip
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise LoadgenUsageError(f"--postgres-url {public_url(url)!r}: the port is not a "
                                "number") from None  # fmt: skip
    return url


def _read_mappings(spec: str) -> tuple[str, Any]:
    """``--table-mappings`` (``@file`` or inline) as (JSON text, parsed rules), checked by the
    parser capture uses."""
    from replicator.core import table_mappings

    source = "--table-mappings"
    if spec.startswith("@"):
        source = spec[1:]
        try:
            spec = Path(source).read_text()
        except OSError as exc:
            raise LoadgenUsageError(f"--table-mappings: cannot read {source}: "
                                    f"{exc.strerror}") from None  # fmt: skip
    try:
        return spec, table_mappings.parse(spec, source)
    except table_mappings.MappingError as exc:
        raise LoadgenUsageError(str(exc)) from None


def table_names(rules: Any, table: str) -> dict[str, str]:
    """The names records of ``public.<table>`` carry under ``rules`` (verify's ``cdc_names``:
    ``schema``, ``table`` and each column of :data:`COLUMNS`); LoadgenUsageError when the rules
    do not select the table, or remove one of its columns (verify could not judge the records)."""
    from replicator.core.table_mappings import renamed_names

    names = renamed_names(rules, SCHEMA, table, COLUMNS)
    if names is None:
        raise LoadgenUsageError(f"--table-mappings: the rules do not select {SCHEMA}.{table}: "
                                "nothing would be captured")  # fmt: skip
    removed = [c for c in COLUMNS if names[c] is None]
    if removed:
        raise LoadgenUsageError(f"--table-mappings: the rules remove column(s) "
                                f"{', '.join(removed)} of {SCHEMA}.{table}: verify needs every "
                                "column")  # fmt: skip
    return {name: str(value) for name, value in names.items()}


def cdc_names(prefix: str, options: PostgresOptions) -> dict[str, Any]:
    """``{"cdc_names": ...}`` for the run's config.json when ``--table-mappings`` was given
    (the names of the table of the run's final ``prefix``), else nothing."""
    if options.table_mappings is None:
        return {}
    from replicator.core import table_mappings

    rules = table_mappings.parse(options.table_mappings)
    return {"cdc_names": table_names(rules, table_name(prefix))}


def _option_time_table(parsed: Any) -> str | None:
    """The harness table to check the rules against before the run, or None when the options
    carry no run configuration (a worker's, sent by its master, which checked them). With the
    embedded endpoint each run's prefix gains ``-`` and 6 hex digits of its run id, stood for
    here by ``xxxxxx``; the run checks its real table again before it starts."""
    from xrh.config import EndpointMode, config_from_options

    if parsed is None or not hasattr(parsed, "pipeline"):
        return None
    config = config_from_options(parsed)
    if config.endpoint_mode is EndpointMode.EMBEDDED:
        return table_name(f"{config.prefix}-xxxxxx")
    return table_name(config.prefix)


def postgres_options(g: Callable[..., Any], parsed: Any = None) -> PostgresOptions:
    """Resolve the options (``g(dest, default)``: the flag, else the drill's, else default;
    ``parsed``: the parsed options, for the harness table ``--table-mappings`` must select)."""
    from loadgen.options import _number, _whole  # (loadgen.options imports this module)

    statements = _whole(g("statements_per_txn", DEFAULT_STATEMENTS), "--statements-per-txn", 1,
                        MAX_STATEMENTS)  # fmt: skip
    share = _number(g("rollback_share", DEFAULT_ROLLBACK_SHARE), "--rollback-share", minimum=0)
    if share > 1:
        raise LoadgenUsageError(f"--rollback-share {share}: a share, 0..1")
    capture = str(g("capture", CAPTURE_MODES[0])).strip().lower()
    if capture not in CAPTURE_MODES:
        raise LoadgenUsageError(f"--capture {g('capture')!r}: choose one of "
                                f"{', '.join(CAPTURE_MODES)}")  # fmt: skip
    url = g("postgres_url")
    mappings = None
    if g("table_mappings"):
        mappings, rules = _read_mappings(str(g("table_mappings")).strip())
        table = _option_time_table(parsed)
        if table is not None:
            table_names(rules, table)
    return PostgresOptions(
        statements_per_txn=statements,
        rollback_share=share,
        ops=parse_ops(g("pg_ops"), "--pg-ops", ops=OPERATIONS, default=DEFAULT_PG_OPS),
        url=_check_url(str(url).strip()) if url else None,
        capture=capture,
        table_mappings=mappings,
    )


def postgres_public(pipeline: str, options: PostgresOptions) -> dict[str, Any]:
    """What config.json records about a postgres-cdc run's load (nothing for others; the
    database's URL without its password)."""
    if pipeline != PIPELINE:
        return {}
    return {
        "statements_per_txn": options.statements_per_txn,
        "rollback_share": options.rollback_share,
        "pg_ops": ops_text(options.ops),
        "postgres_url": public_url(options.url),
        "capture": options.capture,
        "table_mappings": options.table_mappings,
    }
