"""Several operator replicas sharing the MespPolicies: shards by a stable hash, owned through Leases.

Every policy falls in one of `shards` shards by a hash of its target Service (namespace/spec.service),
so all policies naming one Service land in the same shard and the loop's one-writer-per-Service rule
(decisions.service_writers) still sees them together. Each shard has a coordination.k8s.io/v1 Lease;
a replica acts on a policy only while it holds that shard's Lease, and checks it before every write.

Leases follow client-go's leader election: the holder renews every third of the lease duration and
stops acting two thirds of a duration after the start of its last successful renewal; the others
judge expiry on their own clock (a full duration without any change of the Lease), so a holder that
stalls stops before anyone else may start. A replica's share is ceil(shards / live replicas); live
replicas are counted from their member Leases. Surplus shards are released (holder cleared), free
or expired ones taken, preferring shards by rendezvous hashing so the split stays put across restarts.

A replica registers its member Lease as "starting" as soon as it runs, while it still lists the
cluster, and as "ready" from its first round. The others leave a starting peer its share (they take
no more than ceil(shards / (ready + starting))) but keep what they hold until it is ready, and stop
counting it after STARTING_GRACE_DURATIONS: replicas started together split the shards from the
first round instead of the first one listed taking all of them, and one stuck starting holds nothing up.

With shards = 0 there are no Leases and the process owns every policy (one replica, as before).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
import re
import socket
import threading
import time
from datetime import datetime, timezone
from typing import Callable, Mapping

from mesp_operator.errors import classify
from mesp_operator.spec import PolicyObject

log = logging.getLogger("mesp.operator")

LEASE_GROUP = ("coordination.k8s.io", "v1", "leases")
GROUP_LABEL = "mesp.dev/lease-group"
ROLE_LABEL = "mesp.dev/lease-role"
RENEWALS_PER_DURATION = 3          # renew every third of the duration
STALE_DURATIONS = 10               # a Lease nobody is meant to hold, unchanged this many durations, is deleted
STARTING_GRACE_DURATIONS = 4       # a peer still starting is left its share this long (listing 10,000 policies)
STATE_ANNOTATION = "mesp.dev/replica-state"
VALID_FRACTION = 2.0 / 3.0         # act until 2/3 of a duration after the last renewal started
_NAME_PART = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


# -- which shard a policy is in (pure) --------------------------------------------------------------
def shard_key(policy: PolicyObject) -> str:
    """The text a policy is hashed by: its target Service, or its own name while it names none."""
    service = policy.spec.get("service") if hasattr(policy.spec, "get") else None
    if isinstance(service, str) and service:
        return f"{policy.namespace}/{service}"
    return f"{policy.namespace}/policy:{policy.name}"


def _hash64(text: str) -> int:
    # Python's hash() differs between processes; replicas must agree, so a fixed digest is used.
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def shard_of(key: str, shards: int) -> int:
    return _hash64(key) % shards


def preference(replica: str, shard: int) -> int:
    """Rendezvous weight: each replica prefers the shards it weighs highest, so a replica that comes
    back after a restart tends to get the same shards (its memory-from-status is then current)."""
    return _hash64(f"{replica}#{shard}")


def fair_share(shards: int, live_replicas: int) -> int:
    return math.ceil(shards / max(1, live_replicas))


@dataclasses.dataclass(frozen=True)
class ShardView:
    """One shard Lease as this replica sees it now."""

    shard: int
    holder: str | None
    expired: bool      # no change seen for a full lease duration (or never created)


def plan_moves(views: list[ShardView], me: str, live_replicas: int, shards: int,
               starting_replicas: int = 0) -> tuple[list[int], list[int]]:
    """(shards to acquire, shards to release) for replica `me`: hold at most ceil(shards / live)
    shards; take free or expired ones, most preferred first; give up the least preferred surplus.
    Peers still starting are left their share: no acquiring past ceil(shards / (live + starting))."""
    target = fair_share(shards, live_replicas)
    mine = sorted((v.shard for v in views if v.holder == me), key=lambda s: -preference(me, s))
    if len(mine) > target:
        return [], mine[target:]
    room = fair_share(shards, live_replicas + starting_replicas) - len(mine)
    free = [v.shard for v in views if v.holder != me and (not v.holder or v.expired)]
    free.sort(key=lambda s: -preference(me, s))
    return free[: max(0, room)], []


def replica_identity(replica_id: str | None, env: Mapping[str, str] | None = None) -> str:
    """--replica-id, else $POD_NAME (the chart sets it), else host name and process id."""
    env = os.environ if env is None else env
    name = replica_id or env.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    name = re.sub(r"[^a-z0-9.-]", "-", name.lower()).strip("-.")[:63]
    return name or f"replica-{os.getpid()}"


def valid_name_part(text: str) -> bool:
    return bool(_NAME_PART.match(text)) and len(text) <= 63


# -- the Leases on the cluster ---------------------------------------------------------------------
@dataclasses.dataclass
class _Seen:
    version: str
    since: float      # monotonic time this version was first seen


def _micro_time(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ShardLeases:
    """This replica's share of the shards. `step()` (blocking; run it every `renew_interval`) renews,
    releases and acquires; `owns(policy)` is cheap and thread-safe, for checks before every write."""

    def __init__(self, api_client, namespace: str, group: str, replica: str, shards: int,
                 duration_seconds: float, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        from kubernetes import client

        self.api = client.CustomObjectsApi(api_client)
        self.namespace, self.group, self.replica = namespace, group, replica
        self.shards, self.duration = shards, float(duration_seconds)
        self.clock, self.wall = clock, wall
        self._valid_until: dict[int, float] = {}   # shard -> monotonic deadline of acting on it
        self._seen: dict[str, _Seen] = {}
        self._lock = threading.Lock()
        # One round at a time, and none after release_all: cancelling the task that awaits a round does
        # not stop its thread, whose renewal could otherwise land after the shutdown's hand-back.
        self._round = threading.Lock()
        self._released = False
        self._latest: dict[str, dict] = {}   # name -> the Lease as last listed or written this round
        self._starting_since: dict[str, float] = {}  # member Lease -> when first seen starting (our clock)
        self.live_replicas = 1
        self.starting_replicas = 0

    @property
    def renew_interval(self) -> float:
        return self.duration / RENEWALS_PER_DURATION

    def shard_name(self, shard: int) -> str:
        # The shard count is part of the name: a fleet restarted with another count never reads
        # an old Lease as covering the same policies.
        return f"{self.group}-shard-{shard}-of-{self.shards}"

    def member_name(self) -> str:
        return f"{self.group}-member-{self.replica}"

    # -- ownership -------------------------------------------------------------------------------
    def owns_shard(self, shard: int) -> bool:
        with self._lock:
            return self._valid_until.get(shard, -math.inf) > self.clock()

    def owns(self, policy: PolicyObject) -> bool:
        return self.owns_shard(shard_of(shard_key(policy), self.shards))

    def held(self) -> list[int]:
        now = self.clock()
        with self._lock:
            return sorted(s for s, until in self._valid_until.items() if until > now)

    def _set_valid(self, shard: int, until: float | None) -> None:
        with self._lock:
            if until is None:
                self._valid_until.pop(shard, None)
            else:
                self._valid_until[shard] = until

    # -- one round -------------------------------------------------------------------------------
    def step(self) -> bool:
        """List the Leases, renew ours, then release the surplus or take free ones. Returns whether the
        set of held shards changed. API errors end the round early (the next round retries); shards
        whose renewal failed simply run out of validity."""
        with self._round:
            return False if self._released else self._step()

    def _step(self) -> bool:
        before = self.held()
        started = self.clock()
        items = self.api.list_namespaced_custom_object(
            *LEASE_GROUP[:2], self.namespace, LEASE_GROUP[2], label_selector=f"{GROUP_LABEL}={self.group}",
            _request_timeout=(5, 30))["items"]
        by_name = self._latest = {item["metadata"]["name"]: item for item in items}
        self._renew_member(by_name.get(self.member_name()), "ready")
        self.live_replicas, self.starting_replicas = self._live_members(items, started)
        views = []
        for shard in range(self.shards):
            item = by_name.get(self.shard_name(shard))
            holder = ((item or {}).get("spec") or {}).get("holderIdentity") or None
            if holder == self.replica:
                if self._write(shard, item, holder=self.replica, acquired=False):
                    views.append(ShardView(shard, self.replica, False))
                    continue
                holder = None if item is None else "?"  # lost it (someone took it): not ours, not free
            views.append(ShardView(shard, holder, item is None or self._expired(item, started)))
        acquire, release = plan_moves(views, self.replica, self.live_replicas, self.shards, self.starting_replicas)
        for shard in release:
            self._release(shard, by_name.get(self.shard_name(shard)))
        for shard in acquire:
            self._write(shard, by_name.get(self.shard_name(shard)), holder=self.replica, acquired=True)
        self._delete_stale(list(by_name.values()), started)
        self._forget_seen(by_name)
        after = self.held()
        if after != before:
            log.info("shards held by %s: %s of %d (%d live replicas, %d starting)", self.replica, after or "none",
                     self.shards, self.live_replicas, self.starting_replicas)
        return after != before

    def _observe(self, item: dict, now: float) -> _Seen:
        """When this replica first saw the Lease as it is now (expiry is judged on our own clock)."""
        meta = item["metadata"]
        name, version = meta["name"], meta.get("resourceVersion", "")
        seen = self._seen.get(name)
        if seen is None or seen.version != version:
            self._seen[name] = seen = _Seen(version, now)
        return seen

    def _expired(self, item: dict, now: float) -> bool:
        duration = float((item.get("spec") or {}).get("leaseDurationSeconds") or self.duration)
        return now - self._observe(item, now).since > duration

    def _live_members(self, items: list[dict], now: float) -> tuple[int, int]:
        """(live ready replicas with this one, peers still starting within their grace)."""
        live, starting = 1, 0  # this replica
        for item in items:
            meta = item["metadata"]
            if (meta.get("labels") or {}).get(ROLE_LABEL) != "member":
                continue
            holder = (item.get("spec") or {}).get("holderIdentity")
            if not holder or holder == self.replica or self._expired(item, now):
                self._starting_since.pop(meta["name"], None)
                continue
            if (meta.get("annotations") or {}).get(STATE_ANNOTATION) == "starting":
                since = self._starting_since.setdefault(meta["name"], now)
                starting += now - since <= STARTING_GRACE_DURATIONS * self.duration
            else:
                self._starting_since.pop(meta["name"], None)
                live += 1
        return live, starting

    def _delete_stale(self, items: list[dict], now: float) -> None:
        """Member Leases of replicas gone for good (a Deployment's Pods get new names) and shard Leases
        of another shard count would pile up: delete those unchanged for STALE_DURATIONS durations
        (only if still unchanged: the delete carries their resourceVersion as a precondition)."""
        current = {self.shard_name(s) for s in range(self.shards)} | {self.member_name()}
        for item in items:
            meta = item["metadata"]
            if meta["name"] in current or now - self._observe(item, now).since <= STALE_DURATIONS * self.duration:
                continue
            try:
                self.api.delete_namespaced_custom_object(
                    *LEASE_GROUP[:2], self.namespace, LEASE_GROUP[2], meta["name"],
                    body={"preconditions": {"resourceVersion": meta["resourceVersion"]}}, _request_timeout=(5, 30))
                log.info("deleted stale lease %s/%s", self.namespace, meta["name"])
            except Exception as exc:  # another replica did it, or it changed: the next round looks again
                log.debug("stale lease %s not deleted: %s", meta["name"], classify(exc).message)

    def _forget_seen(self, by_name: dict) -> None:
        for name in set(self._seen) - set(by_name):
            del self._seen[name]
        for name in set(self._starting_since) - set(by_name):
            del self._starting_since[name]

    def _body(self, name: str, role: str, holder: str | None, previous: dict | None, acquired: bool,
              state: str | None = None) -> dict:
        now = _micro_time(self.wall())
        spec = dict((previous or {}).get("spec") or {})
        spec.update(holderIdentity=holder, leaseDurationSeconds=int(math.ceil(self.duration)), renewTime=now)
        if acquired:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (previous is not None)
        if holder is None:
            spec.pop("holderIdentity")
        metadata = {"name": name, "namespace": self.namespace,
                    "labels": {GROUP_LABEL: self.group, ROLE_LABEL: role}}
        if state is not None:
            metadata["annotations"] = {STATE_ANNOTATION: state}
        if previous is not None:
            metadata["resourceVersion"] = previous["metadata"]["resourceVersion"]
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}

    def _put(self, name: str, body: dict, create: bool) -> str:
        """Create or replace (optimistically: the resourceVersion must still match): "ok", "conflict"
        (another replica wrote first) or "error" (the API failed; the next round retries). The Lease
        as written replaces the listed one, so a later write in the same round is not refused as stale."""
        try:
            if create:
                written = self.api.create_namespaced_custom_object(
                    *LEASE_GROUP[:2], self.namespace, LEASE_GROUP[2], body, _request_timeout=(5, 30))
            else:
                written = self.api.replace_namespaced_custom_object(
                    *LEASE_GROUP[:2], self.namespace, LEASE_GROUP[2], name, body, _request_timeout=(5, 30))
            self._latest[name] = written
            return "ok"
        except Exception as exc:
            info = classify(exc)
            if info.kind == "api_conflict":
                return "conflict"
            log.warning("lease %s/%s not written: %s", self.namespace, name, info.message)
            return "error"

    def _write(self, shard: int, previous: dict | None, holder: str, acquired: bool) -> bool:
        """Acquire or renew one shard Lease; on success this replica may act on it until
        2/3 of a duration after this call started."""
        started = self.clock()
        name = self.shard_name(shard)
        result = self._put(name, self._body(name, "shard", holder, previous, acquired), create=previous is None)
        if result == "ok":
            self._set_valid(shard, started + VALID_FRACTION * self.duration)
        elif result == "conflict" and not acquired:
            self._set_valid(shard, None)  # renewal refused: the Lease changed under us
        # on an API error the validity already granted simply runs out unless the next round renews
        return result == "ok"

    def _release(self, shard: int, previous: dict | None) -> None:
        self._set_valid(shard, None)  # stop acting before anyone else may start
        if previous is not None:
            name = self.shard_name(shard)
            self._put(name, self._body(name, "shard", None, previous, acquired=False), create=False)

    def _renew_member(self, previous: dict | None, state: str) -> None:
        name = self.member_name()
        self._put(name, self._body(name, "member", self.replica, previous, acquired=previous is None, state=state),
                  create=previous is None)

    def register_starting(self) -> None:
        """While this replica still lists the cluster: its member Lease says "starting", so the others
        leave it its share (see the module docstring). Blocking; every `renew_interval` until ready."""
        with self._round:
            if self._released:
                return
            name = self.member_name()
            try:
                previous = self.api.get_namespaced_custom_object(*LEASE_GROUP[:2], self.namespace, LEASE_GROUP[2], name,
                                                                 _request_timeout=(5, 30))
            except Exception as exc:
                if classify(exc).kind != "api_not_found":
                    raise
                previous = None
            self._renew_member(previous, "starting")

    def release_all(self) -> None:
        """On shutdown: hand every shard back at once and leave the member list, so the others take
        over now instead of after a lease duration. Waits for a round in flight; none runs afterwards."""
        with self._round:
            self._released = True
            self._release_all()

    def _release_all(self) -> None:
        for shard in self.held():
            self._set_valid(shard, None)
        try:
            items = self.api.list_namespaced_custom_object(
                *LEASE_GROUP[:2], self.namespace, LEASE_GROUP[2], label_selector=f"{GROUP_LABEL}={self.group}",
                _request_timeout=(5, 10))["items"]
        except Exception as exc:
            log.warning("leases not released (they expire instead): %s", classify(exc).message)
            return
        for item in items:
            if (item.get("spec") or {}).get("holderIdentity") != self.replica:
                continue
            name = item["metadata"]["name"]
            role = (item["metadata"].get("labels") or {}).get(ROLE_LABEL, "shard")
            self._put(name, self._body(name, role, None, item, acquired=False), create=False)
