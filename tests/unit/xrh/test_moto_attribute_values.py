"""The one-step AttributeValue serialization (xrh.endpoint.moto_patches) writes exactly what
moto's generic serializer writes, for every member type, in DynamoDB and DynamoDB Streams
answers; the patch is built on a subclass here, so this process's moto stays unpatched."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from moto.core.responses import get_service_model
from moto.core.serialize import JSONSerializer, XFormedAttributePicker

from xrh.endpoint.moto_patches import attribute_value_wire, fast_attribute_values


class FastSerializer(JSONSerializer):
    _serialize_type_structure = fast_attribute_values(JSONSerializer)


ITEM = {
    "pk": {"S": "k1"},
    "n": {"N": "12.5"},
    "b": {"B": b"\x00\x01bin"},
    "ss": {"SS": ["a", "b"]},
    "ns": {"NS": ["1", "2"]},
    "bs": {"BS": [b"x", b"y"]},
    "t": {"BOOL": True},
    "z": {"NULL": True},
    "empty": {"S": ""},
    "m": {"M": {"inner": {"L": [{"S": "x"}, {"N": "1"}, {"M": {"deep": {"B": b"q"}}}]}}},
}


def _body(cls: type, service: str, operation: str, result: dict) -> dict:
    model = get_service_model(service).operation_model(operation)
    serializer = cls(operation_model=model, value_picker=XFormedAttributePicker())
    return json.loads(serializer.serialize(result)["body"])


@pytest.mark.parametrize("cls", [JSONSerializer, FastSerializer])
def test_scan_answer_is_the_same_either_way(cls: type) -> None:
    result = {"Count": 2, "ScannedCount": 2, "Items": [ITEM, {"pk": {"S": "k2"}}],
              "LastEvaluatedKey": {"pk": {"S": "k2"}}}  # fmt: skip
    assert _body(cls, "dynamodb", "Scan", result) == _body(
        JSONSerializer, "dynamodb", "Scan", result
    )


def test_stream_records_are_the_same_either_way() -> None:
    record = {
        "eventID": "e1", "eventName": "MODIFY", "eventSource": "aws:dynamodb",
        "eventVersion": "1.0", "awsRegion": "us-east-1",
        "dynamodb": {"StreamViewType": "NEW_AND_OLD_IMAGES",
                     "ApproximateCreationDateTime": datetime(2021, 11, 10, tzinfo=UTC),
                     "SequenceNumber": "7", "SizeBytes": 10, "Keys": {"pk": {"S": "k1"}},
                     "NewImage": ITEM, "OldImage": {"pk": {"S": "k1"}, "v": {"N": "1"}}},
    }  # fmt: skip
    result = {"NextShardIterator": "it", "Records": [record]}
    fast = _body(FastSerializer, "dynamodbstreams", "GetRecords", result)
    assert fast == _body(JSONSerializer, "dynamodbstreams", "GetRecords", result)
    assert fast["Records"][0]["dynamodb"]["NewImage"]["n"] == {"N": "12.5"}


def test_unknown_shapes_fall_back_to_the_generic_path() -> None:
    assert attribute_value_wire(None, {"X": 1}) is None
    assert attribute_value_wire(None, {}) is None
    assert attribute_value_wire(None, "not a dict") is None  # type: ignore[arg-type]
