"""Two `mesp operator` processes (as users start them) share eight MespPolicies through shard Leases on
the real API server: they split the policies, no Revision is written by both (the API server's audit
log is the write log), a killed replica's policies are taken over within the lease duration, and a
policy deleted while its shard is elsewhere is restored by the shard's holder only."""

from __future__ import annotations

import collections
import os
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
SERVICES = [f"fleet-{i}" for i in range(8)]
SHARDS = 8
LEASE_SECONDS = 6.0
GROUP = "it-fleet"
REPLICAS = ("replica-a", "replica-b")


@pytest.fixture
def lease_rbac(admin_client, chart_rbac, control_plane) -> str:
    """The Role and RoleBinding the chart adds for a fleet (replicaCount > 1); returns their namespace."""
    _, _, ns, sa = control_plane.operator_user.split(":")
    rendered = subprocess.run(
        [str(helm_binary()), "template", "mesp", str(REPO / "charts" / "mesp"), "--namespace", ns,
         "--set", f"serviceAccount.name={sa}", "--set", "replicaCount=2", "--show-only", "templates/rbac.yaml"],
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

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def shard_holders(admin_client, namespace: str) -> dict[str, str | None]:
    items = client.CustomObjectsApi(admin_client).list_namespaced_custom_object(
        "coordination.k8s.io", "v1", namespace, "leases", label_selector=f"mesp.dev/lease-group={GROUP}")["items"]
    return {i["metadata"]["name"]: (i.get("spec") or {}).get("holderIdentity") for i in items
            if i["metadata"]["labels"].get("mesp.dev/lease-role") == "shard"}


def writes_by_replica(control_plane, resource: str) -> dict[str, list[tuple[float, str]]]:
    """Object name -> [(time, replica)] of every successful write the replicas made to `resource`
    (revisions, mesppolicies and their status) in the test namespace, from the API server's audit log."""
    writes = collections.defaultdict(list)
    for event in control_plane.audit_events():
        ref = event.get("objectRef") or {}
        agent = event.get("userAgent") or ""
        if (ref.get("resource") == resource and ref.get("namespace") == NS and event.get("verb") == "patch"
                and (event.get("responseStatus") or {}).get("code", 500) < 300 and agent.startswith("mesp-operator/")):
            when = datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00")).timestamp()
            writes[ref["name"]].append((when, agent.split("/", 1)[1]))
    return writes


def revision_writes(control_plane) -> dict[str, list[tuple[float, str]]]:
    return writes_by_replica(control_plane, "revisions")


def floors(admin_client, names) -> dict[str, str | None]:
    return {n: kh.revision_min_scale(admin_client, NS, f"{n}-00001") for n in names}


def test_two_replicas_split_the_policies_and_one_takes_over_when_the_other_dies(
        admin_client, make_namespace, control_plane, lease_rbac, tmp_path):
    ns = make_namespace(NS)
    for name in SERVICES:
        kh.create_knative_service(admin_client, ns, name, annotations={kh.MIN_SCALE: "1"})
    # A shard Lease left by a fleet that ran with another shard count: never read as a current shard,
    # deleted once it has not changed for ten lease durations.
    stale = f"{GROUP}-shard-0-of-4"
    client.CustomObjectsApi(admin_client).create_namespaced_custom_object(
        "coordination.k8s.io", "v1", lease_rbac, "leases", {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": stale, "labels": {"mesp.dev/lease-group": GROUP, "mesp.dev/lease-role": "shard"}},
            "spec": {"holderIdentity": "old-replica", "leaseDurationSeconds": 6}})
    # A replica takes shards only once kopf has listed every policy (at least one must exist): this
    # one, Off and naming no existing Service, lets the split happen before the real policies arrive.
    kh.create_policy(admin_client, ns, "warm-up", {"service": "no-such-service", "mode": "Off"})
    replicas = {name: Replica(name, control_plane, lease_rbac, tmp_path / f"{name}.log") for name in REPLICAS}
    logs = " ".join(str(r.log) for r in replicas.values())
    try:
        # 1. The shards are split, four each once both count each other.
        def split():
            holders = shard_holders(admin_client, lease_rbac)
            holders.pop(stale, None)
            counts = collections.Counter(holders.values())
            return holders if len(holders) == SHARDS and counts == {"replica-a": 4, "replica-b": 4} else None

        holders = wait_for(split, 180, interval=0.5, message=f"8 shards split 4/4 (logs: {logs})")
        expected = collections.defaultdict(set)  # replica -> Services whose shard it holds
        for name in SERVICES:
            expected[holders[f"{GROUP}-shard-{shard_of(f'{NS}/{name}', SHARDS)}-of-{SHARDS}"]].add(name)
        assert set(expected) == set(REPLICAS), f"one replica's shards hold no Service: {dict(expected)}"

        # Policies whose floor (2, then 3) is above the Services' own 1: every one needs writes.
        for name in SERVICES:
            kh.create_policy(admin_client, ns, name, {
                "service": name, "mode": "Active", "actuation": "Revision", "capacityPerInstance": 100.0,
                "maxScale": 80, "horizonMinutes": 20, "minScale": 2})
        wait_for(lambda: all(int(v or 0) >= 2 for v in floors(admin_client, SERVICES).values()), 120,
                 message=f"floor 2 everywhere (logs: {logs})")
        for name in SERVICES:
            kh.patch_policy_spec(admin_client, ns, name, {"minScale": 3})
        wait_for(lambda: all(int(v or 0) >= 3 for v in floors(admin_client, SERVICES).values()), 60,
                 message=f"floor 3 everywhere (logs: {logs})")
        time.sleep(3.0)  # a few more loops, so a second writer would show

        # Each Revision, and each policy (original-value record and status), written by its shard's holder only.
        for resource in ("revisions", "mesppolicies"):
            writers = {name.removesuffix("-00001"): {r for _, r in w}
                       for name, w in writes_by_replica(control_plane, resource).items() if name != "warm-up"}
            assert set(writers) == set(SERVICES), (resource, writers)
            for replica, names in expected.items():
                assert all(writers[n] == {replica} for n in names), (resource, replica, writers)
        owned = {replica: {f"{n}-00001" for n in names} for replica, names in expected.items()}

        # 2. A policy deleted now is restored by its shard's holder; the other replica's kopf waits
        # for it instead of dropping the finalizer.
        gone = sorted(owned["replica-b"])[0].removesuffix("-00001")
        kh.patch_policy_spec(admin_client, ns, gone, {"minScale": 7})  # a value the restore must undo
        wait_for(lambda: kh.revision_min_scale(admin_client, ns, f"{gone}-00001") == "7", 30,
                 message=f"floor 7 on {gone}")
        kh.delete_policy(admin_client, ns, gone)
        wait_for(lambda: kh.get_policy(admin_client, ns, gone) is None, 30, message=f"{gone} deleted")
        assert kh.revision_min_scale(admin_client, ns, f"{gone}-00001") == "1"
        assert {r for _, r in revision_writes(control_plane)[f"{gone}-00001"]} == {"replica-b"}

        # 3. replica-a dies without a word (SIGKILL: no Lease handed back).
        killed_at = time.time()
        replicas["replica-a"].stop(signal.SIGKILL)

        def all_b():
            holders = shard_holders(admin_client, lease_rbac)
            holders.pop(stale, None)
            return set(holders.values()) == {"replica-b"}

        wait_for(all_b, 3 * LEASE_SECONDS, interval=0.2, message=f"replica-b holds every shard (log: {logs})")
        takeover = time.time() - killed_at
        # Expired a lease duration after replica-a's last renewal, seen within one renewal period.
        assert takeover <= LEASE_SECONDS + 2 * LEASE_SECONDS / 3 + 2.0, takeover
        print(f"takeover after SIGKILL: {takeover:.1f} s (lease duration {LEASE_SECONDS:g} s)")

        # replica-b now acts on replica-a's policies: a new floor there is applied by replica-b.
        a_services = sorted(rev.removesuffix("-00001") for rev in owned["replica-a"])
        for name in a_services:
            kh.patch_policy_spec(admin_client, ns, name, {"minScale": 5})
        wait_for(lambda: all(int(kh.revision_min_scale(admin_client, ns, f"{n}-00001") or 0) >= 5 for n in a_services),
                 30, message=f"replica-b applies the new floors of {a_services}")
        for name in a_services:
            history = revision_writes(control_plane)[f"{name}-00001"]
            after = {r for t, r in history if t > killed_at}
            assert after == {"replica-b"}, history
            # never both at once: every write of replica-a precedes every write of replica-b
            last_a = max(t for t, r in history if r == "replica-a")
            assert last_a < min(t for t, r in history if r == "replica-b"), history

        # ... and restores one of them when it is deleted.
        kh.delete_policy(admin_client, ns, a_services[0])
        wait_for(lambda: kh.get_policy(admin_client, ns, a_services[0]) is None, 30,
                 message=f"{a_services[0]} deleted by replica-b")
        assert kh.revision_min_scale(admin_client, ns, f"{a_services[0]}-00001") == "1"

        wait_for(lambda: stale not in shard_holders(admin_client, lease_rbac), 10 * LEASE_SECONDS + 30,
                 message=f"the stale Lease {stale} deleted (log: {logs})")

        # 4. A graceful stop hands the Leases back at once.
        assert replicas["replica-b"].stop() == 0, replicas["replica-b"].tail()
        assert set(shard_holders(admin_client, lease_rbac).values()) == {None}
    finally:
        for replica in replicas.values():
            replica.stop(signal.SIGKILL)
