"""The reconcile loop's own behaviour, with stand-ins for the model, Prometheus and the API."""

from __future__ import annotations

import pytest
from kubernetes.client.exceptions import ApiException

from mesp_operator.reconcile import Reconciler
from mesp_operator.settings import OperatorSettings
from mesp_operator.spec import parse_spec

SETTINGS = OperatorSettings()


class _FlakyKnative:
    """Answers the Knative version check from a script: a (supported, why) tuple or an exception."""

    def __init__(self, answers):
        self.answers = list(answers)

    def revision_annotations_supported(self):
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_a_passing_api_error_does_not_switch_auto_actuation(monkeypatch):
    from mesp_operator import reconcile

    knative = _FlakyKnative([ApiException(status=503), (True, "Knative 1.21"), ApiException(status=503)])
    reconciler = Reconciler(SETTINGS, model=None, source=None, knative=knative, store=None)
    try:
        spec = parse_spec({"service": "svc"}, SETTINGS)
        with pytest.raises(ApiException):  # nothing known yet: this write fails and is retried
            reconciler._actuation_for(spec)
        assert reconciler._plans_for_template(spec) is False  # planning goes on meanwhile
        assert reconciler._actuation_for(spec)[0] == "Revision"
        monkeypatch.setattr(reconcile, "SUPPORT_RECHECK_SECONDS", -1.0)  # ask again: 503 this time
        assert reconciler._actuation_for(spec)[0] == "Revision"  # the last answer stands
    finally:
        reconciler.close()
