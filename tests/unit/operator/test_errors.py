"""Every failure classified in one place: kind, retryable, one-line message."""

from __future__ import annotations

import json

import pytest
from kubernetes.client.exceptions import ApiException

from mesp_operator.errors import MetricsError, PolicyError, classify


@pytest.mark.parametrize("exc,kind,retryable", [
    (ApiException(status=409, reason="Conflict"), "api_conflict", True),
    (ApiException(status=503, reason="Unavailable"), "api_server", True),
    (ApiException(status=429, reason="Too Many"), "api_server", True),
    (ApiException(status=403, reason="Forbidden"), "api_forbidden", False),
    (ApiException(status=422, reason="Invalid"), "api_rejected", False),
    (MetricsError("down"), "prometheus", True),
    (PolicyError("bad"), "policy_invalid", False),
    (TimeoutError("slow"), "timeout", True),
    (ConnectionRefusedError("no"), "connection", True),
    (__import__("urllib3").exceptions.ReadTimeoutError(None, "/", "read timed out"), "timeout", True),
    (__import__("urllib3").exceptions.MaxRetryError(None, "/", "refused"), "connection", True),
])
def test_errors_are_classified_in_one_place(exc, kind, retryable):
    info = classify(exc)
    assert (info.kind, info.retryable) == (kind, retryable)
    assert "\n" not in info.message


def test_api_error_message_comes_from_the_status_body():
    exc = ApiException(status=422, reason="Invalid")
    exc.body = json.dumps({"message": "spec.mode: Unsupported value"})
    assert classify(exc).message == "API 422: spec.mode: Unsupported value"


def test_the_operators_own_errors_carry_their_kind():
    from mesp_operator.errors import ModelError, SettingsError, TargetNotFound

    assert [(classify(e).kind, classify(e).retryable) for e in
            (SettingsError("x"), ModelError("x"), TargetNotFound("x"), MetricsError("x", "PrometheusTimeout"))] == \
        [("settings", False), ("model", False), ("target_missing", True), ("prometheus", True)]
    assert MetricsError("x").reason == "PrometheusUnavailable"


def test_messages_are_one_short_line():
    info = classify(ValueError("first line\n  second line " + "x" * 1000))
    assert info.kind == "unexpected" and info.retryable
    assert info.message.startswith("ValueError: first line second line x") and len(info.message) == 400
    assert info.message.endswith("...")
    assert classify(ApiException(status=0, reason="no answer")).kind == "api_server"
    assert classify(ApiException(status=404, reason="Not Found")).message == "API 404: Not Found"
