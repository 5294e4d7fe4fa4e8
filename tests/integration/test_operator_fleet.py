"""Three `mesp operator` processes (as users start them) share fifteen MespPolicies, each on its own
Knative Service, through shard Leases on the real API server + etcd + Prometheus (issue 14):

- the shards are split 3/3/3 and every policy is applied by the holder of its shard;
- a policy deleted while its shard is elsewhere is restored by that shard's holder only (the other
  replicas' kopf waits instead of dropping the finalizer);
- one replica is SIGKILLed: its shards are taken over within a lease duration and two renewal
  periods, the survivors act on its policies within two of their loops, and every policy is still
  applied afterwards;
- the API server's audit log is the write log: every MESP write on a Service, Revision or MespPolicy
  comes from the replica that held the object's shard Lease at that moment (the Leases' holders are
  read back from the same log), and each object's writers never interleave;
- deleting the policies gives every user's own min-scale back (no annotation where there was none);
- a Lease of another shard count is deleted once stale, and a graceful stop hands the Leases back.
"""

from __future__ import annotations

import collections
import math
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from kubernetes import client

import kube_helpers as kh
from conftest import REPO, helm_binary
from kube_helpers import wait_for
from mesp_operator.sharding import shard_of

pytestmark = pytest.mark.integration

NS = "it-fleet"
SHARDS = 9
LEASE_SECONDS = 6.0
GROUP = "it-fleet"
REPLICAS = ("replica-a", "replica-b", "replica-c")
KILLED = "replica-a"
PER_REPLICA = 5                 # policies whose shard each replica holds after the split
ORIGINALS = (None, "1", "2")    # the users' own min-scale, cycled (None: no annotation at all)
FLOOR, RAISED = 3, 9            # spec.minScale: above every original; then, after the kill, above anything set
WARM_UP = "warm-up"
KNATIVE = ("services", "revisions")


@pytest.fixture
def lease_rbac(admin_client, chart_rbac, control_plane) -> str:
    """The Role and RoleBinding the chart adds for a fleet (replicaCount > 1); returns their namespace."""
    _, _, ns, sa = control_plane.operator_user.split(":")
    rendered = subprocess.run(
        [str(helm_binary()), "template", "mesp", str(REPO / "charts" / "mesp"), "--namespace", ns,
         "--set", f"serviceAccount.name={sa}", "--set", f"replicaCount={len(REPLICAS)}",
         "--show-only", "templates/rbac.yaml"],
        check=True, capture_output=True, text=True).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] in ("Role", "RoleBinding")]
    assert {d["kind"] for d in docs} == {"Role", "RoleBinding"}
    for doc in docs:
        kh.create(admin_client, doc)
    return ns


class Replica:
    def __init__(self, name: str, control_plane, lease_namespace: str, log: Path):
        argv = [sys.executable, "-m", "mesp_operator", "--kubeconfig", str(control_plane.operator_kubeconfig),
                "--namespace", NS, "--shards", str(SHARDS), "--replica-id", name,
                "--lease-namespace", lease_namespace, "--lease-name", GROUP,
                "--lease-duration-seconds", str(LEASE_SECONDS), "--metrics-port", "0"]
        if os.environ.get("MESP_IT_MODEL"):
            argv += ["--model", os.environ["MESP_IT_MODEL"]]
        env = dict(os.environ, MESP_PROMETHEUS_URL=control_plane.prometheus_url, MESP_LOOP_INTERVAL_SECONDS="1",
                   MESP_TORCH_THREADS="1")
        self.name, self.log = name, log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)

    def stop(self, sig=signal.SIGINT) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self) -> str:
        return self.text()[-3000:]


def lease_of(service: str) -> str:
    """The shard Lease of a Service (and of every policy naming it)."""
    return f"{GROUP}-shard-{shard_of(f'{NS}/{service}', SHARDS)}-of-{SHARDS}"


def shard_holders(admin_client, namespace: str) -> dict[str, str | None]:
    items = client.CustomObjectsApi(admin_client).list_namespaced_custom_object(
        "coordination.k8s.io", "v1", namespace, "leases", label_selector=f"mesp.dev/lease-group={GROUP}")["items"]
    return {i["metadata"]["name"]: (i.get("spec") or {}).get("holderIdentity") for i in items
            if i["metadata"]["labels"].get("mesp.dev/lease-role") == "shard"}


# -- the write log ----------------------------------------------------------------------------------
def _time(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _succeeded(event: dict) -> bool:
    return (event.get("responseStatus") or {}).get("code", 500) < 300


Write = collections.namedtuple("Write", "resource name service replica at")


def operator_writes(control_plane) -> list[Write]:
    """Every successful write the operator's account made on Knative objects and MespPolicies in the
    test namespace, oldest first; `service`: the Knative Service it is about (a policy is named after
    its Service); `replica` from the user agent (mesp-operator/<replica>, kopf/...); `at`: when the
    API server received it."""
    writes = []
    for event in control_plane.audit_events():
        ref = event.get("objectRef") or {}
        if (ref.get("namespace") == NS and ref.get("resource") in KNATIVE + ("mesppolicies",) and _succeeded(event)
                and (event.get("user") or {}).get("username") == control_plane.operator_user):
            agent = event.get("userAgent") or ""
            replica = agent.split("/", 1)[1] if agent.startswith("mesp-operator/") else agent
            service = ref["name"].removesuffix("-00001") if ref["resource"] == "revisions" else ref["name"]
            writes.append(Write(ref["resource"], ref["name"], service, replica,
                                _time(event["requestReceivedTimestamp"])))
    return sorted(writes, key=lambda w: w.at)


def lease_tenures(control_plane, namespace: str) -> dict[str, list[tuple[str, float, float]]]:
    """Lease name -> [(holder, from, until)], read from the bodies of the Lease writes in the audit
    log: a holder holds from the answer to the write that made it the holder until the next write that
    names someone else (or no one) is received."""
    history = collections.defaultdict(list)
    for event in control_plane.audit_events():
        ref = event.get("objectRef") or {}
        if (ref.get("resource") == "leases" and ref.get("namespace") == namespace and _succeeded(event)
                and event.get("verb") in ("create", "update")):
            holder = ((event.get("requestObject") or {}).get("spec") or {}).get("holderIdentity")
            history[ref["name"]].append((_time(event["requestReceivedTimestamp"]), _time(event["stageTimestamp"]),
                                         holder))
    tenures = {}
    for name, writes in history.items():
        spans, holder, since = [], None, None
        for received, answered, who in sorted(writes):
            if who == holder:
                continue
            if holder is not None:
                spans.append((holder, since, received))
            holder, since = who, answered
        if holder is not None:
            spans.append((holder, since, math.inf))
        tenures[name] = spans
    return tenures


def check_write_log(control_plane, lease_namespace: str, actuations: dict[str, str], killed_at: float) -> dict:
    """The checks on the write log; returns the writes counted per replica."""
    writes = operator_writes(control_plane)
    tenures = lease_tenures(control_plane, lease_namespace)
    # kopf (its own user agent) writes only its finalizer and annotations on MespPolicies, never a Knative object.
    assert not [w for w in writes if w.resource in KNATIVE and w.replica not in REPLICAS], writes
    mesp = [w for w in writes if w.replica in REPLICAS and w.name != WARM_UP]
    assert {w.service for w in mesp} == set(actuations), "every policy's objects are written"
    # Each policy writes only its actuation's object: the Revision, or the Service template.
    wrong = [w for w in mesp if w.resource in KNATIVE
             and w.resource != {"Revision": "revisions", "Template": "services"}[actuations[w.service]]]
    assert not wrong, wrong

    # Every write comes from the replica holding the object's shard Lease at that moment.
    strays = [w for w in mesp if not any(holder == w.replica and start <= w.at <= until
                                         for holder, start, until in tenures[lease_of(w.service)])]
    assert not strays, (f"writes while another replica held the shard: {strays[:5]}",
                        {lease_of(w.service): tenures[lease_of(w.service)] for w in strays[:5]})

    # Per object, one writer throughout, or the killed replica up to the kill and then one survivor.
    by_object = collections.defaultdict(list)
    for w in mesp:
        by_object[(w.resource, w.name)].append(w)
    for key, history in by_object.items():
        writers = [r for i, r in enumerate(w.replica for w in history) if i == 0 or history[i - 1].replica != r]
        if len(writers) == 1:
            continue
        assert len(writers) == 2 and writers[0] == KILLED, (key, [(round(w.at, 2), w.replica) for w in history])
        assert max(w.at for w in history if w.replica == KILLED) < killed_at < \
            min(w.at for w in history if w.replica != KILLED), (key, killed_at, history)
    return collections.Counter(w.replica for w in mesp)


# -- the operators' own logs: loops after a takeover -----------------------------------------------
HELD = re.compile(r"shards held by (\S+): \[([0-9, ]*)\] of")
LOOP = re.compile(r"loop \d+: (\d+) policies")


def loops_until_counted(text: str, count_of) -> tuple[list[int], int | None]:
    """In a replica's log: the shards of its last 'shards held' line, and the number of the first loop
    after that line whose policy count is count_of(shards) (1: the loop running at the change, 2: the
    next one), or None while no such loop has run yet."""
    held = list(HELD.finditer(text))
    assert held, "no 'shards held' line in the log"
    shards = [int(s) for s in held[-1].group(2).split(",") if s.strip()]
    counts = [int(m.group(1)) for m in LOOP.finditer(text, held[-1].end())]
    want = count_of(shards)
    return shards, next((i + 1 for i, c in enumerate(counts) if c == want), None)


# -- the Knative side -------------------------------------------------------------------------------
def target_min_scale(admin_client, name: str, actuation: str) -> str | None:
    if actuation == "Revision":
        return kh.revision_min_scale(admin_client, NS, f"{name}-00001")
    return kh.template_min_scale(admin_client, NS, name)


def applied(admin_client, name: str, actuation: str, floor: int) -> bool:
    """The policy's current spec is acted on: its status says so, and the object carries what the status says."""
    policy = kh.get_policy(admin_client, NS, name)
    st = (policy or {}).get("status") or {}
    actuated = [c for c in st.get("conditions") or [] if c.get("type") == "Actuated" and c.get("status") == "True"]
    value = target_min_scale(admin_client, name, actuation)
    return bool(policy and actuated and st.get("observedGeneration") == policy["metadata"]["generation"]
                and st.get("actuation") == actuation and value is not None
                and value == str(st.get("appliedMinScale")) and int(value) >= floor)


def test_three_replicas_share_the_policies_and_survive_one_killed(
        admin_client, make_namespace, control_plane, lease_rbac, tmp_path):
    ns = make_namespace(NS)
    # A shard Lease left by a fleet that ran with another shard count: never read as a current shard,
    # deleted once it has not changed for ten lease durations.
    stale = f"{GROUP}-shard-0-of-4"
    client.CustomObjectsApi(admin_client).create_namespaced_custom_object(
        "coordination.k8s.io", "v1", lease_rbac, "leases", {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": stale, "labels": {"mesp.dev/lease-group": GROUP, "mesp.dev/lease-role": "shard"}},
            "spec": {"holderIdentity": "old-replica", "leaseDurationSeconds": 6}})
    stale_since = time.monotonic()
    marks = {}  # phase -> seconds since the start, printed at the end (where a slow run spends its time)
    # A replica takes shards only once kopf has listed every policy (at least one must exist): this
    # one, Off and naming no existing Service, lets the split happen before the real policies arrive.
    kh.create_policy(admin_client, ns, WARM_UP, {"service": "no-such-service", "mode": "Off"})
    replicas = {name: Replica(name, control_plane, lease_rbac, tmp_path / f"{name}.log") for name in REPLICAS}
    logs = " ".join(str(r.log) for r in replicas.values())
    try:
        # 1. The shards are split, three each once all count each other.
        def split():
            holders = shard_holders(admin_client, lease_rbac)
            holders.pop(stale, None)
            counts = collections.Counter(holders.values())
            return holders if len(holders) == SHARDS and counts == {r: 3 for r in REPLICAS} else None

        holders = wait_for(split, 240, interval=0.5, message=f"9 shards split 3/3/3 (logs: {logs})")
        marks["split"] = time.monotonic() - stale_since
        # Services named so that each replica holds the shards of five, each with its own policy.
        owned = {r: [] for r in REPLICAS}
        for i in range(1000):
            name = f"fleet-{i}"
            if len(owned[holders[lease_of(name)]]) < PER_REPLICA:
                owned[holders[lease_of(name)]].append(name)
            if all(len(v) == PER_REPLICA for v in owned.values()):
                break
        actuations, originals = {}, {}
        for names in owned.values():
            for j, name in enumerate(names):  # both actuations and all three kinds of original per replica
                actuations[name] = ("Revision", "Template")[j % 2]
                originals[name] = ORIGINALS[j % 3]
                own = {} if originals[name] is None else {kh.MIN_SCALE: originals[name]}
                kh.create_knative_service(admin_client, ns, name, annotations=own)
        for name, actuation in actuations.items():
            kh.create_policy(admin_client, ns, name, {
                "service": name, "mode": "Active", "actuation": actuation, "capacityPerInstance": 100.0,
                "maxScale": 80, "horizonMinutes": 20, "minScale": FLOOR})
        wait_for(lambda: all(applied(admin_client, n, a, FLOOR) for n, a in actuations.items()), 180,
                 interval=0.5, message=f"every policy applied (logs: {logs})")
        marks["applied"] = time.monotonic() - stale_since

        # 2. A policy deleted now is restored by its shard's holder; the other replicas' kopf waits for
        # it instead of dropping the finalizer.
        gone = owned["replica-b"][1]
        kh.delete_policy(admin_client, ns, gone)
        wait_for(lambda: kh.get_policy(admin_client, ns, gone) is None, 60, message=f"{gone} deleted")
        assert target_min_scale(admin_client, gone, actuations[gone]) == originals[gone]
        assert {w.replica for w in operator_writes(control_plane)
                if w.service == gone and w.resource in KNATIVE} == {"replica-b"}
        live = {n: a for n, a in actuations.items() if n != gone}
        time.sleep(2.0)  # a few more loops, so a second writer would show

        # 3. One replica dies without a word (SIGKILL: no Lease handed back).
        offsets = {r: len(replicas[r].text()) for r in REPLICAS}
        killed_at = time.time()
        replicas[KILLED].stop(signal.SIGKILL)
        survivors = [r for r in REPLICAS if r != KILLED]

        def survivors_hold_all():
            holders = shard_holders(admin_client, lease_rbac)
            holders.pop(stale, None)
            return holders if set(holders.values()) <= set(survivors) and len(holders) == SHARDS else None

        holders = wait_for(survivors_hold_all, 60, interval=0.2, message=f"the survivors hold every shard ({logs})")
        takeover = time.time() - killed_at
        # Expired a lease duration after the last renewal (at most a renewal period before the kill),
        # judged in rounds a renewal period apart: within two renewal periods past the duration.
        assert takeover <= LEASE_SECONDS + 2 * LEASE_SECONDS / 3 + 3.0, takeover

        # The survivors count the killed replica's policies within two of their loops after taking the
        # shards: the loop running then, or the next (a status carrying no news is not written again,
        # so the loop log says when they took them on) ...
        policy_shards = [shard_of(f"{NS}/{service}", SHARDS) for service in [*live, "no-such-service"]]
        loops = {}
        for r in survivors:
            def counted(r=r):
                shards, loop = loops_until_counted(replicas[r].text()[offsets[r]:],
                                                   lambda held: sum(s in held for s in policy_shards))
                return (shards, loop) if loop else None

            shards, loops[r] = wait_for(counted, 30, message=f"a loop of {r} over its new shards")
            assert {lease_of(n) for n in live if holders[lease_of(n)] == r} == \
                {lease_of(n) for n in live if shard_of(f"{NS}/{n}", SHARDS) in shards}, (r, shards, holders)
            assert loops[r] <= 2, (r, loops[r], replicas[r].tail())

        # ... and act on them: a new floor on each of the killed replica's policies is written by a
        # survivor, and every policy is still applied.
        patched_at = time.time()
        for name in owned[KILLED]:
            kh.patch_policy_spec(admin_client, ns, name, {"minScale": RAISED})

        def first_survivor_writes():
            first = {}
            for w in operator_writes(control_plane):
                if w.service in owned[KILLED] and w.replica in survivors and w.at > patched_at:
                    first.setdefault(w.service, w.at)
            return first if set(first) == set(owned[KILLED]) else None

        first = wait_for(first_survivor_writes, 60, message=f"the survivors write the killed replica's policies ({logs})")
        acted = max(first.values()) - patched_at
        print(f"\ntakeover after SIGKILL of {KILLED}: shard Leases {takeover:.1f} s (lease duration {LEASE_SECONDS:g} s; "
              f"survivors' loops until their new policies counted: {loops}); a new floor on each of its "
              f"policies written by a survivor {acted:.1f} s after the change")
        wait_for(lambda: all(applied(admin_client, n, a, RAISED if n in owned[KILLED] else FLOOR)
                             for n, a in live.items()), 60, interval=0.5,
                 message=f"every policy applied after the takeover (logs: {logs})")

        # 4. Deleting the policies gives every user's own value back, no annotation where there was none.
        for name in live:
            kh.delete_policy(admin_client, ns, name)
        wait_for(lambda: all(kh.get_policy(admin_client, ns, n) is None for n in live), 60,
                 message=f"every policy deleted (logs: {logs})")
        marks["restored"] = time.monotonic() - stale_since
        restored = {n: (target_min_scale(admin_client, n, a), kh.revision_min_scale(admin_client, ns, f"{n}-00001"),
                        kh.template_min_scale(admin_client, ns, n)) for n, a in actuations.items()}
        assert restored == {n: (originals[n],) * 3 for n in actuations}, restored

        # 5. The write log: every write by the shard's holder then, no interleaving.
        counted = check_write_log(control_plane, lease_rbac, actuations, killed_at)
        assert set(counted) == set(REPLICAS), counted

        wait_for(lambda: stale not in shard_holders(admin_client, lease_rbac),
                 max(10.0, 10 * LEASE_SECONDS + 30 - (time.monotonic() - stale_since)),
                 message=f"the stale Lease {stale} deleted (logs: {logs})")
        marks["stale lease deleted"] = time.monotonic() - stale_since
        print("phases done at (s):", ", ".join(f"{k} {v:.0f}" for k, v in marks.items()))

        # 6. A graceful stop hands the Leases back at once.
        for r in survivors:
            assert replicas[r].stop() == 0, replicas[r].tail()
        assert set(shard_holders(admin_client, lease_rbac).values()) == {None}
    finally:
        for replica in replicas.values():
            replica.stop(signal.SIGKILL)


def test_a_replica_ready_first_leaves_a_starting_peer_its_share_for_a_grace(admin_client, lease_rbac):
    """Replicas started together: the first one ready takes ceil(shards / (ready + starting)), not
    every shard; it keeps its share when the peer is ready, and a peer stuck starting past the grace
    (STARTING_GRACE_DURATIONS) is no longer waited for. Real Leases on the real API server."""
    from mesp_operator.sharding import STARTING_GRACE_DURATIONS, STATE_ANNOTATION, ShardLeases

    now = [0.0]
    first = ShardLeases(admin_client, lease_rbac, "it-start", "first", SHARDS, 30.0, clock=lambda: now[0])
    peer = ShardLeases(admin_client, lease_rbac, "it-start", "peer", SHARDS, 30.0)
    leases = client.CustomObjectsApi(admin_client)
    try:
        peer.register_starting()
        first.step()
        assert (len(first.held()), first.live_replicas, first.starting_replicas) == (5, 1, 1)
        peer.register_starting()  # its renewal while it still lists
        now[0] += 10.0
        first.step()
        assert len(first.held()) == 5
        peer.step()  # ready: takes the rest, and its member Lease says so
        assert len(peer.held()) == 4 and not set(peer.held()) & set(first.held())
        member = leases.get_namespaced_custom_object("coordination.k8s.io", "v1", lease_rbac, "leases", peer.member_name())
        assert member["metadata"]["annotations"][STATE_ANNOTATION] == "ready"
        peer.release_all()

        # a peer that registers and then never gets ready is waited for STARTING_GRACE_DURATIONS only
        stuck = ShardLeases(admin_client, lease_rbac, "it-start", "stuck", SHARDS, 30.0)
        stuck.register_starting()
        now[0] += 10.0
        first.step()
        assert (first.live_replicas, first.starting_replicas) == (1, 1) and len(first.held()) == 5
        for _ in range(int(STARTING_GRACE_DURATIONS * 30.0 / 10.0) + 1):
            stuck.register_starting()  # alive (its Lease changes), still starting
            now[0] += 10.0
            first.step()
        assert first.starting_replicas == 0 and len(first.held()) == SHARDS
        stuck.release_all()
    finally:
        first.release_all()
        peer.release_all()
