"""The running operator around the loop: kopf's settings, waking the loop, and the deletion finalizer."""

from __future__ import annotations

import asyncio
import logging

import kopf
import pytest
from kubernetes.client.exceptions import ApiException

from mesp_operator.runtime import FINALIZER, KOPF_WORKER_LIMIT, Runtime, configure_kopf
from mesp_operator.settings import OperatorSettings
from mesp_operator.spec import PolicyObject

BODY = {"metadata": {"namespace": "ns", "name": "p", "uid": "u-1", "generation": 2}, "spec": {"service": "fn"}}


class _Reconciler:
    def __init__(self, answer):
        self.answer, self.restored = answer, []

    def restore_policy(self, policy):
        self.restored.append(policy.key)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_kopf_keeps_its_state_in_mesps_annotations_and_adds_mesps_finalizer():
    settings = kopf.OperatorSettings()
    configure_kopf(settings)
    assert settings.persistence.finalizer == FINALIZER == "mesp.dev/restore-min-scale"
    assert isinstance(settings.persistence.progress_storage, kopf.AnnotationsProgressStorage)
    assert settings.scanning.disabled and settings.posting.level == logging.WARNING
    # No kopf index is left, so a worker limit cannot hold start-up back (it did with indexes).
    assert settings.queueing.worker_limit == KOPF_WORKER_LIMIT


def test_only_a_new_generation_or_object_wakes_the_loop_early():
    runtime = Runtime(OperatorSettings(), _Reconciler(None))
    policy = PolicyObject.from_body(BODY)
    runtime.on_policy(policy.key, policy)
    assert runtime.wake.is_set()
    runtime.wake.clear()
    runtime.on_policy(policy.key, policy)  # a status write: same generation
    assert not runtime.wake.is_set()
    runtime.on_policy(policy.key, PolicyObject.from_body({"metadata": {**BODY["metadata"], "generation": 3}}))
    assert runtime.wake.is_set()
    runtime.wake.clear()
    runtime.on_policy(policy.key, None)  # deleted, then created again under the same name
    assert not runtime.wake.is_set() and not runtime.generations
    runtime.on_policy(policy.key, PolicyObject.from_body({"metadata": {**BODY["metadata"], "uid": "u-2"}}))
    assert runtime.wake.is_set()


def test_deletion_restores_and_logs_what_it_did(caplog):
    reconciler = _Reconciler("Revision fn-00001: min-scale restored to 1")
    with caplog.at_level(logging.INFO):
        asyncio.run(Runtime(OperatorSettings(), reconciler).restore_on_delete(BODY, logging.getLogger("t")))
    assert reconciler.restored == [("ns", "p")]
    assert "min-scale restored to 1" in caplog.text


@pytest.mark.parametrize("error,kopf_error", [(ApiException(status=503), kopf.TemporaryError),
                                              (ApiException(status=403), kopf.PermanentError)])
def test_a_failed_restore_is_retried_by_kopf_only_when_retrying_can_help(error, kopf_error):
    runtime = Runtime(OperatorSettings(), _Reconciler(error))
    with pytest.raises(kopf_error, match="restoring min-scale: API"):
        asyncio.run(runtime.restore_on_delete(BODY, logging.getLogger("t")))
