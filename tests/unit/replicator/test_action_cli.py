"""The action-log consumers' runner, pacing and adapter without a network: option refusals
(exit 3), which consumer ``--side`` means, the rate limiter, the lag file and its warning, and
the UpdateItem the adapter sends."""

from __future__ import annotations

import argparse
import json

import pytest

from replicator.adapters.action_table import DynamoActionTable, update_kwargs
from replicator.core.action_pace import LagRecorder, TokenBucket
from replicator.core.action_plan import UpdateRequest
from replicator.core.action_update import ConditionFailed
from replicator.runners import action_cli, cli


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--consumer", "lazy", "--max-rate", "0"], "cannot be used with --consumer lazy"),
        (["--side", "b", "--max-rate", "0"], "cannot be used with --consumer lazy"),
        (["--max-rate", "-1"], "--max-rate must be a finite number >= 0"),
        (["--start-at-latest"], "--start-at-latest cannot be used with --pipeline action-log"),
    ],
)
def test_refusals_exit_3_with_a_message(extra, message, capsys) -> None:
    assert cli.main(["--pipeline", "action-log", *extra]) == 3
    assert message in capsys.readouterr().err


def args_of(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_side_chooses_the_consumer_unless_it_is_named() -> None:
    assert action_cli.consumer_of(args_of()) == "fast"
    assert action_cli.consumer_of(args_of("--side", "b")) == "lazy"
    assert action_cli.consumer_of(args_of("--side", "a", "--consumer", "lazy")) == "lazy"


def test_rates_and_batch_limits() -> None:
    assert action_cli.rate_of(args_of(), "fast") is None
    assert action_cli.rate_of(args_of("--max-rate", "0"), "fast") is None
    assert action_cli.rate_of(args_of(), "lazy") == action_cli.DEFAULT_LAZY_RATE
    assert action_cli.rate_of(args_of("--max-rate", "50"), "lazy") == 50
    assert action_cli._batch_limit(args_of("--batch-size", "1000"), 50) == 50
    assert action_cli._batch_limit(args_of("--batch-size", "1000"), 0.5) == 1
    assert action_cli._batch_limit(args_of("--batch-size", "300"), None) == 300


def test_the_token_bucket_holds_the_rate_across_callers() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    bucket = TokenBucket(100, clock=lambda: now[0], sleep=sleep)
    for _ in range(10):
        bucket.acquire(50)  # 500 actions: 100 free (the burst), 400 at 100/s
    assert now[0] == pytest.approx(4.0)
    now[0] += 10  # idle: the bucket refills to its burst only
    bucket.acquire(100)
    assert bucket.acquire(1) == pytest.approx(0.01)


def test_lag_samples_are_appended_and_a_shard_near_the_retention_warns_once() -> None:
    lines: list[str] = []
    warnings: list[str] = []
    events: list[str] = []
    lag = LagRecorder(
        "lazy", retention_hours=24, append=lines.append, warn=warnings.append,
        log=lambda e, **f: events.append(e), clock_ms=lambda: 42,
    )  # fmt: skip
    hour = 3_600_000
    lag.sample("s1", 19 * hour, 7)
    lag.sample("s1", 20 * hour, 8)  # over 80 % of 24 h
    lag.sample("s1", 21 * hour, 9)
    lag.sample("s1", 1 * hour, 10)
    lag.sample("s1", 22 * hour, None)
    assert json.loads(lines[0]) == {"ts_ms": 42, "consumer": "lazy", "shard_id": "s1",
                                    "millis_behind_latest": 19 * hour, "applied_arrival_ms": 7}  # fmt: skip
    assert len(warnings) == 2 and "s1 is 20.0 h behind" in warnings[0]
    assert events == ["lag_warning", "lag_recovered", "lag_warning"]


def test_the_conditional_update_renders_set_add_and_the_position() -> None:
    request = UpdateRequest({"pk": {"S": "k"}}, {"name": {"S": "x"}}, {"count": "3"},
                            new_seq="b", below="a")  # fmt: skip
    kwargs = update_kwargs("items", request)
    assert kwargs["UpdateExpression"] == "SET #s0 = :s0, #seq = :seq ADD #a0 :a0"
    assert kwargs["ConditionExpression"] == "attribute_not_exists(#seq) OR #seq < :below"
    assert kwargs["ExpressionAttributeNames"] == {"#s0": "name", "#a0": "count", "#seq": "xrh_seq"}
    assert kwargs["ExpressionAttributeValues"][":below"] == {"S": "a"}
    assert kwargs["ReturnValuesOnConditionCheckFailure"] == "ALL_OLD"
    plain = update_kwargs("items", UpdateRequest({"pk": {"S": "k"}}, {}, {"n": "1"}))
    assert plain["UpdateExpression"] == "ADD #a0 :a0" and "ConditionExpression" not in plain


def test_a_failed_condition_comes_back_with_the_old_item() -> None:
    from botocore.exceptions import ClientError

    class Client:
        def update_item(self, **kwargs):
            raise ClientError(
                {"Error": {"Code": "ConditionalCheckFailedException", "Message": "no"},
                 "Item": {"pk": {"S": "k"}, "xrh_seq": {"S": "z"}}}, "UpdateItem",
            )  # fmt: skip

    table = DynamoActionTable(Client())
    with pytest.raises(ConditionFailed) as failed:
        table.update("items", UpdateRequest({"pk": {"S": "k"}}, {}, {"n": "1"}, "b", "a"))
    assert failed.value.item == {"pk": {"S": "k"}, "xrh_seq": {"S": "z"}}
