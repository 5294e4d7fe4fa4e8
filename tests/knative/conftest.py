"""Fixtures for the Knative suite: real Knative Serving controllers on a real control plane.

`knative_bed` starts hack/knative-bed.py's KnativeBed (etcd, kube-apiserver, controller-manager,
scheduler, KWOK, Knative's webhook, controller and autoscaler, the pods' stats stand-in and
Prometheus) in a network namespace of its own, and enters that namespace for this package's tests:
clients and processes the tests start reach the servers there, and nothing else. It is left, and
everything stopped, when the package is done.

Scenario code uses only what a kind cluster could give too (hack/e2e-kind.sh): an admin kubeconfig,
`set_load` for the pods' reported load, and the Prometheus URL.
Nothing here is skipped: a missing binary or tool is a failure with a message.
"""

from __future__ import annotations

import json

import pytest

from knative_helpers import TIMINGS, load_bed_module

knative_bed_module = load_bed_module()


@pytest.fixture(scope="package")
def knative_bed(tmp_path_factory):
    bed = knative_bed_module.KnativeBed(tmp_path_factory.mktemp("knative-bed"), nodes=1)
    bed.start(prometheus=True)
    TIMINGS.update({f"bed_{k}": round(v, 2) for k, v in bed.timings.items()})
    try:
        yield bed
    finally:
        (bed.workdir / "timings.json").write_text(json.dumps(TIMINGS, indent=2))
        bed.stop()


@pytest.fixture(scope="package")
def kube(knative_bed):
    """An admin ApiClient (created inside the bed's network namespace)."""
    from kubernetes import config

    api_client = config.new_client_from_config(str(knative_bed.admin_kubeconfig))
    yield api_client
    api_client.close()


def pytest_terminal_summary(terminalreporter):
    if TIMINGS:
        terminalreporter.write_sep("-", "Knative test bed timings (s)")
        for key, value in TIMINGS.items():
            terminalreporter.write_line(f"{key}: {value}")
