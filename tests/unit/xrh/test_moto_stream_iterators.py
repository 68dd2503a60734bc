"""DynamoDB Streams shard iterators in the embedded endpoint expire as on AWS (15 minutes) instead
of piling up for ever, and reading an expired one is ExpiredIteratorException, not a 500. Built
on a subclass of moto's backend here, so this process's moto stays unpatched."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.dynamodbstreams.models import DynamoDBStreamsBackend

from xrh.endpoint.moto_patches import ExpiringIterators, expiring_get_records


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_iterators_are_forgotten_once_older_than_their_ttl() -> None:
    clock = Clock()
    iterators = ExpiringIterators(ttl_s=900, clock=clock)
    iterators["a"] = 1
    clock.now = 600
    iterators["b"] = 2
    assert set(iterators) == {"a", "b"}
    clock.now = 900  # "a" is 15 minutes old: dropped as the next one comes
    iterators["c"] = 3
    assert set(iterators) == {"b", "c"}
    clock.now = 10_000
    iterators["d"] = 4
    assert set(iterators) == {"d"}  # the map holds at most ttl_s of iterators


def test_reading_an_unknown_or_expired_iterator_is_expired_iterator_exception() -> None:
    class Backend(DynamoDBStreamsBackend):
        get_records = expiring_get_records(DynamoDBStreamsBackend.get_records)

    backend = Backend("us-east-1", "123456789012")
    with mock_aws():
        boto3.client("dynamodb", region_name="us-east-1")  # a region for moto's backends
        with pytest.raises(Exception) as caught:
            backend.get_records(
                "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/x|1|gone", 10
            )
    assert getattr(caught.value, "error_type", None) == "ExpiredIteratorException"
    assert not isinstance(caught.value, (KeyError, ClientError))
