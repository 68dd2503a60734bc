"""Errors of the harness plumbing (configuration, endpoint, provisioning, run directory).

Exception tree::

    HarnessError                      base; the CLI prints its message on one line
    ├── UsageError                    bad flag, value or combination: exit code 3
    ├── EndpointError                 the embedded endpoint could not start or answer
    └── ProvisionError                a resource could not be created, found or removed

Everything a user can cause is a ``UsageError`` with a message that names the flag or
environment variable and the offending value, so the CLI never shows a traceback for it.
"""

from __future__ import annotations

EXIT_VALID = 0
EXIT_INVALID = 1
EXIT_UNKNOWN = 2
EXIT_USAGE = 3


class HarnessError(Exception):
    """Base class; ``exit_code`` is what the command line exits with."""

    exit_code = EXIT_UNKNOWN


class UsageError(HarnessError):
    """A user's mistake in flags, environment or files: exit code 3, one line, no traceback."""

    exit_code = EXIT_USAGE


class EndpointError(HarnessError):
    """The embedded endpoint failed to start, answer or stop."""


class ProvisionError(HarnessError):
    """Creating, finding or deleting an AWS resource failed."""
