"""Errors of the replicator package.

Exception tree::

    ReplicatorError                     base of everything the replicator raises
    ├── SinkError                       a whole PutRecords request failed (raised by a sink)
    │   ├── RetryableRequestError       throttled, 5xx: nothing written, send again later
    │   ├── TerminalRequestError        resource not found, access denied: retrying cannot help
    │   │   └── InvalidRequestError     validation: some record in the request is unacceptable
    │   └── UnknownOutcomeError         timeout, connection dropped: may or may not be written
    ├── CheckpointError                 the checkpoint store failed (retry the batch)
    │   └── CheckpointConflict          a condition failed: another writer is ahead (not an error
    │                                   for the data; the batch is still replicated)
    ├── ActiveRegionLookupError         the active-region table could not be read: fail the batch
    ├── LeaseLost                       our lease was taken: stop working the shard, write nothing
    ├── LeaseUnconfirmed                our lease could not be confirmed for a write in time
    │                                   (lease table error, slow renewal): retry the batch
    ├── DeadLetterError                 the dead-letter sink could not store a record
    ├── HandoverError                   the handover rows could not be read or written
    └── ReplicatorUsageError            bad option or environment (also an xrh UsageError in the
                                        CLI, exit code 3)

Adapters turn botocore exceptions into these with ``raise ... from exc``, so the core never
sees botocore. Partial failure of a PutRecords request is *not* an exception: it comes back as
per-entry results (DESIGN.md, "Rules").
"""

from __future__ import annotations


class ReplicatorError(Exception):
    """Base class of the replicator's errors."""


class SinkError(ReplicatorError):
    """A whole request failed. ``code`` is the service's error code when there is one."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class RetryableRequestError(SinkError):
    """Throttling or a server error: nothing was written; the same request may succeed later."""


class TerminalRequestError(SinkError):
    """The request can never succeed as it is (missing stream, no permission)."""


class InvalidRequestError(TerminalRequestError):
    """The service rejected the request's content (ValidationException): some record in it is
    unacceptable, so the sender bisects the request to find and dead-letter that record."""


class UnknownOutcomeError(SinkError):
    """The request may or may not have been applied (timeout, connection reset)."""


class CheckpointError(ReplicatorError):
    """Reading or writing a checkpoint failed."""


class CheckpointConflict(CheckpointError):
    """A conditional checkpoint write lost: the stored position is already at or past ours."""


class ActiveRegionLookupError(ReplicatorError):
    """The active-region table could not be read; the batch must fail and be retried."""


class LeaseLost(ReplicatorError):
    """The lease on a shard is no longer ours (stolen, expired, or released)."""


class LeaseUnconfirmed(ReplicatorError):
    """The lease could not be confirmed long enough for a write (the lease table failed or
    answered too late): the write is not made and the batch is retried; the shard is kept."""


class DeadLetterError(ReplicatorError):
    """A record could not be stored in the dead-letter sink; the batch must fail."""


class StreamDataLost(ReplicatorError):
    """Records of a shard were trimmed from the source stream before they were applied: reading
    the shard again cannot bring them back; only a new bootstrap copy of the target can."""


class HandoverError(ReplicatorError):
    """The handover rows (replicator.core.handover) could not be read or written."""


class ReplicatorUsageError(ReplicatorError, ValueError):
    """A bad option or environment variable; the message names it and the value."""
