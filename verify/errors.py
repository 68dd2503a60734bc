"""Errors of verify.

Exception tree::

    xrh.errors.HarnessError
    ├── xrh.errors.UsageError
    │   └── VerifyUsageError          bad flag or run directory: exit code 3
    └── VerifyError                   verify could not finish (exit code 2, verdict unknown)
        ├── EndpointUnreachable       a region's endpoint did not answer
        └── ReadIncomplete            a stream or table was not read to its end before the deadline

Anomalies in the data are never exceptions: they are results in the report.
"""

from __future__ import annotations

from xrh.errors import EXIT_UNKNOWN, HarnessError, UsageError


class VerifyUsageError(UsageError):
    """A user's mistake on the ``xrh verify`` command line or in the run directory."""


class VerifyError(HarnessError):
    """Verification could not be completed; the verdict is ``unknown``."""

    exit_code = EXIT_UNKNOWN


class EndpointUnreachable(VerifyError):
    """A region's endpoint refused or dropped the connection."""


class ReadIncomplete(VerifyError):
    """A reader hit its deadline before every shard (or segment) was read to the end."""
