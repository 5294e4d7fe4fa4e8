"""Which shard a policy is in and which shards a replica takes or gives up (pure parts of sharding.py).
The Leases themselves are exercised on a real API server in tests/integration/test_operator_fleet.py."""

from __future__ import annotations

import collections
import os
import subprocess
import sys

import pytest

from mesp_operator.sharding import (ShardView, fair_share, plan_moves, preference, replica_identity, shard_key,
                                    shard_of, valid_name_part)
from mesp_operator.spec import PolicyObject


def policy(namespace="team-a", name="p", service="svc", uid="u1") -> PolicyObject:
    spec = {} if service is None else {"service": service}
    return PolicyObject(namespace=namespace, name=name, uid=uid, generation=1, spec=spec, annotations={}, status={})


def test_policies_naming_one_service_share_a_shard_whatever_their_name_or_uid():
    a = policy(name="first", uid="u1", service="checkout")
    b = policy(name="second", uid="u2", service="checkout")
    assert shard_key(a) == shard_key(b) == "team-a/checkout"
    assert shard_of(shard_key(a), 16) == shard_of(shard_key(b), 16)


def test_a_policy_without_a_service_is_placed_by_its_own_name():
    assert shard_key(policy(name="broken", service=None)) == "team-a/policy:broken"
    assert shard_key(policy(name="broken", service="")) == "team-a/policy:broken"
    # a policy named like a Service is not confused with that Service
    assert shard_key(policy(name="svc", service=None)) != shard_key(policy(name="other", service="svc"))


def test_the_hash_is_stable_across_processes():
    # A fixed digest (sha256), not Python's per-process hash(): replicas started with different hash
    # seeds must agree, and the value is pinned so a change of the function cannot go unnoticed (it
    # would split the policies two ways while an old and a new replica overlap).
    keys = [f"bench/fn-{i:04d}" for i in range(20)]
    code = ("import sys; from mesp_operator.sharding import shard_of; "
            f"print([shard_of(k, 16) for k in {keys!r}])")
    others = {subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONHASHSEED=seed),
                             capture_output=True, text=True, check=True).stdout.strip() for seed in ("1", "2")}
    assert others == {str([shard_of(k, 16) for k in keys])}
    assert shard_of("team-a/checkout", 16) == 14
    assert shard_of("team-a/checkout", 1) == 0


def test_ten_thousand_services_spread_evenly_over_sixteen_shards():
    counts = collections.Counter(shard_of(f"bench/fn-{i:05d}", 16) for i in range(10_000))
    assert set(counts) == set(range(16))
    assert max(counts.values()) < 1.15 * 10_000 / 16 and min(counts.values()) > 0.85 * 10_000 / 16


@pytest.mark.parametrize("shards,live,share", [(16, 1, 16), (16, 2, 8), (16, 3, 6), (4, 3, 2), (1, 2, 1), (16, 0, 16)])
def test_fair_share_rounds_up(shards, live, share):
    assert fair_share(shards, live) == share


def views(holders: dict[int, str | None], expired: set[int] = frozenset(), shards: int = 8) -> list[ShardView]:
    return [ShardView(s, holders.get(s), s in expired) for s in range(shards)]


def test_a_lone_replica_takes_every_free_shard():
    acquire, release = plan_moves(views({}), "a", live_replicas=1, shards=8)
    assert sorted(acquire) == list(range(8)) and release == []


def test_a_replica_takes_only_its_share_and_never_a_live_holders_shard():
    held_by_b = {s: "b" for s in range(4)}
    acquire, release = plan_moves(views(held_by_b), "a", live_replicas=2, shards=8)
    assert sorted(acquire) == [4, 5, 6, 7] and release == []
    acquire, _ = plan_moves(views({s: "b" for s in range(6)}), "a", live_replicas=2, shards=8)
    assert sorted(acquire) == [6, 7]  # b's surplus is b's to give up


def test_expired_shards_of_a_lost_replica_are_taken_over():
    holders = {s: ("a" if s < 4 else "b") for s in range(8)}
    acquire, release = plan_moves(views(holders, expired={4, 5, 6, 7}), "a", live_replicas=1, shards=8)
    assert sorted(acquire) == [4, 5, 6, 7] and release == []


def test_when_a_replica_joins_the_holder_gives_up_its_least_preferred_surplus():
    everything = {s: "a" for s in range(8)}
    acquire, release = plan_moves(views(everything), "a", live_replicas=2, shards=8)
    assert acquire == [] and len(release) == 4
    kept = set(range(8)) - set(release)
    assert min(preference("a", s) for s in kept) > max(preference("a", s) for s in release)


def test_two_replicas_following_the_plan_cover_every_shard_without_overlap():
    holders: dict[int, str | None] = {}
    for _ in range(4):  # a few rounds of each replica's step, alternating
        for me in ("a", "b"):
            acquire, release = plan_moves(views(holders), me, live_replicas=2, shards=8)
            for s in release:
                holders[s] = None
            for s in acquire:
                holders[s] = me
    assert sorted(holders) == list(range(8))
    assert collections.Counter(holders.values()) == {"a": 4, "b": 4}


def test_a_replica_ready_first_leaves_peers_still_starting_their_share():
    acquire, release = plan_moves(views({}), "a", live_replicas=1, shards=8, starting_replicas=2)
    assert len(acquire) == 3 and release == []  # ceil(8 / 3), not all 8
    acquire, _ = plan_moves(views({s: "a" for s in range(3)}), "a", live_replicas=1, shards=8, starting_replicas=2)
    assert acquire == []


def test_a_starting_peer_does_not_make_holders_give_up_shards_before_it_is_ready():
    holders = {s: ("a" if s < 4 else "b") for s in range(8)}
    acquire, release = plan_moves(views(holders), "a", live_replicas=2, shards=8, starting_replicas=1)
    assert acquire == [] and release == []
    acquire, release = plan_moves(views(holders), "a", live_replicas=3, shards=8)  # once it is ready
    assert acquire == [] and len(release) == 1


def test_three_replicas_started_together_split_the_shards_from_the_first_round():
    holders: dict[int, str | None] = {}
    ready: list[str] = []
    for me in ("a", "b", "c"):  # each becomes ready in turn, the others still starting
        ready.append(me)
        for replica in ready:
            acquire, release = plan_moves(views(holders, shards=16), replica, live_replicas=len(ready), shards=16,
                                          starting_replicas=3 - len(ready))
            for s in release:
                holders[s] = None
            for s in acquire:
                holders[s] = replica
    assert sorted(holders) == list(range(16)) and None not in holders.values()
    assert sorted(collections.Counter(holders.values()).values()) == [4, 6, 6]  # shares of ceil(16 / 3)


def test_replica_identity_comes_from_the_flag_then_the_pod_name():
    assert replica_identity("Replica_A", env={}) == "replica-a"
    assert replica_identity(None, env={"POD_NAME": "mesp-7d9f-x2"}) == "mesp-7d9f-x2"
    generated = replica_identity(None, env={})
    assert generated and valid_name_part(generated)
