"""Errors of the load generator.

Exception tree::

    LoadgenError                     base of everything loadgen raises
    ├── LoadgenUsageError            bad option value (also an xrh UsageError: exit code 3)
    │   └── TemplateError            unknown helper, bad arguments, malformed template; names the
    │                                helper and its line and column
    ├── LedgerError                  the ledger could not be written or completed
    └── OrchestrationError           endpoint, provisioning or replicator failed around a run

A ``TemplateError`` is raised while compiling, before any load starts, so a typo in a template
never produces a run full of garbage.
"""

from __future__ import annotations

from xrh.errors import HarnessError, UsageError


class LoadgenError(HarnessError):
    """Base class of the load generator's errors."""


class LoadgenUsageError(LoadgenError, UsageError):
    """A user's mistake in an option: the message names the option and the value."""


class TemplateError(LoadgenUsageError):
    """A template that cannot be compiled. ``helper``, ``line`` and ``column`` (1-based) locate
    the fault when there is one."""

    def __init__(
        self,
        message: str,
        *,
        helper: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        where = f"template line {line}, column {column}: " if line is not None else "template: "
        super().__init__(where + message)
        self.helper = helper
        self.line = line
        self.column = column


class LedgerError(LoadgenError):
    """The ledger could not be written, or not every producer's final batch arrived."""


class OrchestrationError(LoadgenError):
    """Starting or stopping a run's parts (endpoint, provisioning, replicator) failed."""
