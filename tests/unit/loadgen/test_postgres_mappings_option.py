"""``--table-mappings`` on a postgres-cdc run: checked at option time with capture's parser
(exit 3 naming the rule id and field), the harness table must be selected, the rules reach the
capture process, and the renamed names go to config.json as ``cdc_names`` in verify's shape."""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import pytest

from loadgen.errors import LoadgenUsageError
from loadgen.options import load_options, public_dict, wire_options
from loadgen.postgres_options import cdc_names
from loadgen.replicators import CAPTURE, replicator_command
from replicator.runners import capture_cli
from verify.cdc.records import Names
from xrh.config import parse_config
from xrh.errors import UsageError
from xrh.postgres_cdc import table_name

URL = "http://127.0.0.1:9"
INCLUDE = {"rule-type": "selection", "rule-id": "1", "rule-name": "pg",
           "object-locator": {"schema-name": "public", "table-name": "%"},
           "rule-action": "include"}  # fmt: skip
RENAME_TABLE = {"rule-type": "transformation", "rule-id": "2", "rule-name": "t",
                "rule-target": "table", "rule-action": "rename", "value": "orders",
                "object-locator": {"schema-name": "public", "table-name": "%"}}  # fmt: skip
RENAME_COLUMN = {"rule-type": "transformation", "rule-id": "3", "rule-name": "c",
                 "rule-target": "column", "rule-action": "rename", "value": "body",
                 "object-locator": {"schema-name": "public", "table-name": "%",
                                    "column-name": "payload"}}  # fmt: skip


def rules(*items: dict) -> str:
    return json.dumps({"rules": list(items)})


def pg(mappings: str | None, **kw) -> SimpleNamespace:
    return SimpleNamespace(pipeline="postgres-cdc", endpoint_url=URL, prefix="pg-1",
                           table_mappings=mappings, **kw)  # fmt: skip


def refused(mappings: str, **kw) -> str:
    with pytest.raises(LoadgenUsageError) as caught:
        load_options(pg(mappings, **kw))
    assert isinstance(caught.value, UsageError)  # exit 3 on the command line
    return str(caught.value)


def test_inline_and_file_rules_are_kept_as_json_text(tmp_path):
    text = rules(INCLUDE, RENAME_TABLE, RENAME_COLUMN)
    assert load_options(pg(text)).postgres.table_mappings == text
    path = tmp_path / "rules.json"
    path.write_text(text)
    options = load_options(pg(f"@{path}"))
    assert options.postgres.table_mappings == text  # the file's text, not its path
    assert public_dict(options)["table_mappings"] == text
    assert load_options(pg(None)).postgres.table_mappings is None


def test_bad_rules_name_the_rule_id_and_field_as_capture_does(tmp_path):
    bad = rules(INCLUDE, {**RENAME_TABLE, "rule-id": "7", "rule-action": "explode"})
    message = refused(bad)
    assert "rule 7" in message and "rule-action" in message and "explode" in message
    with pytest.raises(UsageError) as capture_said:  # the same words as xrh capture's
        capture_cli._mappings(SimpleNamespace(table_mappings=bad), "pg-1")
    assert str(capture_said.value) == message
    assert "rule 1: object-locator" in refused(rules({**INCLUDE, "object-locator": None}))
    assert "not JSON" in refused("{nope")
    assert "cannot read" in refused(f"@{tmp_path / 'missing.json'}")


def test_the_harness_table_must_be_selected():
    other = {**INCLUDE, "object-locator": {"schema-name": "public", "table-name": "other"}}
    assert refused(rules(other)) == ("--table-mappings: the rules do not select "
                                     "public.pg_1: nothing would be captured")  # fmt: skip
    exclude = {**INCLUDE, "rule-id": "9", "rule-action": "exclude"}
    assert "do not select public.pg_1" in refused(rules(INCLUDE, exclude))
    exact = {**INCLUDE, "object-locator": {"schema-name": "public", "table-name": "pg_1"}}
    assert load_options(pg(rules(exact))).postgres.table_mappings
    # with the embedded endpoint each run's table gets 6 hex digits of its run id
    embedded = SimpleNamespace(pipeline="postgres-cdc", prefix="pg-1", table_mappings=rules(exact))
    with pytest.raises(LoadgenUsageError, match=r"do not select public\.pg_1_xxxxxx"):
        load_options(embedded)
    embedded.table_mappings = rules({**exact, "object-locator": {"schema-name": "public",
                                                                 "table-name": "pg_1_%"}})  # fmt: skip
    assert load_options(embedded).postgres.table_mappings


def test_a_removed_column_is_refused():
    remove = {**RENAME_COLUMN, "rule-id": "5", "rule-action": "remove-column"}
    remove.pop("value")
    message = refused(rules(INCLUDE, remove))
    assert "remove column(s) payload of public.pg_1" in message


def test_refused_on_other_pipelines():
    parsed = SimpleNamespace(pipeline="kinesis", table_mappings=rules(INCLUDE))
    with pytest.raises(LoadgenUsageError, match="--table-mappings .* applies to --pipeline "
                       "postgres-cdc only"):  # fmt: skip
        load_options(parsed)


def test_a_workers_options_are_not_checked_against_a_table():
    # a master sends its workers the options without the run's configuration
    other = rules({**INCLUDE, "object-locator": {"schema-name": "public", "table-name": "x"}})
    master = load_options(pg(other.replace('"x"', '"pg_1"')))
    sent = wire_options(pg(other), master)
    assert "table_mappings" in sent and "pipeline" not in sent
    assert load_options(SimpleNamespace(**sent), "postgres-cdc").postgres.table_mappings == other


def test_the_capture_command_carries_the_rules(tmp_path):
    text = rules(INCLUDE, RENAME_TABLE)
    config = parse_config(["--endpoint-url", URL, "--pipeline", "postgres-cdc", "--prefix",
                           "pg-1"], environ={})  # fmt: skip
    command = replicator_command(config, load_options(pg(text)), tmp_path, CAPTURE,
                                 ["--endpoint-url", URL])  # fmt: skip
    assert command[:4] == [sys.executable, "-m", "xrh", "capture"]
    at = command.index("--table-mappings")
    assert command[at + 1] == text
    plain = replicator_command(config, load_options(pg(None)), tmp_path, CAPTURE, [])
    assert "--table-mappings" not in plain


def test_cdc_names_in_the_shape_verify_reads():
    options = load_options(pg(rules(INCLUDE, RENAME_TABLE, RENAME_COLUMN))).postgres
    written = cdc_names("pg-1-a1b2c3", options)
    assert written == {"cdc_names": {"schema": "public", "table": "orders", "key": "key",
                                     "commit_timestamp": "commit_timestamp", "trace": "trace",
                                     "payload": "body"}}  # fmt: skip
    names = Names.of("pg-1-a1b2c3", json.loads(json.dumps(written))["cdc_names"])
    assert (names.table, names.payload, names.key, names.renamed) == ("orders", "body", "key", True)
    assert cdc_names("pg-1", load_options(pg(None)).postgres) == {}
    # the run's real table is checked again (an exact rule that misses the run-id suffix)
    exact = {**INCLUDE, "object-locator": {"schema-name": "public", "table-name": "pg_1"}}
    only = load_options(pg(rules(exact))).postgres
    assert cdc_names("pg-1", only)["cdc_names"]["table"] == table_name("pg-1")
    with pytest.raises(LoadgenUsageError, match="do not select public.pg_1_a1b2c3"):
        cdc_names("pg-1-a1b2c3", only)
