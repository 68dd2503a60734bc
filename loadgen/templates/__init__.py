"""The Kinesis Data Generator's template language, compiled once and rendered fast.

Public API::

    compile_template(text) -> Template          # TemplateError before any load
    Template.bind(rng=..., producer=...) -> Renderer;  Renderer.render(key, trace, now_ms)
    DEFAULT_TEMPLATE, DEFAULT_TEMPLATE_SECONDS, load_template_option("@file" | text)
"""

from loadgen.templates.compiler import (
    DEFAULT_TEMPLATE,
    DEFAULT_TEMPLATE_SECONDS,
    Renderer,
    Template,
    compile_template,
    load_template_option,
)
from loadgen.templates.helpers import helper_names

__all__ = [
    "DEFAULT_TEMPLATE",
    "DEFAULT_TEMPLATE_SECONDS",
    "Renderer",
    "Template",
    "compile_template",
    "helper_names",
    "load_template_option",
]
