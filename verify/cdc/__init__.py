"""verify for the ``postgres-cdc`` pipeline: the ledger's statements held against region A's and
region B's ``{prefix}-cdc`` change streams (AWS DMS's record shape) and the source table's final
state in PostgreSQL.

:func:`verify.cdc.run.run_cdc_verify` is the entry point (:func:`verify.runner.run_verify`
dispatches to it); :mod:`~verify.cdc.records` parses and identifies change records,
:mod:`~verify.cdc.store` keeps them (beside the kinesis pipeline's tables, whose A-to-B checks
apply unchanged), :mod:`~verify.cdc.sources` reads the ledger, the table and the capture's lag,
:mod:`~verify.cdc.checks` judges, :mod:`~verify.cdc.html` draws the page.
"""
