"""moment.js format strings (what ``date.now("...")`` takes in the Kinesis Data Generator).

A format is compiled once into a function of an aware datetime; ``[text]`` is literal text,
as in moment. Formatters cache their last answer per second (or per millisecond when the format
shows milliseconds), so formatting costs nothing for most records.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

#: ``date.utc`` with no format: whole seconds, as the Kinesis Data Generator prints it.
UTC_DEFAULT = "YYYY-MM-DDTHH:mm:ss[Z]"
#: ``date.now`` with no format: moment's default ``format()``, local time with offset.
NOW_DEFAULT = "YYYY-MM-DDTHH:mm:ssZ"

_TOKEN = re.compile(
    r"\[[^\]]*\]|YYYY|YY|MMMM|MMM|MM|Mo|M|DDDD|DDD|DD|Do|D|dddd|ddd|dd|d|HH|H|hh|h|kk|k|"
    r"mm|m|ss|s|SSS|SS|S|A|a|ZZ|Z|X|x|Q|E|e|.",
    re.S,
)
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"]  # fmt: skip
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def _ordinal(n: int) -> str:
    if 10 <= n % 100 <= 20:
        return f"{n}th"
    return f"{n}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th') }"


def _offset(d: datetime, sep: str) -> str:
    off = d.utcoffset() or timedelta(0)
    minutes = int(off.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return f"{sign}{minutes // 60:02d}{sep}{minutes % 60:02d}"


_FIELDS: dict[str, Callable[[datetime], str]] = {
    "YYYY": lambda d: f"{d.year:04d}",
    "YY": lambda d: f"{d.year % 100:02d}",
    "MMMM": lambda d: _MONTHS[d.month - 1],
    "MMM": lambda d: _MONTHS[d.month - 1][:3],
    "MM": lambda d: f"{d.month:02d}",
    "Mo": lambda d: _ordinal(d.month),
    "M": lambda d: str(d.month),
    "DDDD": lambda d: f"{d.timetuple().tm_yday:03d}",
    "DDD": lambda d: str(d.timetuple().tm_yday),
    "DD": lambda d: f"{d.day:02d}",
    "Do": lambda d: _ordinal(d.day),
    "D": lambda d: str(d.day),
    "dddd": lambda d: _DAYS[d.weekday()],
    "ddd": lambda d: _DAYS[d.weekday()][:3],
    "dd": lambda d: _DAYS[d.weekday()][:2],
    "d": lambda d: str((d.weekday() + 1) % 7),
    "E": lambda d: str(d.isoweekday()),
    "e": lambda d: str((d.weekday() + 1) % 7),
    "Q": lambda d: str((d.month - 1) // 3 + 1),
    "HH": lambda d: f"{d.hour:02d}",
    "H": lambda d: str(d.hour),
    "hh": lambda d: f"{(d.hour % 12) or 12:02d}",
    "h": lambda d: str((d.hour % 12) or 12),
    "kk": lambda d: f"{d.hour or 24:02d}",
    "k": lambda d: str(d.hour or 24),
    "mm": lambda d: f"{d.minute:02d}",
    "m": lambda d: str(d.minute),
    "ss": lambda d: f"{d.second:02d}",
    "s": lambda d: str(d.second),
    "SSS": lambda d: f"{d.microsecond // 1000:03d}",
    "SS": lambda d: f"{d.microsecond // 10000:02d}",
    "S": lambda d: str(d.microsecond // 100000),
    "A": lambda d: "AM" if d.hour < 12 else "PM",
    "a": lambda d: "am" if d.hour < 12 else "pm",
    "ZZ": lambda d: _offset(d, ""),
    "Z": lambda d: _offset(d, ":"),
    "X": lambda d: str(int(d.timestamp())),
    "x": lambda d: str(int(d.timestamp() * 1000)),
}
_SUB_SECOND = {"SSS", "SS", "S", "x"}


def compile_format(fmt: str, *, utc: bool) -> Callable[[int], str]:
    """A function from epoch milliseconds to ``fmt`` in UTC or local time, cached."""
    parts: list[str | Callable[[datetime], str]] = []
    fine = False
    for match in _TOKEN.finditer(fmt):
        token = match.group(0)
        if token.startswith("[") and token.endswith("]"):
            parts.append(token[1:-1])
        elif token in _FIELDS:
            parts.append(_FIELDS[token])
            fine = fine or token in _SUB_SECOND
        else:
            parts.append(token)
    granularity = 1 if fine else 1000
    cache: list[object] = [None, ""]

    def fmt_ms(epoch_ms: int) -> str:
        bucket = epoch_ms // granularity
        if cache[0] == bucket:
            return cache[1]  # type: ignore[return-value]
        d = datetime.fromtimestamp(bucket * granularity / 1000, UTC)
        if not utc:
            d = d.astimezone()
        text = "".join(p if isinstance(p, str) else p(d) for p in parts)
        cache[0], cache[1] = bucket, text
        return text

    return fmt_ms
