"""Every failure the operator can meet, classified in one place.

Retryable errors (API conflicts and 5xx, Prometheus timeouts/outages) leave the last good state in place
and are retried on the next loop; permanent errors (a bad policy spec, a missing target, a forbidden
call) are reported in the policy's status and as an Event, and are not retried until something changes.
"""

from __future__ import annotations

import dataclasses
import json
import socket


class MespOperatorError(Exception):
    """Base of the operator's own errors; `kind` is the label used in metrics and conditions."""

    kind = "operator"
    retryable = False


class SettingsError(MespOperatorError):
    """Bad start-up settings (flags/env); the message is one line meant for the user."""

    kind = "settings"


class PolicyError(MespOperatorError):
    """A MespPolicy that cannot be acted on as written (reported in its status)."""

    kind = "policy_invalid"


class TargetNotFound(MespOperatorError):
    """The Knative Service (or its ready Revision) a policy points to does not exist (yet)."""

    kind = "target_missing"
    retryable = True


class MetricsError(MespOperatorError):
    """Prometheus did not deliver usable counts: down, slow, or answering garbage."""

    kind = "prometheus"
    retryable = True

    def __init__(self, message: str, reason: str = "PrometheusUnavailable"):
        super().__init__(message)
        self.reason = reason


class ModelError(MespOperatorError):
    """The model artifact could not be loaded or failed on a batch."""

    kind = "model"


class NotOwner(MespOperatorError):
    """This replica no longer holds the shard Lease of the policy it was about to write for."""

    kind = "shard_not_owned"
    retryable = True


@dataclasses.dataclass(frozen=True)
class Classified:
    kind: str          # short label for metrics ("api_conflict", "prometheus_timeout", ...)
    retryable: bool
    message: str       # one line, safe to put in a status condition


def _api_reason(body) -> str:
    try:
        return json.loads(body).get("message", "") or ""
    except (TypeError, ValueError, AttributeError):
        return str(body or "")[:200]


def classify(exc: BaseException) -> Classified:
    """Map any exception to (kind, retryable, one-line message). The single source of that decision."""
    if isinstance(exc, MespOperatorError):
        return Classified(exc.kind, exc.retryable, _one_line(str(exc)))

    from kubernetes.client.exceptions import ApiException  # local: keeps this module cheap to import

    if isinstance(exc, ApiException):
        status = int(exc.status or 0)
        detail = _one_line(f"API {status}: {_api_reason(exc.body) or exc.reason}")
        if status == 409:
            return Classified("api_conflict", True, detail)
        if status == 429 or status >= 500 or status == 0:
            return Classified("api_server", True, detail)
        if status == 404:
            return Classified("api_not_found", True, detail)
        if status in (401, 403):
            return Classified("api_forbidden", False, detail)
        return Classified("api_rejected", False, detail)

    import requests
    import urllib3

    # urllib3's errors are what the kubernetes client raises when the API server does not answer.
    if isinstance(exc, (requests.Timeout, socket.timeout, TimeoutError, urllib3.exceptions.TimeoutError)):
        return Classified("timeout", True, _one_line(f"timed out: {exc}"))
    if isinstance(exc, (requests.ConnectionError, ConnectionError, urllib3.exceptions.HTTPError)):
        return Classified("connection", True, _one_line(f"connection failed: {exc}"))
    return Classified("unexpected", True, _one_line(f"{type(exc).__name__}: {exc}"))


def _one_line(text: str, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
