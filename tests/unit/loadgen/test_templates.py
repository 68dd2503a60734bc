"""The template language against the Kinesis Data Generator's documented helpers."""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter

import pytest

from loadgen.errors import TemplateError
from loadgen.templates import (
    DEFAULT_TEMPLATE,
    DEFAULT_TEMPLATE_SECONDS,
    compile_template,
    load_template_option,
)

NOW_MS = 1_636_505_310_123  # 2021-11-10T00:48:30.123Z


def render(
    text: str, *, seed: int = 1, key: int = 7, trace: str = "p-000000001", now: int = NOW_MS
):
    r = compile_template(text).bind(rng=random.Random(seed), producer="p")
    return json.loads(r.render(key, trace, now))


def values(text: str, n: int = 2000, seed: int = 3) -> list:
    r = compile_template(text).bind(rng=random.Random(seed))
    return [json.loads(r.render(1, "t-1", NOW_MS + i))["v"] for i in range(n)]


def test_default_template_is_designs_payload_with_milliseconds():
    out = render(DEFAULT_TEMPLATE, key=3174940031, trace="w0u3-000000042")
    assert out == {
        "key": 3174940031,
        "commitTimestamp": "2021-11-10T00:48:30.123Z",
        "trace": "w0u3-000000042",
    }


def test_date_utc_prints_whole_seconds_like_the_data_generator():
    assert render(DEFAULT_TEMPLATE_SECONDS)["commitTimestamp"] == "2021-11-10T00:48:30Z"


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("YYYY-MM-DD", "2021-11-10"),
        ("YYYY-MM-DDTHH:mm:ss.SSS[Z]", "2021-11-10T00:48:30.123Z"),
        ("DD/MM/YY hh:mm A", "10/11/21 12:48 AM"),
        ("x", str(NOW_MS)),
        ("X", str(NOW_MS // 1000)),
        ("MMMM Do, dddd", "November 10th, Wednesday"),
    ],
)
def test_date_utc_with_moment_formats(fmt: str, expected: str):
    assert render('{"v": "{{date.utc("' + fmt + '")}}"}')["v"] == expected


def test_date_now_is_local_time_with_offset():
    text = render('{"v": "{{date.now}}"}')["v"]
    assert len(text) == len("2021-11-10T00:48:30+00:00") and text[19] in "+-"
    assert render('{"v": "{{date.now("YYYY")}}"}')["v"] in ("2021", "2020")


def test_random_number_max_is_inclusive_and_min_defaults_to_zero():
    seen = Counter(values('{"v": {{random.number(3)}}}'))
    assert set(seen) == {0, 1, 2, 3}


def test_random_number_min_max_object():
    vs = values('{"v": {{random.number({"min": 10, "max": 12})}}}')
    assert set(vs) == {10, 11, 12}


def test_random_number_precision_gives_decimals_in_range():
    vs = values('{"v": {{random.number({"min": 1, "max": 2, "precision": 0.01})}}}')
    assert all(1 <= v <= 2 for v in vs) and any(v != int(v) for v in vs)


def test_array_element_and_weighted_array_element():
    assert set(values('{"v": "{{random.arrayElement(["OK","FAIL","WARN"])}}"}')) == {
        "OK",
        "FAIL",
        "WARN",
    }
    counts = Counter(
        values(
            '{"v": "{{random.weightedArrayElement({"weights":[0.3,0.2,0.5],"data":["cat","fish","dog"]})}}"}',
            n=20000,
        )
    )
    assert abs(counts["cat"] / 20000 - 0.3) < 0.02
    assert abs(counts["fish"] / 20000 - 0.2) < 0.02
    assert abs(counts["dog"] / 20000 - 0.5) < 0.02


def test_uuid_is_a_version_4_uuid():
    v = render('{"v": "{{random.uuid}}"}')["v"]
    assert uuid.UUID(v).version == 4


@pytest.mark.parametrize(
    "helper",
    [
        "name.firstName", "name.lastName", "name.findName", "name.jobTitle",
        "internet.email", "internet.ip", "internet.userName", "internet.url",
        "address.city", "address.country", "address.zipCode", "address.streetAddress",
        "commerce.productName", "commerce.price", "commerce.department",
        "company.companyName", "lorem.sentence", "lorem.words", "phone.phoneNumber",
        "finance.amount", "finance.currencyCode", "random.boolean", "random.alphaNumeric(8)",
    ],
)  # fmt: skip
def test_faker_helpers_render_non_empty_strings(helper: str):
    v = render('{"v": "{{' + helper + '}}"}')["v"]
    assert isinstance(v, str) and v


def test_seed_makes_rendering_reproducible_and_differs_across_seeds():
    text = '{"v": "{{name.firstName}} {{random.number(1000000)}} {{random.uuid}}"}'
    assert values(text, 50, seed=5) == values(text, 50, seed=5)
    assert values(text, 50, seed=5) != values(text, 50, seed=6)


def test_trace_is_added_to_a_template_without_one():
    out = render('{"key": {{random.number(10000000000)}}, "commitTimestamp": "{{date.utc}}"}')
    assert out["trace"] == "p-000000001" and out["commitTimestamp"] == "2021-11-10T00:48:30Z"


def test_single_quoted_and_javascript_literals_in_arguments():
    assert render("{\"v\": \"{{random.arrayElement(['a', 'a'])}}\"}")["v"] == "a"
    assert render('{"v": {{random.arrayElement([true, true])}}}')["v"] is True


@pytest.mark.parametrize(
    ("text", "helper", "line", "column", "words"),
    [
        ('{"a": {{random.numbr(5)}}}', "random.numbr", 1, 7, "did you mean random.number"),
        ('{"a": 1,\n "b": {{name.firstNam}}}', "name.firstNam", 2, 7, "unknown helper"),
        ('{"a": {{random.number("x")}}}', "random.number", 1, 7, "must be a number"),
        ('{"a": {{random.number({"min": 5, "max": 1})}}}', "random.number", 1, 7, "below min"),
        ('{"a": {{random.number(3}}}', "random.number", 1, 7, "unbalanced"),
        ('{"a": {{random.arrayElement([])}}}', "random.arrayElement", 1, 7, "non-empty"),
        ('{"a": {{random.number(3) }', "random.number", 1, 7, "expected '}}'"),
    ],
)
def test_errors_name_the_helper_and_its_position(text, helper, line, column, words):
    with pytest.raises(TemplateError) as info:
        compile_template(text)
    err = info.value
    assert (err.helper, err.line, err.column) == (helper, line, column)
    assert words in str(err) and f"line {line}, column {column}" in str(err)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "empty"),
        ("plain text", "JSON object"),
        ('{"a": {{name.firstName}}}', "not valid JSON"),
        ('{"a": 1}}', "without an opening"),
    ],
)
def test_malformed_templates_are_refused(text: str, words: str):
    with pytest.raises(TemplateError, match=words):
        compile_template(text)


def test_template_option_reads_a_file(tmp_path):
    path = tmp_path / "t.json"
    path.write_text('{"v": {{key}}}')
    assert load_template_option(f"@{path}") == '{"v": {{key}}}'
    assert load_template_option("") == DEFAULT_TEMPLATE
    with pytest.raises(TemplateError, match="cannot read"):
        load_template_option(f"@{tmp_path / 'missing'}")
