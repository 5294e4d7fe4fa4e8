"""kopf registrations only. Each handler hands plain data to one function of mesp_operator.runtime.

Knative Services and Revisions are only *indexed* (read from the watch stream): kopf adds no finalizer
and no annotation to them. The loop and the deletion finalizer live on MESP's own MespPolicy objects.
A fresh registry per run keeps several embedded operators (tests, benchmarks) independent.
"""

from __future__ import annotations

from typing import Callable

import kopf

from mesp_operator import knative as kn
from mesp_operator import runtime as rt
from mesp_operator.spec import GROUP, PLURAL, VERSION, PolicyObject


def build_registry(connection: Callable[[], kopf.ConnectionInfo]) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry, id="login")  # called again by kopf when a token stops working
    def login(**_):
        return connection()

    @kopf.index(kn.GROUP, kn.VERSION, "services", registry=registry, id="knative_services")
    def knative_services(body, namespace, name, **_):
        return {(namespace, name): kn.service_info(body)}

    @kopf.index(kn.GROUP, kn.VERSION, "revisions", registry=registry, id="knative_revisions")
    def knative_revisions(body, namespace, name, **_):
        return {(namespace, name): kn.revision_info(body)}

    @kopf.index(GROUP, VERSION, PLURAL, registry=registry, id="mesp_policies")
    def mesp_policies(body, namespace, name, **_):
        return {(namespace, name): PolicyObject.from_body(body)}

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry, id="policy_event")
    def policy_event(body, memo: kopf.Memo, **_):
        # kopf calls this only once every index is fully listed, so the loop may start now.
        memo.runtime.on_policy_event(body)

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry, id="restore_on_delete")  # the finalizer sits on MESP's own object
    async def policy_deleted(body, memo: kopf.Memo, logger, **_):
        await memo.runtime.restore_on_delete(body, logger)

    @kopf.on.startup(registry=registry, id="configure")
    async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_):
        rt.configure_kopf(settings)

    @kopf.on.startup(registry=registry, id="start_loop")
    async def start_loop(memo: kopf.Memo, mesp_policies: kopf.Index, knative_services: kopf.Index,
                         knative_revisions: kopf.Index, **_):
        memo.runtime.start_loop(mesp_policies, knative_services, knative_revisions)

    @kopf.on.cleanup(registry=registry, id="stop_loop")
    async def cleanup(memo: kopf.Memo, **_):
        await memo.runtime.stop_loop()

    return registry
