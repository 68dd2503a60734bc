"""The helpers a template may call: the Kinesis Data Generator's own, faker.js's, and ours.

Each helper is a builder: given the call's arguments and a :class:`HelperEnv` (the seeded random
source, the Faker instance, the clock), it checks the arguments and returns a function of the
record ``(key, trace, now_ms) -> str``. Builders run once per producer, renderers once per
record. faker.js names map onto Python Faker (:mod:`loadgen.templates.faker_map`).

Ours: ``{{key}}`` (the keyspace key, also the partition key), ``{{trace}}`` (the record's
identity, ``<producer>-<seq>``) and ``{{producer}}``.
"""

from __future__ import annotations

import json
import random as _random
import uuid
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

from loadgen.templates.faker_map import FAKER_HELPERS
from loadgen.templates.moment import NOW_DEFAULT, UTC_DEFAULT, compile_format

Render = Callable[[int, str, int], str]


@dataclass(slots=True)
class HelperEnv:
    rng: _random.Random
    producer: str = "p0"
    _faker: Any = field(default=None)
    seed: int | None = None

    @property
    def faker(self) -> Any:
        if self._faker is None:
            from faker import Faker

            self._faker = Faker()
            self._faker.seed_instance(self.rng.getrandbits(64))
        return self._faker


def text_of(value: Any) -> str:
    """How the Kinesis Data Generator prints a value: strings raw, numbers as JavaScript does,
    everything else as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if value is None:
        return "null"
    return json.dumps(value, separators=(",", ":"))


def _need(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(message)


def _num(value: Any, what: str) -> float:
    _need(
        isinstance(value, int | float) and not isinstance(value, bool),
        f"{what} must be a number, got {value!r}",
    )
    return value


# ------------------------------------------------------------------------------- random.*


def _random_number(args: tuple, env: HelperEnv) -> Render:
    low, high, precision = 0, 99999, 1
    if len(args) == 1 and isinstance(args[0], dict):
        opts = args[0]
        unknown = set(opts) - {"min", "max", "precision"}
        _need(not unknown, f"unknown option(s) {sorted(unknown)}; use min, max, precision")
        low = _num(opts.get("min", 0), "min")
        high = _num(opts.get("max", 99999), "max")
        precision = _num(opts.get("precision", 1), "precision")
    elif len(args) == 1:
        high = _num(args[0], "max")
    elif len(args) == 2:
        low, high = _num(args[0], "min"), _num(args[1], "max")
    else:
        _need(not args, 'takes a max, or {"min": a, "max": b}')
    _need(high >= low, f"max ({high}) is below min ({low})")
    _need(precision > 0, f"precision must be positive, got {precision}")
    rng = env.rng
    if precision == 1 and float(low).is_integer() and float(high).is_integer():
        lo, hi = int(low), int(high)
        randint = rng.randint  # both ends included, as faker.js's random.number
        return lambda k, t, n: str(randint(lo, hi))
    steps = int((high - low) / precision)
    decimals = max(0, len(repr(float(precision)).split(".")[1].rstrip("0")))

    def render(k: int, t: str, n: int) -> str:
        return text_of(round(low + rng.randint(0, steps) * precision, decimals))

    return render


def _array_element(args: tuple, env: HelperEnv) -> Render:
    _need(len(args) == 1 and isinstance(args[0], list) and args[0], "takes one non-empty array")
    items = [text_of(v) for v in args[0]]
    choice = env.rng.choice
    return lambda k, t, n: choice(items)


def _array_elements(args: tuple, env: HelperEnv) -> Render:
    _need(
        1 <= len(args) <= 2 and isinstance(args[0], list) and args[0],
        "takes an array and an optional count",
    )
    items = args[0]
    count = args[1] if len(args) == 2 else None
    _need(
        count is None or (isinstance(count, int) and 0 <= count <= len(items)),
        f"count must be 0..{len(items)}",
    )
    rng = env.rng

    def render(k: int, t: str, n: int) -> str:
        c = count if count is not None else rng.randint(1, len(items))
        return text_of(rng.sample(items, c))

    return render


def _weighted(args: tuple, env: HelperEnv) -> Render:
    _need(len(args) == 1 and isinstance(args[0], dict), 'takes {"weights": [...], "data": [...]}')
    weights, data = args[0].get("weights"), args[0].get("data")
    _need(
        isinstance(weights, list) and isinstance(data, list) and data,
        "needs weights and data arrays",
    )
    _need(len(weights) == len(data), f"{len(weights)} weights for {len(data)} data items")
    for w in weights:
        _need(_num(w, "a weight") >= 0, f"weights must not be negative, got {w}")
    total = sum(weights)
    _need(total > 0, "weights add up to zero")
    cum = list(accumulate(w / total for w in weights))
    items = [text_of(v) for v in data]
    rand = env.rng.random
    last = len(items) - 1
    return lambda k, t, n: items[min(bisect_left(cum, rand()), last)]


def _uuid(args: tuple, env: HelperEnv) -> Render:
    bits = env.rng.getrandbits
    return lambda k, t, n: str(uuid.UUID(int=bits(128), version=4))


def _boolean(args: tuple, env: HelperEnv) -> Render:
    rand = env.rng.random
    return lambda k, t, n: "true" if rand() < 0.5 else "false"


def _alpha_numeric(args: tuple, env: HelperEnv) -> Render:
    count = args[0] if args else 1
    _need(isinstance(count, int) and 0 <= count <= 10000, "takes a length 0..10000")
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    choices = env.rng.choices
    return lambda k, t, n: "".join(choices(alphabet, k=count))


def _float(args: tuple, env: HelperEnv) -> Render:
    return _random_number(args or ({"min": 0, "max": 99999, "precision": 0.01},), env)


# ------------------------------------------------------------------------------- date.*


def _date(utc: bool, default: str) -> Callable[[tuple, HelperEnv], Render]:
    def build(args: tuple, env: HelperEnv) -> Render:
        _need(len(args) <= 1, "takes at most a format string")
        fmt = args[0] if args else default
        _need(isinstance(fmt, str), f"the format must be a string, got {fmt!r}")
        fmt_ms = compile_format(fmt, utc=utc)
        return lambda k, t, n: fmt_ms(n)

    return build


def _sim_time(args: tuple, env: HelperEnv) -> Render:
    """The Kinesis Data Generator's simulated clock; here the record's own time (formatted)."""
    opts = args[0] if args else {}
    _need(isinstance(opts, dict), 'takes {"format": "...", "start": ...}')
    fmt = opts.get("format", NOW_DEFAULT)
    _need(isinstance(fmt, str), "format must be a string")
    fmt_ms = compile_format(fmt, utc=False)
    return lambda k, t, n: fmt_ms(n)


# ------------------------------------------------------------------------------- ours


def _no_args(fn: Callable[[int, str, int], str]) -> Callable[[tuple, HelperEnv], Render]:
    def build(args: tuple, env: HelperEnv) -> Render:
        _need(not args, "takes no arguments")
        return fn

    return build


def _producer(args: tuple, env: HelperEnv) -> Render:
    _need(not args, "takes no arguments")
    producer = env.producer
    return lambda k, t, n: producer


BUILTIN_HELPERS: dict[str, Callable[[tuple, HelperEnv], Render]] = {
    "random.number": _random_number,
    "random.float": _float,
    "random.uuid": _uuid,
    "random.arrayElement": _array_element,
    "random.arrayElements": _array_elements,
    "random.weightedArrayElement": _weighted,
    "random.boolean": _boolean,
    "random.alphaNumeric": _alpha_numeric,
    "datatype.number": _random_number,
    "datatype.uuid": _uuid,
    "datatype.boolean": _boolean,
    "date.now": _date(False, NOW_DEFAULT),
    "date.utc": _date(True, UTC_DEFAULT),
    "date.simTime": _sim_time,
    "key": _no_args(lambda k, t, n: str(k)),
    "trace": _no_args(lambda k, t, n: t),
    "producer": _producer,
}


def helper_names() -> list[str]:
    return sorted({*BUILTIN_HELPERS, *FAKER_HELPERS})


def builder_for(name: str) -> Callable[[tuple, HelperEnv], Render] | None:
    if name in BUILTIN_HELPERS:
        return BUILTIN_HELPERS[name]
    spec = FAKER_HELPERS.get(name)
    if spec is None:
        return None

    def build(args: tuple, env: HelperEnv) -> Render:
        call = spec(args)  # validates the arguments; returns fn(faker) -> value
        holder: list[Any] = []

        def render(k: int, t: str, n: int) -> str:
            if not holder:
                holder.append(env.faker)
            return text_of(call(holder[0]))

        return render

    return build
