"""Dead-letter objects: the data comes back byte for byte, and the reason with it."""

from __future__ import annotations

import base64
import json

from verify.dead_letters import parse_object


def test_declared_base64_is_decoded_even_when_it_looks_like_json() -> None:
    raw = bytes([0xD7, 0x6D, 0xF8])  # base64 "1234": also a valid JSON number
    body = json.dumps(
        [{"partitionKey": "7", "data": base64.b64encode(raw).decode(), "dataEncoding": "base64",
          "reason": "too_large", "sourceShardId": "shardId-000000000001", "sequenceNumber": "42"}]
    ).encode()  # fmt: skip
    (letter,) = parse_object(body, "s3://b/k.json")
    assert letter.data == raw and letter.reason == "too_large" and letter.partition_key == "7"


def test_undeclared_json_text_stays_text() -> None:
    body = json.dumps({"partitionKey": "1", "data": '{"key": 1}', "reason": "invalid"}).encode()
    (letter,) = parse_object(body, "s3://b/k.json")
    assert letter.data == b'{"key": 1}'


def test_unreadable_object_is_still_counted() -> None:
    (letter,) = parse_object(b"\xff\xfe not json", "s3://b/bad")
    assert letter.reason == "unparseable dead-letter object" and letter.data is None
