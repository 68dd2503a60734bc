"""verify for the ``action-log`` pipeline: region A's actions stream folded per key into the
table it describes, and each region's ``{prefix}-items`` held against that fold.

:func:`verify.actions.run.run_action_verify` is the entry point (:func:`verify.runner.run_verify`
dispatches to it); :mod:`~verify.actions.fold` reads and folds the log, :mod:`~verify.actions.compare`
compares the tables (the table pipelines' chunk digests), :mod:`~verify.actions.checks` judges,
:mod:`~verify.actions.lag` reads the consumers' lag, :mod:`~verify.actions.html` draws the page,
:mod:`~verify.actions.stored` keeps a complete read to judge again when the endpoint is gone.
"""
