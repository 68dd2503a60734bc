"""Verify of the ``active-active`` pipeline (contracts: :mod:`xrh.active_active`).

Both regions' ``{prefix}-items`` tables are scanned and compared by the table pipelines'
machinery (:mod:`verify.tables.store`, settling while they converge), each key is held against
the ledger's last-writer-wins winner, and both regions' ``{prefix}-staging`` streams are read
for ping-pong and forwarding lag. Entry point: :func:`verify.active.run.run_active_verify`,
called by :func:`verify.runner.run_verify`. Nothing here imports from ``replicator``.
"""
