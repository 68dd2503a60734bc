"""KCL-style leases on the embedded endpoint: conditional take, renew, steal of an expired lease,
release; and of many workers racing for one free lease, exactly one wins."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from replicator.adapters.leases import LeaseTable
from xrh.aws import AwsClients
from xrh.config import HarnessConfig, Side
from xrh.resources import ResourceNames

pytestmark = pytest.mark.functional
NOW = 1_700_000_000_000


def tables(config: HarnessConfig, *workers: str) -> list[LeaseTable]:
    client = AwsClients(config, max_pool_connections=16).client("dynamodb", Side.A)
    names = ResourceNames(config.prefix)
    return [LeaseTable(client, names.lease_table, names.stream, w) for w in workers]


def test_take_renew_steal_release(provisioned: HarnessConfig) -> None:
    one, two = tables(provisioned, "w1", "w2")
    assert one.take("shard-0", NOW, 1_000)
    assert not two.take("shard-0", NOW + 500, 1_000)  # held until NOW + 1000
    assert one.renew("shard-0", NOW + 900, 1_000, "42")  # held until NOW + 1900
    assert not two.take("shard-0", NOW + 1_500, 1_000)
    assert two.take("shard-0", NOW + 2_000, 1_000)  # expired: stolen
    assert not one.renew("shard-0", NOW + 2_100, 1_000, "43")  # the thief owns it now
    assert not one.release("shard-0", "43")
    lease = two.list()[0]["shard-0"]
    assert (lease.owner, lease.checkpoint) == ("w2", "42") and lease.counter == 3
    assert two.release("shard-0", "44")
    assert one.take("shard-0", NOW + 2_200, 1_000)  # released: free to take at once
    assert one.list()[0]["shard-0"].checkpoint == "44"


def test_a_renewal_whose_answer_was_lost_keeps_the_lease(provisioned: HarnessConfig) -> None:
    """The renewal was carried out (the counter moved) but its answer never came: the next
    renewal, made on the counter the worker last saw, still holds the lease; a stolen one not."""
    one, two = tables(provisioned, "w1", "w2")
    counter = one.take("shard-0", NOW, 1_000)
    assert counter is not None
    assert one.renew("shard-0", NOW + 100, 1_000, "1", counter) == counter + 1  # answer lost
    assert one.renew("shard-0", NOW + 200, 1_000, "2", counter) == counter + 2
    assert two.take("shard-0", NOW + 5_000, 1_000)  # expired: stolen
    assert one.renew("shard-0", NOW + 5_100, 1_000, "3", counter + 2) is None


def test_racing_workers_one_winner(provisioned: HarnessConfig) -> None:
    """Plain moto let two workers win in about one race of ten (its conditional writes are not
    atomic); the embedded endpoint serialises them. Twenty races make a regression show."""
    racers = tables(provisioned, *(f"w{i}" for i in range(8)))
    with ThreadPoolExecutor(max_workers=8) as pool:
        for race in range(20):
            shard = f"shard-{race}"
            won = list(pool.map(lambda t, s=shard: t.take(s, NOW, 5_000), racers))
            assert won.count(True) == 1, f"race {race}: {won.count(True)} winners"
            owner = racers[0].list()[0][shard].owner
            assert owner == racers[won.index(True)].worker_id
