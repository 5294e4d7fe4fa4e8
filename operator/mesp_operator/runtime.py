"""The running operator: settings, model, clients and the loop task, wired together once."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from mesp_operator.errors import classify
from mesp_operator.spec import PolicyObject

log = logging.getLogger("mesp.operator")

FINALIZER = "mesp.dev/restore-min-scale"
MIN_LOOP_GAP_SECONDS = 0.5  # coalesce bursts of policy changes into one loop


def configure_kopf(settings) -> None:
    """kopf's own settings: everything it stores goes into MESP's annotations, never into status."""
    import kopf

    # No namespace/CRD watching: the resources come from API discovery at start-up, so the operator
    # needs no cluster-wide read of namespaces or CRDs (Knative installed later needs a restart).
    settings.scanning.disabled = True
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="mesp.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="mesp.dev", key="last-handled-configuration")
    settings.posting.level = logging.WARNING  # the loop posts its own, more useful Events
    # No settings.batching.worker_limit: with indexes, every object's worker must index it before any
    # handler runs, so a limit below the object count would deadlock start-up. kopf retries 429s.
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60


class Runtime:
    def __init__(self, settings, reconciler, clock: Callable[[], float] = time.time):
        self.settings = settings
        self.reconciler = reconciler
        self.clock = clock
        self.ready = asyncio.Event()
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.generations: dict[str, int] = {}
        self.last_report = None
        self.loops = 0

    def on_policy_event(self, body) -> None:
        self.ready.set()
        meta = body.get("metadata") or {}
        uid, generation = meta.get("uid"), int(meta.get("generation") or 0)
        if self.generations.get(uid) != generation:  # a new or changed spec: act without waiting a full interval
            self.generations[uid] = generation
            self.wake.set()

    async def restore_on_delete(self, body, logger) -> None:
        """The deletion finalizer's work: give back what the policy changed, in a worker thread.
        kopf retries a TemporaryError and gives up on a PermanentError."""
        import kopf

        try:
            message = await asyncio.to_thread(self.reconciler.restore_policy, PolicyObject.from_body(body))
        except Exception as exc:
            info = classify(exc)
            if info.retryable:
                raise kopf.TemporaryError(f"restoring min-scale: {info.message}", delay=5) from exc
            raise kopf.PermanentError(f"restoring min-scale: {info.message}") from exc
        if message:
            logger.info(message)

    def start_loop(self, policies, services, revisions) -> None:
        self.task = asyncio.create_task(self._loop(policies, services, revisions), name="mesp-loop")

    async def stop_loop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
        await asyncio.to_thread(self.reconciler.close)

    async def _loop(self, policies, services, revisions) -> None:
        await self.ready.wait()
        while True:
            self.wake.clear()
            # Snapshot the indexes here, in the event loop that mutates them.
            policy_views = [view for store in policies.values() for view in store]
            service_views = {key: view for key, store in services.items() for view in store}
            revision_views = {key: view for key, store in revisions.items() for view in store}
            try:
                self.last_report = await asyncio.to_thread(
                    self.reconciler.run_once, policy_views, service_views, revision_views)
                self.loops += 1
                r = self.last_report
                log.info("loop %d: %d policies, %d planned, %d actuated, %d failed in %.2fs (%s)",
                         self.loops, r.policies, r.planned, r.actuated, r.failed, r.duration,
                         ", ".join(f"{k} {v:.2f}s" for k, v in r.phases.items()))
            except Exception as exc:  # the loop must survive anything a single run throws
                info = classify(exc)
                self.reconciler.metrics.errors.labels(info.kind).inc()
                log.exception("reconcile loop failed: %s", info.message)
            await asyncio.sleep(MIN_LOOP_GAP_SECONDS)
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=self.settings.loop_interval_seconds)
            except asyncio.TimeoutError:
                pass
