"""Stopping a child process for certain: SIGTERM, a bounded wait, then SIGKILL.

Every process the harness starts (region servers, the replicator) is stopped this way, so a
child that ignores SIGTERM or is paused (SIGSTOP) still never outlives the run.
"""

from __future__ import annotations

import os
import signal
import subprocess

STOP_TIMEOUT_S = 10.0


def stop_process(process: subprocess.Popen, timeout: float = STOP_TIMEOUT_S) -> int | None:
    """Stop ``process`` if it still runs; returns its exit code (None if it could not be reaped)."""
    if process.poll() is None:
        try:
            os.kill(process.pid, signal.SIGCONT)  # a paused process cannot act on SIGTERM
            process.terminate()
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                return None
        except ProcessLookupError:
            pass
    return process.poll()
