"""Reading Knative Services/Revisions and writing their min-scale, idempotently and conflict-safely.

Only one annotation is ever written on a user's object: `autoscaling.knative.dev/min-scale` (or its old
camelCase spelling when the object already uses that one: Knative rejects both at once). Revision mode
annotates the latest ready Revision (propagated without a rollout since Knative 1.21); Template mode
patches `spec.template.metadata.annotations`, which makes Knative create a new Revision each time.
"""

from __future__ import annotations

import dataclasses
import re
import time
from typing import Any, Mapping

GROUP = "serving.knative.dev"
VERSION = "v1"
MIN_SCALE = "autoscaling.knative.dev/min-scale"
MIN_SCALE_LEGACY = "autoscaling.knative.dev/minScale"
MAX_SCALE = "autoscaling.knative.dev/max-scale"
MAX_SCALE_LEGACY = "autoscaling.knative.dev/maxScale"
# Knative's webhook refuses a min-scale above an activation-scale (the pods a Revision starts with
# when it scales up from zero): it bounds MESP's floor like max-scale does.
ACTIVATION_SCALE = "autoscaling.knative.dev/activation-scale"
TARGET = "autoscaling.knative.dev/target"
SERVICE_LABEL = "serving.knative.dev/service"
REVISION_ANNOTATIONS_MIN_VERSION = (1, 21)
CONFLICT_RETRIES = 5
# The API server sheds load with 429 (priority and fairness) or 503: a write retries a few times,
# Retry-After honoured but capped, before giving up to the next loop (a minute later).
THROTTLE_RETRIES = 3
THROTTLE_MAX_DELAY_SECONDS = 2.0
THROTTLED_STATUSES = (429, 503)
# Seconds to connect and to wait for an answer, on every API call MESP makes itself: the client's
# default is to wait forever, and one hung connection would hold a write worker and the loop with it.
API_REQUEST_TIMEOUT = (5, 30)


def throttle_delay(exc, retry: int) -> float:
    """Seconds to wait before retry number `retry` (1, 2, ...) of a throttled request: the server's
    Retry-After when it sent one, else 0.25 s doubling; never more than THROTTLE_MAX_DELAY_SECONDS."""
    headers = getattr(exc, "headers", None) or {}
    try:
        asked = float(headers.get("Retry-After"))
    except (TypeError, ValueError):
        asked = 0.25 * 2 ** (retry - 1)
    return max(0.0, min(asked, THROTTLE_MAX_DELAY_SECONDS))


def with_throttle_retries(call, sleep=time.sleep):
    """call(), retried up to THROTTLE_RETRIES times while the API server answers 429 or 503."""
    from kubernetes.client.exceptions import ApiException

    for retry in range(1, THROTTLE_RETRIES + 2):
        try:
            return call()
        except ApiException as exc:
            if exc.status not in THROTTLED_STATUSES or retry > THROTTLE_RETRIES:
                raise
            sleep(throttle_delay(exc, retry))


def min_scale_key(annotations: Mapping[str, str] | None) -> str:
    """The key to write: the legacy one only when the object already uses it (and not the new one)."""
    annotations = annotations or {}
    if MIN_SCALE_LEGACY in annotations and MIN_SCALE not in annotations:
        return MIN_SCALE_LEGACY
    return MIN_SCALE


def read_scale(annotations: Mapping[str, str] | None, key: str, legacy: str) -> int | None:
    annotations = annotations or {}
    raw = annotations.get(key, annotations.get(legacy))
    if raw is None:
        return None
    try:
        value = int(str(raw).strip())
    except ValueError:
        return None
    return value if value >= 0 else None


def read_min_scale(annotations) -> int | None:
    return read_scale(annotations, MIN_SCALE, MIN_SCALE_LEGACY)


def read_max_scale(annotations) -> int | None:
    value = read_scale(annotations, MAX_SCALE, MAX_SCALE_LEGACY)
    return value if value else None  # 0 means "no limit" in Knative


def read_activation_scale(annotations) -> int | None:
    value = read_scale(annotations, ACTIVATION_SCALE, ACTIVATION_SCALE)
    return value if value else None


@dataclasses.dataclass(frozen=True)
class ServiceInfo:
    namespace: str
    name: str
    template_annotations: dict
    latest_ready_revision: str | None
    container_concurrency: int | None
    resource_version: str


@dataclasses.dataclass(frozen=True)
class RevisionInfo:
    namespace: str
    name: str
    annotations: dict
    service: str | None
    resource_version: str


def service_info(body: Mapping[str, Any]) -> ServiceInfo:
    meta = body.get("metadata", {})
    template = (body.get("spec") or {}).get("template") or {}
    tmeta = template.get("metadata") or {}
    tspec = template.get("spec") or {}
    status = body.get("status") or {}
    cc = tspec.get("containerConcurrency")
    return ServiceInfo(
        namespace=meta.get("namespace", ""),
        name=meta.get("name", ""),
        template_annotations=dict(tmeta.get("annotations") or {}),
        latest_ready_revision=status.get("latestReadyRevisionName"),
        container_concurrency=int(cc) if isinstance(cc, int) else None,
        resource_version=str(meta.get("resourceVersion", "")),
    )


def revision_info(body: Mapping[str, Any]) -> RevisionInfo:
    meta = body.get("metadata", {})
    return RevisionInfo(
        namespace=meta.get("namespace", ""),
        name=meta.get("name", ""),
        annotations=dict(meta.get("annotations") or {}),
        service=(meta.get("labels") or {}).get(SERVICE_LABEL),
        resource_version=str(meta.get("resourceVersion", "")),
    )


def parse_knative_version(text: str | None) -> tuple[int, int] | None:
    """'v1.21.0' / '1.21' -> (1, 21); anything without a release number ('devel', '') -> None."""
    if not text:
        return None
    m = re.match(r"v?(\d+)\.(\d+)", text.strip())
    return (int(m.group(1)), int(m.group(2))) if m else None


def revision_annotation_support(label: str | None) -> tuple[bool, str]:
    """(whether Revision annotations reach the PodAutoscaler, why) from the Revision CRD's version label.

    'devel' is what Knative's own YAML says before a release stamps it, so a build of any commit (an
    old one too: v0.47.0, Knative 1.20, says 'devel') carries it. It is decided as unknown on
    purpose: Template actuation works on every Knative, while a Revision annotation on a Knative
    before 1.21 is silently never acted on."""
    version = parse_knative_version(label)
    if version is None:
        what = ("'devel' (installed from source, release unknown)" if (label or "").strip().lower() == "devel"
                else f"version unknown ({label!r})")
        return False, (f"Knative {what}; assuming < 1.21, so Template (works on every Knative); "
                       f"set spec.actuation: Revision if this Knative is >= 1.21")
    ok = version >= REVISION_ANNOTATIONS_MIN_VERSION
    return ok, f"Knative {label}: Revision annotations {'propagate' if ok else 'need a new Revision'}"


@dataclasses.dataclass(frozen=True)
class WriteResult:
    changed: bool
    previous: str | None   # the value before this write (None: annotation absent)
    key: str


class KnativeClient:
    """Thin, synchronous writer over the kubernetes client (called from worker threads)."""

    def __init__(self, api_client):
        from kubernetes import client

        self.custom = client.CustomObjectsApi(api_client)
        self.apiext = client.ApiextensionsV1Api(api_client)

    def revision_annotations_supported(self) -> tuple[bool, str]:
        """(supported, why) from the installed Revision CRD's version labels."""
        from kubernetes.client.exceptions import ApiException

        try:
            crd = self.apiext.read_custom_resource_definition(f"revisions.{GROUP}",
                                                             _request_timeout=API_REQUEST_TIMEOUT)
        except ApiException as exc:
            if exc.status not in (403, 404):  # a passing failure (429, 5xx) says nothing about the version
                raise
            return False, f"cannot read the Revision CRD ({exc.status}); assuming Knative < 1.21"
        labels = crd.metadata.labels or {}
        found = [labels[k] for k in ("app.kubernetes.io/version", "serving.knative.dev/release") if labels.get(k)]
        # A release number on either label wins over 'devel' on the other.
        return revision_annotation_support(next((v for v in found if parse_knative_version(v)), found[0] if found else None))

    def get_service(self, namespace: str, name: str) -> dict:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "services", name,
                                                        _request_timeout=API_REQUEST_TIMEOUT)

    def get_revision(self, namespace: str, name: str) -> dict:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "revisions", name,
                                                        _request_timeout=API_REQUEST_TIMEOUT)

    def set_revision_min_scale(self, namespace: str, name: str, value: str | None,
                               known: RevisionInfo | None = None) -> WriteResult:
        """Set (or remove, value=None) min-scale on a Revision's own metadata."""

        def current(body):
            return (body.get("metadata") or {}).get("annotations") or {}

        def patch(key, rv):
            return {"metadata": {"resourceVersion": rv, "annotations": {key: value}}}

        first = None if known is None else (known.annotations, known.resource_version)
        return self._write(lambda: self.get_revision(namespace, name), current, patch,
                           lambda body: self.custom.patch_namespaced_custom_object(
                               GROUP, VERSION, namespace, "revisions", name, body,
                               _request_timeout=API_REQUEST_TIMEOUT),
                           value, first)

    def set_template_min_scale(self, namespace: str, name: str, value: str | None,
                               known: ServiceInfo | None = None) -> WriteResult:
        """Set (or remove) min-scale in a Service's revision template (Knative makes a new Revision)."""

        def current(body):
            return (((body.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("annotations") or {}

        def patch(key, rv):
            return {"metadata": {"resourceVersion": rv},
                    "spec": {"template": {"metadata": {"annotations": {key: value}}}}}

        first = None if known is None else (known.template_annotations, known.resource_version)
        return self._write(lambda: self.get_service(namespace, name), current, patch,
                           lambda body: self.custom.patch_namespaced_custom_object(
                               GROUP, VERSION, namespace, "services", name, body,
                               _request_timeout=API_REQUEST_TIMEOUT),
                           value, first)

    @staticmethod
    def _write(read, current_of, patch_of, send, value, first, sleep=time.sleep) -> WriteResult:
        """Compare-and-set on resourceVersion; re-read and retry on 409, wait and retry on 429/503
        (a few times each); no-op when already equal."""
        from kubernetes.client.exceptions import ApiException

        attempt = throttled = 0
        while True:
            try:
                if first is not None and attempt == 0:
                    annotations, rv = first
                else:
                    body = read()
                    annotations, rv = current_of(body), body["metadata"]["resourceVersion"]
                key = min_scale_key(annotations)
                previous = annotations.get(key)
                if previous == value:
                    return WriteResult(False, previous, key)
                send(patch_of(key, rv))
                return WriteResult(True, previous, key)
            except ApiException as exc:
                if exc.status in THROTTLED_STATUSES and throttled < THROTTLE_RETRIES:
                    throttled += 1
                    sleep(throttle_delay(exc, throttled))
                    continue
                if exc.status != 409:
                    raise
                attempt += 1
                if attempt > CONFLICT_RETRIES:
                    raise
