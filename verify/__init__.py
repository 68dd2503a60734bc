"""verify: read both regions, hold them against the ledger, and report.

Public API (imported lazily so ``import verify`` costs nothing)::

    run_verify(run_dir, config, *, fatal_duplicates=False, timeout_s=300.0, progress=True,
               tolerance_ms=0) -> VerifyResult
    print_summary(report) -> None       # the short terminal summary

verify imports nothing from ``replicator``: the judge stays independent of what it judges.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from verify.report import print_summary
    from verify.runner import VerifyResult, run_verify

__all__ = ["VerifyResult", "print_summary", "run_verify"]


def __getattr__(name: str) -> Any:
    if name in ("run_verify", "VerifyResult"):
        from verify import runner

        return getattr(runner, name)
    if name == "print_summary":
        from verify.report import print_summary

        return print_summary
    raise AttributeError(f"module 'verify' has no attribute {name!r}")
