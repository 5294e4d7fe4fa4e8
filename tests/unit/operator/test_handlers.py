"""The kopf registry: Knative objects are only indexed (no finalizer, no timer, no stored state);
the finalizer and the loop's trigger live on MESP's own MespPolicy."""

from __future__ import annotations

import kopf

from mesp_operator.handlers import build_registry


def _registry():
    return build_registry(lambda: kopf.ConnectionInfo(server="https://127.0.0.1:1"))


def _plurals(handlers):
    return {(h.selector.group, h.selector.plural or h.selector.any_name) for h in handlers if h.selector is not None}


def test_knative_resources_are_only_indexed():
    registry = _registry()
    knative = {("serving.knative.dev", "services"), ("serving.knative.dev", "revisions")}
    assert knative <= _plurals(registry._indexing.get_all_handlers())
    for kind in (registry._changing, registry._spawning, registry._watching, registry._webhooks):
        assert not knative & _plurals(kind.get_all_handlers())


def test_the_finalizer_and_the_loop_trigger_are_on_mesp_policies():
    registry = _registry()
    assert _plurals(registry._changing.get_all_handlers()) == {("mesp.dev", "mesppolicies")}
    assert _plurals(registry._watching.get_all_handlers()) == {("mesp.dev", "mesppolicies")}
    assert not registry._spawning.get_all_handlers()  # no daemons or timers anywhere
    ids = {h.id for h in registry._activities.get_all_handlers()}
    assert {"login", "configure", "start_loop", "stop_loop"} <= ids
