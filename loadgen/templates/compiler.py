"""Compile a template once into a fast render function per producer.

:func:`compile_template` parses the text, resolves every helper, checks every helper's
arguments and renders one trial record (which must be a JSON object, because verify identifies
records by their ``trace`` field). A template without ``{{trace}}`` gets one added as the last
field. :meth:`Template.bind` then builds a :class:`Renderer` with its own seeded random source,
as straight-line generated code: no parsing or lookups per record.
"""

from __future__ import annotations

import difflib
import json
import random as _random
from collections.abc import Callable
from dataclasses import dataclass

from loadgen.errors import TemplateError
from loadgen.templates.helpers import HelperEnv, Render, builder_for, helper_names
from loadgen.templates.parser import Call, Literal, Segment, parse

#: DESIGN.md's payload: the keyspace key, a millisecond UTC commit timestamp and the trace.
DEFAULT_TEMPLATE = (
    '{"key": {{key}}, "commitTimestamp": "{{date.utc("YYYY-MM-DDTHH:mm:ss.SSS[Z]")}}", '
    '"trace": "{{trace}}"}'
)
#: The same with whole seconds, as the Kinesis Data Generator's ``{{date.utc}}`` prints.
DEFAULT_TEMPLATE_SECONDS = (
    '{"key": {{key}}, "commitTimestamp": "{{date.utc}}", "trace": "{{trace}}"}'
)

_TRACE_FIELD = [Literal(', "trace": "'), Call("trace", (), 0, 0), Literal('"')]


@dataclass(frozen=True, slots=True)
class Renderer:
    """Renders records for one producer: ``render(key, trace, now_ms) -> str``."""

    render: Render
    source: str


@dataclass(frozen=True, slots=True)
class Template:
    text: str
    segments: tuple[Segment, ...]

    def bind(self, *, rng: _random.Random | None = None, producer: str = "p0") -> Renderer:
        env = HelperEnv(rng=rng or _random.Random(), producer=producer)
        namespace: dict[str, object] = {}
        parts: list[str] = []
        for i, seg in enumerate(self.segments):
            if isinstance(seg, Literal):
                parts.append(repr(seg.text))
            else:
                namespace[f"h{i}"] = _build(seg, env)
                parts.append(f"h{i}(k, t, n)")
        body = " + ".join(parts) if parts else "''"
        source = f"def render(k, t, n):\n    return {body}\n"
        exec(compile(source, "<template>", "exec"), namespace)  # noqa: S102 - our own code
        render: Callable[[int, str, int], str] = namespace["render"]  # type: ignore[assignment]
        return Renderer(render, source)


def _build(call: Call, env: HelperEnv) -> Render:
    builder = builder_for(call.name)
    if builder is None:
        close = difflib.get_close_matches(call.name, helper_names(), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise TemplateError(
            f"unknown helper {call.name}{hint}", helper=call.name, line=call.line,
            column=call.column,
        )  # fmt: skip
    try:
        return builder(call.args, env)
    except (ValueError, TypeError) as exc:
        raise TemplateError(
            f"{call.name}: {exc}", helper=call.name, line=call.line, column=call.column
        ) from None


def compile_template(text: str) -> Template:
    """Parse and check ``text``; TemplateError (with helper and position) on any fault."""
    if not text.strip():
        raise TemplateError("the template is empty")
    segments = parse(text)
    has_trace = any(isinstance(s, Call) and s.name == "trace" for s in segments)
    if not has_trace:
        last = segments[-1]
        if not (isinstance(last, Literal) and last.text.rstrip().endswith("}")):
            raise TemplateError(
                "the template must render a JSON object (verify identifies records by their "
                '"trace" field); end it with }, or add "trace": "{{trace}}" yourself'
            )
        body = last.text.rstrip()
        tail = last.text[len(body) :]
        segments = [*segments[:-1], Literal(body[:-1]), *_TRACE_FIELD, Literal("}" + tail)]
    template = Template(text, tuple(_merge(segments)))
    trial = template.bind(rng=_random.Random(0), producer="check").render(
        1, "check-000000001", 1_700_000_000_000
    )
    try:
        payload = json.loads(trial)
    except ValueError as exc:
        raise TemplateError(
            f"the rendered record is not valid JSON ({exc.args[0]}): {trial[:200]!r}; "
            'quote string helpers, as in "{{name.firstName}}"'
        ) from None
    if not isinstance(payload, dict) or payload.get("trace") != "check-000000001":
        raise TemplateError(
            'the rendered record must be a JSON object whose "trace" field is "{{trace}}", '
            f"got {trial[:200]!r}"
        )
    return template


def _merge(segments: list[Segment]) -> list[Segment]:
    out: list[Segment] = []
    for seg in segments:
        if isinstance(seg, Literal) and not seg.text:
            continue
        if isinstance(seg, Literal) and out and isinstance(out[-1], Literal):
            out[-1] = Literal(out[-1].text + seg.text)
        else:
            out.append(seg)
    return out


def load_template_option(value: str | None) -> str:
    """The ``--template`` option: inline text, ``@path`` to read a file, empty for the default."""
    if not value:
        return DEFAULT_TEMPLATE
    if value.startswith("@"):
        path = value[1:]
        try:
            with open(path, encoding="utf-8") as handle:
                return handle.read()
        except OSError as exc:
            raise TemplateError(f"--template {value}: cannot read {path}: {exc.strerror}") from None
    return value
