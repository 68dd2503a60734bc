"""Parse Kinesis Data Generator templates into literal text and helper calls.

A template is text with ``{{ helper }}`` or ``{{ helper(arguments) }}`` placeholders, where the
arguments are JavaScript literals as the Kinesis Data Generator's users write them (numbers,
strings, arrays, objects). Arguments are read as JSON first and as Python literals second (so
single-quoted strings work too). Every call keeps its 1-based line and column so errors can
point at it.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from typing import Any

from loadgen.errors import TemplateError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_JS_LITERALS = {"true": "True", "false": "False", "null": "None", "undefined": "None"}


@dataclass(frozen=True, slots=True)
class Literal:
    text: str


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    args: tuple[Any, ...]
    line: int
    column: int
    has_parens: bool = False


Segment = Literal | Call


def _position(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, column


def _closing_paren(text: str, start: int) -> int:
    """Index of the ``)`` matching the ``(`` at ``start - 1``, skipping quoted strings; -1."""
    depth = 1
    i = start
    quote: str | None = None
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                return i if ch == ")" else -1
        i += 1
    return -1


def _python_literal(source: str) -> str:
    """JavaScript words to Python words outside strings, for ast.literal_eval."""
    out: list[str] = []
    for token in re.split(r"(\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*')", source):
        if token.startswith(("'", '"')):
            out.append(token)
        else:
            out.append(
                re.sub(r"\b(true|false|null|undefined)\b", lambda m: _JS_LITERALS[m[1]], token)
            )
    return "".join(out)


def parse_args(source: str, name: str, line: int, column: int) -> tuple[Any, ...]:
    if not source.strip():
        return ()
    try:
        return tuple(json.loads(f"[{source}]"))
    except ValueError:
        pass
    try:
        value = ast.literal_eval(f"[{_python_literal(source)}]")
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise TemplateError(
            f"arguments of {name} are not literals: ({source})", helper=name, line=line,
            column=column,
        ) from None  # fmt: skip
    return tuple(value)


def parse(text: str) -> list[Segment]:
    """Split a template into segments; TemplateError names the position of any fault."""
    segments: list[Segment] = []
    pos = 0
    while True:
        start = text.find("{{", pos)
        if start < 0:
            if "}}" in text[pos:]:
                line, column = _position(text, text.index("}}", pos))
                raise TemplateError("'}}' without an opening '{{'", line=line, column=column)
            if pos < len(text):
                segments.append(Literal(text[pos:]))
            return _merge(segments)
        if start > pos:
            stray = text.find("}}", pos, start)
            if stray >= 0:
                line, column = _position(text, stray)
                raise TemplateError("'}}' without an opening '{{'", line=line, column=column)
            segments.append(Literal(text[pos:start]))
        line, column = _position(text, start)
        i = start + 2
        while i < len(text) and text[i].isspace():
            i += 1
        match = _NAME.match(text, i)
        if match is None:
            found = text[i : i + 20].split("}}")[0] or (
                "}}" if text.startswith("}}", i) else "end of template"
            )
            raise TemplateError(
                f"expected a helper name after '{{{{', found {found!r}", line=line, column=column
            )
        name = match.group(0)
        i = match.end()
        args: tuple[Any, ...] = ()
        has_parens = False
        if i < len(text) and text[i] == "(":
            close = _closing_paren(text, i + 1)
            if close < 0:
                raise TemplateError(
                    f"unbalanced parentheses or brackets in the arguments of {name}",
                    helper=name, line=line, column=column,
                )  # fmt: skip
            args = parse_args(text[i + 1 : close], name, line, column)
            has_parens = True
            i = close + 1
        while i < len(text) and text[i].isspace():
            i += 1
        if not text.startswith("}}", i):
            found = text[i : i + 20] or "end of template"
            raise TemplateError(
                f"expected '}}}}' to close {name}, found {found!r}",
                helper=name, line=line, column=column,
            )  # fmt: skip
        segments.append(Call(name, args, line, column, has_parens))
        pos = i + 2


def _merge(segments: list[Segment]) -> list[Segment]:
    out: list[Segment] = []
    for seg in segments:
        if isinstance(seg, Literal) and out and isinstance(out[-1], Literal):
            out[-1] = Literal(out[-1].text + seg.text)
        else:
            out.append(seg)
    return out
