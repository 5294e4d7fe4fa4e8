"""Fixtures for the Knative suite: real Knative Serving controllers on a real control plane.

`knative_bed` starts hack/knative-bed.py's KnativeBed (etcd, kube-apiserver, controller-manager,
scheduler, KWOK, Knative's webhook, controller and autoscaler, the pods' stats stand-in and
Prometheus) in a network namespace of its own, and enters that namespace for this package's tests:
clients and processes the tests start reach the servers there, and nothing else. It is left, and
everything stopped, when the package is done.

Scenario code uses only what a kind cluster gives too: with MESP_KNATIVE_KUBECONFIG set (and
MESP_KNATIVE_1_20_KUBECONFIG for the Knative 1.20 scenarios), no bed is started and the same
scenarios run on that cluster (tests/knative/external_bed.py; hack/e2e-kind.sh sets them up).
Nothing here is skipped: a missing binary or tool is a failure with a message.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import yaml

from external_bed import ExternalBed, external_kubeconfig
from knative_helpers import (AFTER_PEAK, REPLAYED, REPLAYED_1_20, REPLAYED_PAST, REPO, TIMINGS, TRACE, Replay,
                             integration_conftest, load_bed_module, write_history)
import kube_helpers as kh  # tests/integration's, put on sys.path by knative_helpers

knative_bed_module = load_bed_module()
MESP_CRD = REPO / "charts" / "mesp" / "crds" / "mesppolicies.mesp.dev.yaml"


@pytest.fixture(scope="package")
def real_day():
    """A real function-day from the Azure sample with a clear, ramped peak (the integration suite's
    choice of rows): (per-minute counts, peak minute)."""
    import numpy as np
    import pandas as pd

    assert TRACE.is_file(), f"real trace sample missing: {TRACE}"
    counts = pd.read_csv(TRACE).iloc[:, 4:].to_numpy(np.float64)
    row = integration_conftest().pick_peak_rows(counts, 1)[0]
    day = counts[row]
    return day, int(np.argmax(np.convolve(day, np.ones(10) / 10, mode="same")))


@contextlib.contextmanager
def running_bed(tmp_path_factory, real_day, services, serving_version=None, label="knative-bed", past=()):
    """A started KnativeBed whose Prometheus holds the real day for `services`, the bed's start
    MINUTES_BEFORE_PEAK minutes before its peak and the day going on in real time (bed.replay says where in time);
    entered while it runs, stopped (and left) afterwards. The `past` Services hold the same day wholly
    in the past (bed.past_replay says where). Beds nest: the inner one is left back into the outer."""
    work = tmp_path_factory.mktemp(label)
    history = work / "history.om"
    now = time.time()
    replay, past_replay = Replay(*real_day, now), Replay(*real_day, now, after_peak=AFTER_PEAK)
    write_history(history, [(replay, s) for s in services] + [(past_replay, s) for s in past])
    kwargs = {"serving_version": serving_version} if serving_version else {}
    external = external_kubeconfig(serving_version)
    bed = ExternalBed(external, work / "servers") if external else \
        knative_bed_module.KnativeBed(work / "servers", nodes=1, **kwargs)
    bed.start(prometheus=True, backfill=history)
    bed.replay, bed.past_replay = replay, past_replay
    try:
        yield bed
    finally:
        bed.stop()


@contextlib.contextmanager
def admin_client(bed):
    """An admin ApiClient (create it while inside the bed's network namespace)."""
    from kubernetes import config

    api_client = config.new_client_from_config(str(bed.admin_kubeconfig))
    try:
        yield api_client
    finally:
        api_client.close()


def apply_chart_rbac(kube, bed) -> list[dict]:
    """The MESP CRD and the chart's own RBAC (rendered by helm) for the operator's ServiceAccount,
    whose token the bed's operator kubeconfig carries: the operator runs with exactly those rights."""
    ns, sa = bed.operator_user.split(":")[2:4]
    rendered = subprocess.run(
        [str(integration_conftest().helm_binary()), "template", "mesp", str(REPO / "charts" / "mesp"),
         "--namespace", ns, "--set", f"serviceAccount.name={sa}", "--show-only", "templates/rbac.yaml"],
        check=True, capture_output=True, text=True).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    assert {d["kind"] for d in docs} == {"ClusterRole", "ClusterRoleBinding"}
    crd = yaml.safe_load(MESP_CRD.read_text())
    kh.create(kube, crd)
    kh.wait_crds_established(kube, [crd["metadata"]["name"]])
    kh.create(kube, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    for doc in docs:
        kh.create(kube, doc)
    return docs


@contextlib.contextmanager
def operators(bed, log_dir: Path):
    """Yields start(namespace, *flags, **env): `mesp operator` as a user starts it (the installed
    console script, flags and MESP_* env), as the chart's ServiceAccount, with the packaged model.
    Every one started is stopped (SIGINT) afterwards and must exit 0."""
    mesp = Path(sys.executable).with_name("mesp")
    assert mesp.is_file(), f"the mesp console script is missing next to {sys.executable}: pip install -e ."
    started = []

    def start(namespace: str, *extra: str, **env: str) -> Path:
        log = log_dir / f"operator-{len(started)}.log"
        argv = [str(mesp), "operator", "--kubeconfig", str(bed.operator_kubeconfig),
                "--namespace", namespace, "--metrics-port", "0", *extra]
        environ = dict(os.environ, MESP_PROMETHEUS_URL=bed.prometheus_url, MESP_TORCH_THREADS="1", **env)
        with open(log, "wb") as out:
            started.append((subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=environ), log))
        return log

    try:
        yield start
    finally:
        for proc, _ in started:
            proc.send_signal(signal.SIGINT)
        for proc, log in started:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    for proc, log in started:
        assert proc.returncode == 0, f"mesp operator exited with {proc.returncode}:\n{log.read_text()[-3000:]}"


@pytest.fixture(scope="package")
def knative_bed(tmp_path_factory, real_day):
    """The bed of the pinned Knative (1.21), shared by the package's scenarios."""
    with running_bed(tmp_path_factory, real_day, REPLAYED.values(), past=[REPLAYED_PAST]) as bed:
        TIMINGS.update({f"bed_{k}": round(v, 2) for k, v in bed.timings.items()})
        try:
            yield bed
        finally:
            (bed.workdir / "timings.json").write_text(json.dumps(TIMINGS, indent=2))


@pytest.fixture(scope="package")
def replay(knative_bed):
    """Where the real day sits in time on the package's bed (its peak is ahead of the bed's start)."""
    return knative_bed.replay


@pytest.fixture(scope="package")
def kube(knative_bed):
    with admin_client(knative_bed) as api_client:
        yield api_client


@pytest.fixture(scope="package")
def chart_rbac(kube, knative_bed):
    return apply_chart_rbac(kube, knative_bed)


@pytest.fixture
def mesp_operator(knative_bed, chart_rbac, tmp_path):
    with operators(knative_bed, tmp_path) as start:
        yield start


@pytest.fixture(scope="module")
def knative_1_20(tmp_path_factory, real_day):
    """A second bed with Knative 1.20 (serving v0.47.0, the release before a Revision's min-scale
    reaches its PodAutoscaler), with the chart's RBAC and an operator starter:
    .bed, .kube, .replay, .start_operator(namespace, *flags). Its module runs inside this bed's
    namespace."""
    with running_bed(tmp_path_factory, real_day, [REPLAYED_1_20], serving_version="0.47.0", label="knative-1.20") as bed, \
            admin_client(bed) as kube:
        apply_chart_rbac(kube, bed)
        with operators(bed, bed.workdir) as start:
            yield types.SimpleNamespace(bed=bed, kube=kube, replay=bed.replay, start_operator=start)


def pytest_terminal_summary(terminalreporter):
    if TIMINGS:
        terminalreporter.write_sep("-", "Knative test bed timings (s)")
        for key, value in TIMINGS.items():
            terminalreporter.write_line(f"{key}: {value}")
