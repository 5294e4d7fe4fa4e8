"""kopf registrations only. Each handler hands plain data to one function of mesp_operator.runtime.

kopf logs in, runs start-up and clean-up, and keeps the deletion finalizer on MESP's own MespPolicy
objects; it does not see Knative Services and Revisions at all. What the loop reads (policies, Services,
Revisions) comes from the operator's own list+watch caches (mesp_operator.watch_cache), started by
`start_loop`. A fresh registry per run keeps several embedded operators (tests, benchmarks) independent.
"""

from __future__ import annotations

from typing import Callable

import kopf

from mesp_operator import runtime as rt
from mesp_operator.spec import GROUP, PLURAL, VERSION


def build_registry(connection: Callable[[], kopf.ConnectionInfo]) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry, id="login")  # called again by kopf when a token stops working
    def login(**_):
        return connection()

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry, id="restore_on_delete")  # the finalizer sits on MESP's own object
    async def policy_deleted(body, memo: kopf.Memo, logger, **_):
        await memo.runtime.restore_on_delete(body, logger)

    @kopf.on.startup(registry=registry, id="configure")
    async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_):
        rt.configure_kopf(settings)

    @kopf.on.startup(registry=registry, id="start_loop")
    async def start_loop(memo: kopf.Memo, **_):
        memo.runtime.start_loop()

    @kopf.on.cleanup(registry=registry, id="stop_loop")
    async def cleanup(memo: kopf.Memo, **_):
        await memo.runtime.stop_loop()

    return registry
