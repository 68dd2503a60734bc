"""verify: read both regions, hold them against the ledger, and report.

Two pipelines, one verdict (Jepsen's valid / invalid / unknown, :func:`verify.reconcile.decide`)
and the same report.json / report.html in the run directory:

- ``kinesis``: both regions' streams followed to their ends and settled, the records held
  against the ledger and the replicator's watermark claims (:mod:`verify.runner`,
  :mod:`verify.collect`, :mod:`verify.checks`); ``xrh verify --stream NAME`` compares two
  streams without a run.
- ``dynamodb``: both regions' tables scanned and compared by chunk digests, then key by key
  where a chunk differs, with A's table stream (DynamoDB Streams) ordering the versions, the
  ledger, the bootstrap copy's state row and the apply lag (:mod:`verify.tables`);
  ``xrh verify --table NAME [--table-b NAME]`` compares two tables without a run or ledger.

Public API (imported lazily so ``import verify`` costs nothing)::

    run_verify(run_dir, config, *, fatal_duplicates=False, timeout_s=300.0, progress=True,
               tolerance_ms=0) -> VerifyResult   # either pipeline, by config.pipeline
    verify_tables(run_dir, config, table_a, table_b=None, *, timeout_s) -> VerifyResult
    print_summary(report) -> None       # the short terminal summary

verify imports nothing from ``replicator``: the judge stays independent of what it judges.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from verify.report import print_summary
    from verify.runner import VerifyResult, run_verify
    from verify.tables.run import verify_tables

__all__ = ["VerifyResult", "print_summary", "run_verify", "verify_tables"]


def __getattr__(name: str) -> Any:
    if name in ("run_verify", "VerifyResult"):
        from verify import runner

        return getattr(runner, name)
    if name == "verify_tables":
        from verify.tables.run import verify_tables

        return verify_tables
    if name == "print_summary":
        from verify.report import print_summary

        return print_summary
    raise AttributeError(f"module 'verify' has no attribute {name!r}")
