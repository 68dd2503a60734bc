"""Builds a verify store directly, with records planted in source, target and ledger."""

from __future__ import annotations

import json

from verify.model import StoreSide, StreamRecord
from verify.store import Store
from xrh.contracts import iso_ms

T0 = 1_700_000_000_000


def payload(trace: str, key: int | str, commit_ms: int, **extra) -> bytes:
    body = {"key": key, "commitTimestamp": iso_ms(commit_ms), "trace": trace, **extra}
    return json.dumps(body).encode()


class Planted:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._seq = {StoreSide.SOURCE: {}, StoreSide.TARGET: {}}

    def put(
        self,
        side: StoreSide,
        trace: str,
        key: int,
        *,
        arrival: int,
        commit: int | None = None,
        shard: str = "shardId-000000000000",
        pk: str | None = None,
        data: bytes | None = None,
        generation: int = 0,
    ) -> str:
        seqs = self._seq[side]
        seqs[shard] = seqs.get(shard, 0) + 1
        seq = str(seqs[shard])
        self.store.add(
            side,
            StreamRecord(
                shard,
                generation,
                seq,
                pk if pk is not None else str(key),
                data if data is not None else payload(trace, key, commit or arrival),
                arrival,
            ),
        )
        return seq

    def read(
        self, region: str, trace: str, key: int, *, arrival: int, commit: int | None = None,
        shard: str = "shardId-000000000000", data: bytes | None = None,
    ) -> str:  # fmt: skip
        """A copy read in region ``'a'`` or ``'b'``; the store puts it on the source side if the
        ledger says the record was written there (Store.add_read)."""
        seqs = self._seq.setdefault(region, {})
        seqs[shard] = seqs.get(shard, 0) + 1
        seq = str(seqs[shard])
        self.store.add_read(
            region,
            StreamRecord(shard, 0, seq, str(key),
                         data if data is not None else payload(trace, key, commit or T0),
                         arrival),
        )  # fmt: skip
        return seq

    def both(self, trace: str, key: int, *, arrival: int, lag: int = 10, **kw) -> None:
        self.put(StoreSide.SOURCE, trace, key, arrival=arrival, **kw)
        self.put(StoreSide.TARGET, trace, key, arrival=arrival + lag, **kw)

    def ledger(
        self, trace: str, key: int, status: str = "ok", commit: int = T0, origin: str = "a"
    ) -> None:
        self.store.add_ledger_rows(
            [(trace, status, str(key), str(key), commit, None, None, origin)]
        )

    def done(self):
        self.store.finalize()
        return self.store.db
