"""The kopf registry: kopf does not see Knative objects at all (the operator's own caches read them)
and keeps no index; the deletion finalizer lives on MESP's own MespPolicy."""

from __future__ import annotations

import kopf
from mesp_operator.handlers import build_registry


def _registry():
    return build_registry(lambda: kopf.ConnectionInfo(server="https://127.0.0.1:1"))


def _plurals(handlers):
    return {(h.selector.group, h.selector.plural or h.selector.any_name) for h in handlers if h.selector is not None}


def test_kopf_watches_no_knative_resource_and_keeps_no_index():
    registry = _registry()
    # An index makes every kopf worker wait for all objects to be indexed: quadratic at start-up.
    assert not registry._indexing.get_all_handlers()
    for kind in (registry._changing, registry._spawning, registry._watching, registry._webhooks):
        assert {group for group, _ in _plurals(kind.get_all_handlers())} <= {"mesp.dev"}


def test_the_finalizer_is_on_mesp_policies_and_nothing_else_is_handled_per_object():
    registry = _registry()
    assert _plurals(registry._changing.get_all_handlers()) == {("mesp.dev", "mesppolicies")}
    assert {h.id for h in registry._changing.get_all_handlers()} == {"restore_on_delete"}
    assert not registry._watching.get_all_handlers()  # the caches wake the loop, not kopf events
    assert not registry._spawning.get_all_handlers()  # no daemons or timers anywhere
    ids = {h.id for h in registry._activities.get_all_handlers()}
    assert {"login", "configure", "start_loop", "stop_loop"} <= ids
