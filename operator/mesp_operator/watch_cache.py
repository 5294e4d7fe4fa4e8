"""The operator's own view of what the loop reads: MespPolicies, Knative Services and Revisions.

Each resource is listed (in pages) and then watched from the list's resourceVersion, by one thread per
(resource, namespace), into a dict of compact views (kn.ServiceInfo, kn.RevisionInfo, PolicyObject):
the loop never needs the full objects. A watch the server ends is resumed from the last resourceVersion
seen; a 410 Gone (history compacted) relists at once; any other failure is classified, counted, logged
and followed by a relist after a growing delay. Each watch has an "initial list done" gate
(`listed`); the loop acts only once every gate is open, never on a partial view.

Why not kopf's indexes: kopf makes every watched object's worker wait until all objects of every
indexed resource are indexed, and each new object's readiness toggle wakes every waiting worker, which
is quadratic in the number of objects (docs/RESULTS.md, "Operator fleet and footprint"); it also keeps
per-object state for every Service and Revision, which the operator never handles.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any

from mesp_operator.errors import Classified, classify

log = logging.getLogger("mesp.operator.cache")

PAGE_SIZE = 500                # objects per LIST page: bounds the memory of one answer
WATCH_TIMEOUT_SECONDS = 300    # the server ends a watch after this; it is then resumed
LIST_TIMEOUT_SECONDS = 60      # one LIST page may take this long
RETRY_BASE_SECONDS = 1.0
RETRY_MAX_SECONDS = 30.0
HTTP_GONE = 410

Key = tuple[str, str]
Convert = Callable[[Mapping[str, Any]], Any]
OnChange = Callable[[Key, Any], None]   # (key, view), view None when the object is gone


@dataclasses.dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str


class WatchGone(Exception):
    """The server no longer has the history a watch or a list continuation asked for (HTTP 410)."""


def object_key(body: Mapping[str, Any]) -> Key:
    meta = body.get("metadata") or {}
    return (meta.get("namespace", ""), meta.get("name", ""))


def retry_delay(failures: int, base: float = RETRY_BASE_SECONDS, cap: float = RETRY_MAX_SECONDS) -> float:
    """Seconds to wait after `failures` (1, 2, ...) failed attempts in a row: doubling, capped."""
    return min(cap, base * 2 ** max(0, failures - 1))


def apply_event(items: dict, event_type: str, body: Mapping[str, Any], convert: Convert) -> tuple[Key, Any]:
    """Apply one watch event to `items` (key -> view); returns (key, new view or None when deleted)."""
    key = object_key(body)
    if event_type == "DELETED":
        items.pop(key, None)
        return key, None
    view = convert(body)
    items[key] = view
    return key, view


def removed_keys(old: Iterable[Hashable], new: Mapping[Hashable, Any]) -> list:
    """Keys a relist no longer returns: objects deleted while the watch was away."""
    return [key for key in old if key not in new]


def watch_error(obj: Mapping[str, Any]) -> Exception:
    """The exception for an ERROR event of a watch stream (its object is a metav1.Status)."""
    from kubernetes.client.exceptions import ApiException

    code = int(obj.get("code") or 0)
    if code == HTTP_GONE:
        return WatchGone(obj.get("message") or "too old resource version")
    exc = ApiException(status=code, reason=obj.get("reason") or "watch error")
    exc.body = json.dumps({"message": obj.get("message") or ""})
    return exc


class ResourceWatch:
    """One resource in one namespace (None: every namespace), kept up to date by a thread."""

    def __init__(self, api_client, resource: Resource, namespace: str | None, convert: Convert, *,
                 on_change: OnChange | None = None, on_error: Callable[[Classified], None] | None = None,
                 page_size: int = PAGE_SIZE, watch_timeout_seconds: int = WATCH_TIMEOUT_SECONDS):
        from kubernetes import client

        self.api = client.CustomObjectsApi(api_client)
        self.resource, self.namespace, self.convert = resource, namespace, convert
        self.on_change, self.on_error = on_change, on_error
        self.page_size, self.watch_timeout_seconds = page_size, watch_timeout_seconds
        self.name = f"{resource.plural}.{resource.group}@{namespace or '*'}"
        self.items: dict[Key, Any] = {}
        self.listed = threading.Event()     # the gate: set once the first full list is in `items`
        self.lists = 0                      # full lists done (1 + relists)
        self.failures = 0                   # failed attempts in a row
        self._lock = threading.Lock()       # `items` is written by the thread, read by the event loop
        self._stopping = threading.Event()
        self._response = None               # the open watch stream, to interrupt on stop()
        self._thread: threading.Thread | None = None

    # -- reading (any thread) ---------------------------------------------------------------------
    def snapshot(self) -> dict:
        with self._lock:
            return dict(self.items)

    def get(self, key: Key):
        with self._lock:
            return self.items.get(key)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"mesp-watch-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread: interrupt its open watch (a LIST page ends within LIST_TIMEOUT_SECONDS;
        the thread is a daemon, so a page still in flight cannot hold the process)."""
        self._stopping.set()
        self._interrupt()
        if self._thread is not None:
            self._thread.join(timeout)

    def _interrupt(self) -> None:
        response = self._response
        if response is None:
            return
        try:
            response.shutdown()  # urllib3 >= 2.3: unblocks a read in progress in another thread
        except Exception as exc:  # already closed, or an older urllib3: the server timeout ends it
            log.debug("%s: interrupting the watch: %s", self.name, exc)

    # -- the thread -------------------------------------------------------------------------------
    def _run(self) -> None:
        version: str | None = None
        while not self._stopping.is_set():
            try:
                if version is None:
                    version = self._list()
                    self.failures = 0
                version = self._watch(version)
                self.failures = 0
            except WatchGone as exc:
                log.info("%s: %s; listing again", self.name, exc)
                version = None
            except Exception as exc:  # the API server may be away; keep the last view and try again
                if self._stopping.is_set():
                    break
                self.failures += 1
                info = classify(exc)
                delay = retry_delay(self.failures)
                log.warning("%s: list/watch failed (%s), listing again in %.0f s: %s",
                            self.name, info.kind, delay, info.message)
                if self.on_error is not None:
                    self.on_error(info)
                version = None
                self._stopping.wait(delay)

    def _call(self, **kwargs):
        r = self.resource
        if self.namespace is None:
            return self.api.list_cluster_custom_object(r.group, r.version, r.plural, **kwargs)
        return self.api.list_namespaced_custom_object(r.group, r.version, self.namespace, r.plural, **kwargs)

    def _list(self) -> str:
        """A full list, page by page, swapped into `items` at once; returns its resourceVersion."""
        from kubernetes.client.exceptions import ApiException

        fresh: dict[Key, Any] = {}
        token = None
        while True:
            kwargs = {"limit": self.page_size, "_request_timeout": (5, LIST_TIMEOUT_SECONDS)}
            if token:
                kwargs["_continue"] = token
            try:
                page = self._call(**kwargs)
            except ApiException as exc:
                if exc.status == HTTP_GONE:  # the continuation expired: start over
                    raise WatchGone("list continuation expired") from exc
                raise
            for body in page.get("items") or ():
                fresh[object_key(body)] = self.convert(body)
            meta = page.get("metadata") or {}
            token = meta.get("continue")
            if not token:
                break
            if self._stopping.is_set():
                raise WatchGone("stopping")
        with self._lock:
            gone = removed_keys(self.items, fresh)
            self.items = fresh
        self.lists += 1
        self.listed.set()
        if self.on_change is not None:
            for key in gone:
                self.on_change(key, None)
            for key, view in fresh.items():
                self.on_change(key, view)
        log.debug("%s: listed %d objects at resourceVersion %s", self.name, len(fresh), meta.get("resourceVersion"))
        return str(meta.get("resourceVersion") or "")

    def _watch(self, version: str) -> str:
        """Follow changes after `version` until the server ends the watch; returns the last version seen."""
        from kubernetes.watch.watch import iter_resp_lines

        response = self._call(watch=True, resource_version=version, allow_watch_bookmarks=True,
                              timeout_seconds=self.watch_timeout_seconds, _preload_content=False,
                              _request_timeout=(5, self.watch_timeout_seconds + 30))
        self._response = response
        try:
            if self._stopping.is_set():
                return version
            for line in iter_resp_lines(response):
                event = json.loads(line)
                kind, body = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    raise watch_error(body)
                version = (body.get("metadata") or {}).get("resourceVersion") or version
                if kind == "BOOKMARK":
                    continue
                with self._lock:
                    key, view = apply_event(self.items, kind, body, self.convert)
                if self.on_change is not None:
                    self.on_change(key, view)
        except Exception:
            if self._stopping.is_set():
                return version  # our own interruption, not a failure
            raise
        finally:
            self._response = None
            response.release_conn()
        return version


class ResourceCache:
    """One resource over the watched namespaces: the union of their ResourceWatches."""

    def __init__(self, watches: list[ResourceWatch]):
        self.watches = watches

    @property
    def listed(self) -> bool:
        return all(w.listed.is_set() for w in self.watches)

    def snapshot(self) -> dict:
        merged: dict = {}
        for w in self.watches:
            merged.update(w.snapshot())
        return merged

    def get(self, key: Key):
        for w in self.watches:
            view = w.get(key)
            if view is not None:
                return view
        return None

    def __len__(self) -> int:
        return sum(len(w.items) for w in self.watches)


class Caches:
    """The three caches the loop reads, one ResourceWatch per (resource, namespace)."""

    def __init__(self, api_client, namespaces: Iterable[str] = (), *, on_error=None,
                 page_size: int = PAGE_SIZE, watch_timeout_seconds: int = WATCH_TIMEOUT_SECONDS):
        from mesp_operator import knative as kn
        from mesp_operator.spec import GROUP, PLURAL, VERSION, PolicyObject

        scopes = list(namespaces) or [None]

        def cache(resource: Resource, convert: Convert) -> ResourceCache:
            return ResourceCache([ResourceWatch(api_client, resource, ns, convert, on_error=on_error,
                                                page_size=page_size, watch_timeout_seconds=watch_timeout_seconds)
                                  for ns in scopes])

        self.policies = cache(Resource(GROUP, VERSION, PLURAL), PolicyObject.from_body)
        self.services = cache(Resource(kn.GROUP, kn.VERSION, "services"), kn.service_info)
        self.revisions = cache(Resource(kn.GROUP, kn.VERSION, "revisions"), kn.revision_info)

    @property
    def all(self) -> tuple[ResourceCache, ...]:
        return (self.policies, self.services, self.revisions)

    @property
    def listed(self) -> bool:
        return all(c.listed for c in self.all)

    def start(self, on_policy: OnChange | None = None) -> None:
        for w in self.policies.watches:
            w.on_change = on_policy
        for c in self.all:
            for w in c.watches:
                w.start()

    def stop(self) -> None:
        watches = [w for c in self.all for w in c.watches]
        for w in watches:  # interrupt them all first, then wait: they stop in parallel
            w._stopping.set()
            w._interrupt()
        for w in watches:
            w.stop()
