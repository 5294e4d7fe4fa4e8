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
DELETE_WAIT_SECONDS = 1.0   # how often a replica without a deleted policy's shard looks at the Leases again
DELETE_CHECK_EVERY = 10     # ... and every this many looks, whether the policy is gone
KOPF_WORKER_LIMIT = 64      # kopf's per-object workers running at once (see configure_kopf)
LISTED_POLL_SECONDS = 0.2   # how often the start-up looks whether every cache has its first list


def release_freed_memory() -> None:
    """Hand the heap pages freed by a loop back to the OS (glibc's malloc_trim). A loop parses large
    Prometheus answers and builds thousands of statuses; without this the freed memory stays in the
    process's heap and counts in its RSS until the next loop reuses it. A no-op off glibc."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            import ctypes

            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim = None


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
    # kopf now watches only MespPolicies (for the deletion finalizer) and keeps no index, so no worker
    # waits for the others: a limit is safe and bounds the tasks and PATCHes (adding the finalizer) a
    # first sight of thousands of policies starts at once; the rest queue in kopf's scheduler.
    # Not lower: a replica's workers wait in restore_on_delete for policies another replica holds.
    settings.queueing.worker_limit = KOPF_WORKER_LIMIT
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60


class Runtime:
    """`caches` (watch_cache.Caches): the policies, Services and Revisions the loop reads.
    `shards` (sharding.ShardLeases) when several replicas share the policies; None: this process
    owns them all."""

    def __init__(self, settings, reconciler, caches=None, clock: Callable[[], float] = time.time, shards=None):
        self.settings = settings
        self.reconciler = reconciler
        self.caches = caches
        self.clock = clock
        self.shards = shards
        self.lease_task: asyncio.Task | None = None
        self.ready = asyncio.Event()  # set once every cache has its first full list
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.listed_task: asyncio.Task | None = None
        self.generations: dict[tuple[str, str], tuple[str, int]] = {}  # key -> (uid, generation) last seen
        self.last_report = None
        self.loops = 0

    def on_policy(self, key, policy: PolicyObject | None) -> None:
        """A policy was listed, changed or deleted (None). Called in the event loop."""
        if policy is None:
            self.generations.pop(key, None)
            return
        mark = (policy.uid, policy.generation)
        if self.generations.get(key) != mark:  # a new or changed spec: act without waiting a full interval
            self.generations[key] = mark
            self.wake.set()

    def owns(self, policy: PolicyObject) -> bool:
        """Whether this replica may write for `policy` now: it holds the policy's shard, as of the view
        passed and as of the newest one watched (a changed spec.service can move a policy to another
        shard while a loop that started before the change is still writing)."""
        if self.shards is None:
            return True
        if not self.shards.owns(policy):
            return False
        latest = self.caches.policies.get(policy.key) if self.caches is not None else None
        return latest is None or latest.uid != policy.uid or self.shards.owns(latest)

    async def restore_on_delete(self, body, logger) -> None:
        """The deletion finalizer's work: give back what the policy changed, in a worker thread.
        kopf retries a TemporaryError and gives up on a PermanentError.

        Every replica's kopf calls this; only the shard's holder restores. The others wait here
        (returning would let kopf remove the finalizer before the restore) until the object is gone
        or its shard comes to them."""
        import kopf

        policy = PolicyObject.from_body(body)
        waited = 0
        while not self.owns(policy):
            # Asking the API server is rarer than looking at the Leases: a mass deletion would otherwise
            # cost every other replica one GET per policy per second.
            if waited % DELETE_CHECK_EVERY == 0 and await asyncio.to_thread(self._released_elsewhere, policy):
                return
            waited += 1
            await asyncio.sleep(DELETE_WAIT_SECONDS)
        try:
            message = await asyncio.to_thread(self.reconciler.restore_policy, PolicyObject.from_body(body))
        except Exception as exc:
            info = classify(exc)
            if info.retryable:
                raise kopf.TemporaryError(f"restoring min-scale: {info.message}", delay=5) from exc
            raise kopf.PermanentError(f"restoring min-scale: {info.message}") from exc
        if message:
            logger.info(message)

    def _released_elsewhere(self, policy: PolicyObject) -> bool:
        """Whether the policy's deletion no longer waits for MESP: gone, recreated, or our finalizer removed."""
        try:
            body = self.reconciler.store.get_body(policy.namespace, policy.name)
        except Exception as exc:
            return classify(exc).kind == "api_not_found"
        meta = body.get("metadata") or {}
        return meta.get("uid") != policy.uid or FINALIZER not in (meta.get("finalizers") or [])

    def start_loop(self) -> None:
        """Start the caches' watches and the loop; the loop runs once every cache has its first list."""
        loop = asyncio.get_running_loop()
        self.caches.start(on_policy=lambda key, view: loop.call_soon_threadsafe(self.on_policy, key, view))
        self.listed_task = asyncio.create_task(self._until_listed(), name="mesp-listed")
        if self.shards is not None:
            self.lease_task = asyncio.create_task(self._lease_loop(), name="mesp-leases")
        self.task = asyncio.create_task(self._loop(), name="mesp-loop")

    async def _until_listed(self) -> None:
        started = time.monotonic()
        while not self.caches.listed:
            await asyncio.sleep(LISTED_POLL_SECONDS)
        log.info("listed %d policies, %d Services, %d Revisions in %.1fs", len(self.caches.policies),
                 len(self.caches.services), len(self.caches.revisions), time.monotonic() - started)
        self.ready.set()

    async def stop_loop(self) -> None:
        # the loop first: it stops writing before the Leases go
        for task in (self.task, self.lease_task, self.listed_task):
            if task is not None:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        if self.caches is not None:
            await asyncio.to_thread(self.caches.stop)
        if self.shards is not None:
            await asyncio.to_thread(self.shards.release_all)
        await asyncio.to_thread(self.reconciler.close)

    async def _lease_loop(self) -> None:
        """Renew, release and take shard Leases every third of a lease duration; a change wakes the loop.
        Shards only once the caches have listed everything (the loop is ready): a replica still starting
        up would hold shards it cannot act on yet. Until then its member Lease says "starting", so peers
        that are ready first leave it its share instead of taking every shard."""
        while True:
            started = time.monotonic()
            ready = self.ready.is_set()
            try:
                if not ready:
                    await asyncio.to_thread(self.shards.register_starting)
                elif await asyncio.to_thread(self.shards.step):
                    self.wake.set()
            except Exception as exc:  # the API server may be away for a while; the Leases then run out
                info = classify(exc)
                self.reconciler.metrics.errors.labels(info.kind).inc()
                log.warning("shard leases not renewed: %s", info.message)
            delay = max(0.0, self.shards.renew_interval - (time.monotonic() - started))
            if ready:
                await asyncio.sleep(delay)
            else:  # the first round right when the caches are listed
                try:
                    await asyncio.wait_for(self.ready.wait(), delay)
                except asyncio.TimeoutError:
                    pass

    async def _loop(self) -> None:
        await self.ready.wait()
        while True:
            self.wake.clear()
            snapshot_started = time.monotonic()
            # One consistent copy of each cache per loop: the watches go on changing them meanwhile.
            policy_views = [view for view in self.caches.policies.snapshot().values() if self.owns(view)]
            service_views = self.caches.services.snapshot()
            revision_views = self.caches.revisions.snapshot()
            snapshot_seconds = time.monotonic() - snapshot_started
            try:
                self.last_report = await asyncio.to_thread(
                    self.reconciler.run_once, policy_views, service_views, revision_views)
                self.loops += 1
                r = self.last_report
                r.phases = {"snapshot": snapshot_seconds, **r.phases}
                log.info("loop %d: %d policies, %d planned, %d actuated, %d failed in %.2fs (%s); "
                         "statuses %d written, %d unchanged",
                         self.loops, r.policies, r.planned, r.actuated, r.failed, r.duration,
                         ", ".join(f"{k} {v:.2f}s" for k, v in r.phases.items()), r.statuses_written,
                         r.statuses_unchanged)
                await asyncio.to_thread(release_freed_memory)
            except Exception as exc:  # the loop must survive anything a single run throws
                info = classify(exc)
                self.reconciler.metrics.errors.labels(info.kind).inc()
                log.exception("reconcile loop failed: %s", info.message)
            await asyncio.sleep(MIN_LOOP_GAP_SECONDS)
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=self.settings.loop_interval_seconds)
            except asyncio.TimeoutError:
                pass
