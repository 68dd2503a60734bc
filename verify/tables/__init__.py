"""Verify for table pipelines (``dynamodb``; ``xrh verify --table``): region A's table, its
stream and the ledger held against region B's table.

- :mod:`verify.tables.stream_reader`: DynamoDB Streams, every shard, parents first;
- :mod:`verify.tables.store`: items, changes and ledger in SQLite, chunk digests;
- :mod:`verify.tables.collect`: scans, stream, settling on the differing keys;
- :mod:`verify.tables.evidence`: ledger, bootstrap row, the replicator's apply lag;
- :mod:`verify.tables.checks`: lost, phantom, stale, diverged;
- :mod:`verify.tables.run`: the entry points and the report.
"""
