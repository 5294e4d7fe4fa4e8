"""The operator's list+watch caches against the real API server, as the chart's ServiceAccount: they
follow adds, updates and deletes, relist after the connection to the API server breaks (objects
changed and deleted meanwhile included), relist on 410 Gone, and stop promptly."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from kubernetes import client, config

import kube_helpers as kh
from mesp_operator.watch_cache import Caches, Resource, ResourceWatch, WatchGone

pytestmark = pytest.mark.integration

SPEC = {"service": "fn-a", "mode": "ForecastOnly"}


class CuttableProxy:
    """A TCP relay to the API server that the test can cut: every open connection is closed and new
    ones are dropped until restore() (a network partition between the operator and the API server)."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.up = True
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                down, _ = self.server.accept()
            except OSError:
                return
            if not self.up:
                down.close()
                continue
            up = socket.create_connection(("127.0.0.1", self.target_port))
            with self.lock:
                self.sockets += [down, up]
            threading.Thread(target=self._pump, args=(down, up), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, down), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        self.up = False
        with self.lock:
            for s in self.sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self.sockets.clear()

    def restore(self):
        self.up = True

    def close(self):
        self.server.close()
        self.cut()


@pytest.fixture
def proxy(control_plane):
    relay = CuttableProxy(control_plane.apiserver_port)
    yield relay
    relay.close()


def operator_client(control_plane, host: str | None = None):
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(control_plane.operator_kubeconfig), client_configuration=configuration)
    if host is not None:
        configuration.host = host
        configuration.refresh_api_key_hook = None  # it would set the kubeconfig's host back before each call
    return client.ApiClient(configuration)


def _horizon(cache, ns, name):
    view = cache.policies.get((ns, name))
    return None if view is None else view.spec.get("horizonMinutes")


def test_caches_follow_changes_and_relist_after_the_connection_breaks(control_plane, admin_client, make_namespace,
                                                                     proxy):
    ns = make_namespace("cache-follow")
    kh.create_knative_service(admin_client, ns, "fn-a")
    for name in ("p1", "p2", "p3"):
        kh.create_policy(admin_client, ns, name, SPEC)
    api_client = operator_client(control_plane, f"https://127.0.0.1:{proxy.port}")
    errors, changes = [], []
    caches = Caches(api_client, [ns], on_error=errors.append, page_size=2)  # 2 per page: 2 pages of policies
    caches.start(on_policy=lambda key, view: changes.append((key, view)))
    try:
        kh.wait_for(lambda: caches.listed, 30, message="first lists")
        assert set(caches.policies.snapshot()) == {(ns, "p1"), (ns, "p2"), (ns, "p3")}
        assert caches.services.get((ns, "fn-a")).latest_ready_revision == "fn-a-00001"
        assert caches.revisions.get((ns, "fn-a-00001")).service == "fn-a"
        assert {key for key, _ in changes} == {(ns, "p1"), (ns, "p2"), (ns, "p3")}

        # Adds, updates and deletes arrive through the watch.
        kh.create_policy(admin_client, ns, "p4", SPEC)
        kh.patch_policy_spec(admin_client, ns, "p2", {"horizonMinutes": 30})
        kh.delete_policy(admin_client, ns, "p3")
        kh.roll_out(admin_client, ns, "fn-a", "fn-a-00002")
        def watched():
            return {"p4 added": caches.policies.get((ns, "p4")) is not None,
                    "p2 horizon": _horizon(caches, ns, "p2"),
                    "p3 deleted": caches.policies.get((ns, "p3")) is None,
                    "service's revision": caches.services.get((ns, "fn-a")).latest_ready_revision,
                    "revision added": caches.revisions.get((ns, "fn-a-00002")) is not None}

        expected = {"p4 added": True, "p2 horizon": 30, "p3 deleted": True, "service's revision": "fn-a-00002",
                    "revision added": True}
        try:
            kh.wait_for(lambda: watched() == expected, 30, message="watched changes")
        except AssertionError:
            assert watched() == expected
        assert ((ns, "p3"), None) in changes
        assert all(w.lists == 1 for c in caches.all for w in c.watches)  # no relist so far

        # The connection breaks; meanwhile a policy is added, one changed, one deleted.
        proxy.cut()
        kh.create_policy(admin_client, ns, "p5", SPEC)
        kh.patch_policy_spec(admin_client, ns, "p4", {"horizonMinutes": 20})
        kh.delete_policy(admin_client, ns, "p1")
        kh.wait_for(lambda: errors, 30, message="the broken watch reported")
        assert {e.kind for e in errors} <= {"connection", "timeout"}, errors
        assert caches.policies.get((ns, "p1")) is not None  # the last view is kept while away
        assert caches.listed  # and the loop may go on using it
        proxy.restore()
        kh.wait_for(lambda: caches.policies.get((ns, "p5")) is not None and caches.policies.get((ns, "p1")) is None
                    and _horizon(caches, ns, "p4") == 20, 60, message="relisted after the break")
        watch = caches.policies.watches[0]
        assert watch.lists >= 2 and watch.failures == 0
        assert ((ns, "p1"), None) in changes  # the relist reported what was deleted while away
        assert set(caches.policies.snapshot()) == {(ns, "p2"), (ns, "p4"), (ns, "p5")}

        # And the watch after the relist follows changes again.
        kh.patch_policy_spec(admin_client, ns, "p5", {"horizonMinutes": 10})
        kh.wait_for(lambda: _horizon(caches, ns, "p5") == 10, 30, message="watch resumed")
    finally:
        started = time.monotonic()
        caches.stop()
        api_client.close()
    assert time.monotonic() - started < 10
    assert not any(w._thread.is_alive() for c in caches.all for w in c.watches)


def test_a_watch_from_a_compacted_version_is_gone_and_relisted(control_plane, admin_client, make_namespace):
    ns = make_namespace("cache-gone")
    kh.create_policy(admin_client, ns, "p1", SPEC)
    api_client = operator_client(control_plane)
    from mesp_operator.spec import GROUP, PLURAL, VERSION, PolicyObject

    watch = ResourceWatch(api_client, Resource(GROUP, VERSION, PLURAL), ns, PolicyObject.from_body,
                          watch_timeout_seconds=5)
    try:
        # The API server's watch history starts long after resourceVersion 1: it answers 410 Gone.
        with pytest.raises(WatchGone):
            watch._watch("1")
        version = watch._list()
        assert set(watch.snapshot()) == {(ns, "p1")} and watch.listed.is_set() and int(version) > 1
        # A watch from the list's version ends cleanly at the server's timeout, at a version as new.
        assert int(watch._watch(version)) >= int(version)
    finally:
        api_client.close()
