"""The postgres-cdc pipeline's load options: defaults, errors naming option and value (exit 3),
its options refused on other pipelines, the password never in config.json, what a master
sends its workers."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from loadgen.errors import LoadgenUsageError
from loadgen.options import LOAD_PIPELINES, load_options, public_dict, wire_options
from loadgen.postgres_options import public_url, url_password
from xrh.errors import UsageError


def pg(**kw) -> SimpleNamespace:
    return SimpleNamespace(pipeline="postgres-cdc", **kw)


def test_defaults_and_given_values():
    assert "postgres-cdc" in LOAD_PIPELINES
    options = load_options(pg())
    p = options.postgres
    assert options.rate_per_user == 10.0  # transactions per second per user
    assert (p.statements_per_txn, p.rollback_share, p.url, p.capture) == (3, 0.05, None, "slot")
    assert p.ops == (("insert", 5.0), ("update", 4.0), ("delete", 1.0))
    given = load_options(pg(statements_per_txn="7", rollback_share="0", pg_ops="delete=1,insert=2",
                            capture="NOTIFY", postgres_url="postgresql://u:s3cret@db:6543/app"))  # fmt: skip
    g = given.postgres
    assert (g.statements_per_txn, g.rollback_share, g.capture) == (7, 0.0, "notify")
    assert g.ops == (("insert", 2.0), ("delete", 1.0))
    assert g.url == "postgresql://u:s3cret@db:6543/app"
    shown = public_dict(given)
    assert {k: shown[k] for k in ("statements_per_txn", "rollback_share", "pg_ops", "capture",
                                  "postgres_url")} == {
        "statements_per_txn": 7, "rollback_share": 0.0, "pg_ops": "insert=2,delete=1",
        "capture": "notify", "postgres_url": "postgresql://u@db:6543/app",
    }  # fmt: skip
    assert "s3cret" not in json.dumps(shown)
    assert "pg_ops" not in public_dict(load_options(SimpleNamespace()))


def test_the_password_never_shows():
    assert public_url("postgresql://u:p%40ss@h:5/db?sslmode=require&password=x") == (
        "postgresql://u@h:5/db?sslmode=require")  # fmt: skip
    assert public_url("postgresql://h/db") == "postgresql://h/db"
    assert url_password("postgresql://u:pw@h/db") == "pw" and url_password("postgresql://h") is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"statements_per_txn": "0"}, "--statements-per-txn 0: must be 1..1,000"),
        ({"statements_per_txn": "two"}, "--statements-per-txn 'two': not a whole number"),
        ({"rollback_share": "1.5"}, "--rollback-share 1.5: a share, 0..1"),
        ({"rollback_share": "some"}, "--rollback-share 'some': not a number"),
        ({"rollback_share": "-0.1"}, "--rollback-share -0.1: must be at least 0"),
        ({"pg_ops": "put=1"}, "--pg-ops 'put=1': unknown operation 'put'"),
        ({"pg_ops": "insert=0"}, "--pg-ops 'insert=0': at least one weight must be above 0"),
        ({"capture": "poll"}, "--capture 'poll': choose one of slot, notify"),
        ({"postgres_url": "mysql://u:pw@h/db"}, "--postgres-url 'mysql://u@h/db': not a URL"),
        ({"postgres_url": "postgresql://u:pw@h:x/db"}, "the port is not a number"),
    ],
)
def test_errors_name_the_option_and_value(options, message):
    with pytest.raises(UsageError) as err:
        load_options(pg(**options))
    assert message in str(err.value)
    assert "pw" not in str(err.value)
    assert err.value.exit_code == 3


def test_postgres_options_are_refused_on_other_pipelines_and_theirs_on_it():
    for dest, flag in (("statements_per_txn", "--statements-per-txn"),
                       ("rollback_share", "--rollback-share"), ("pg_ops", "--pg-ops"),
                       ("postgres_url", "--postgres-url"), ("capture", "--capture")):  # fmt: skip
        with pytest.raises(LoadgenUsageError, match=f"{flag} .*applies to --pipeline postgres-cdc"):
            load_options(SimpleNamespace(pipeline="dynamodb", **{dest: "1"}))
    with pytest.raises(LoadgenUsageError, match="--ops .*applies to --pipeline dynamodb"):
        load_options(pg(ops="put=1"))


def test_workers_get_the_masters_options():
    parsed = pg(statements_per_txn="5", rollback_share="0.2", pg_ops="update=1", capture="notify",
                postgres_url="postgresql://u:pw@h/db", seed=4)  # fmt: skip
    master = load_options(parsed)
    sent = json.loads(json.dumps(wire_options(parsed, master)))  # what crosses the wire
    worker = load_options(SimpleNamespace(**sent), "postgres-cdc")
    assert worker.postgres == master.postgres and worker.seed == 4
