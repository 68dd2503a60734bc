"""A lease fence's last word before a request leaves: botocore's ``before-send`` event.

A sink given ``guard`` (a fence's ``check``) runs it once more after the request was built and
signed and before any byte leaves (:mod:`replicator.core.fence`), so a process paused while
building a request cannot send it after its lease was taken. If the guard raises, nothing is
sent and its error propagates as it is; every other failure of the call is translated into the
replicator's errors (never raw botocore). The guard is per thread: one client can serve several
writers at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from replicator.errors import ReplicatorError, SinkError

T = TypeVar("T")


class SendGuard:
    """Runs the calling thread's guard in ``event`` (e.g. ``before-send.kinesis.PutRecords``)
    of ``client``; a client without botocore events (a test double) is called unguarded."""

    def __init__(self, client: Any, event: str) -> None:
        self._local = threading.local()
        events = getattr(getattr(client, "meta", None), "events", None)
        if events is not None:
            events.register(event, self._before_send)

    def _before_send(self, **kwargs: Any) -> None:
        check = getattr(self._local, "check", None)
        if check is not None:
            check()
        return None  # botocore sends the request

    def call(
        self,
        guard: Callable[[], object] | None,
        send: Callable[[], T],
        translate: Callable[[BaseException], SinkError],
    ) -> T:
        """``send()`` with ``guard`` armed for this thread; its failures translated."""
        self._local.check = guard
        try:
            return send()
        except ReplicatorError:
            raise  # the guard refused at the last moment: nothing was sent
        except Exception as exc:  # every failure of the call is classified, none escapes raw
            raise translate(exc) from exc
        finally:
            self._local.check = None
