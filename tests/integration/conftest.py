"""Session fixtures: a real etcd + kube-apiserver + Prometheus on 127.0.0.1, Prometheus backfilled with
real Azure trace rows, the Knative and MESP CRDs, the chart's RBAC, and an in-process operator factory.

Nothing here is skipped: a missing binary or data file is a failure with a message saying what to install.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

import kube_helpers as kh

REPO = Path(__file__).resolve().parents[2]
SHARED_KNATIVE = REPO.parent / "shared" / "knative"
FIXTURE_KNATIVE = REPO / "tests" / "fixtures" / "knative"
MESP_CRD = REPO / "charts" / "mesp" / "crds" / "mesppolicies.mesp.dev.yaml"
TRACE = REPO.parent / "shared" / "data" / "azure2019" / "invocations_per_function_md.sample.csv.gz"
HISTORY_DAYS = 3
SAMPLES_PER_MINUTE = 4  # every 15 s, as a real scrape would give


# Test modules import shared helpers from kube_helpers, never from conftest: tests/unit has a
# conftest too, and `from conftest import ...` finds whichever was imported first.
control_plane_module = kh.control_plane_module


# ------------------------------------------------------------------------------------------ real data
def pick_peak_rows(counts: np.ndarray, n: int) -> list[int]:
    """Rows of the real sample with one clear, ramped daily peak (low baseline, peak 300-5000/min,
    at least half-height for 30-200 minutes, away from midnight, no minute-to-minute flicker),
    best peak-to-median ratio first."""
    from numpy.lib.stride_tricks import sliding_window_view

    smooth = sliding_window_view(counts, 10, axis=1).mean(-1)
    peak, median, at = smooth.max(1), np.median(smooth, 1), smooth.argmax(1)
    wide = (smooth > 0.5 * peak[:, None]).sum(1)
    # a ramp: 30 minutes before the peak the level is already up, but well below the peak
    before = smooth[np.arange(len(smooth)), np.clip(at - 30, 0, None)]
    ok = ((peak > 300) & (peak < 5000) & (at > 400) & (at < 1200) & (wide >= 30) & (wide <= 200)
          & (peak / (median + 1) > 4) & (before > 0.1 * peak) & (before < 0.7 * peak))
    # smooth minute to minute around the peak (no on/off flicker): mean |step| < 10% of the level
    rough = np.array([np.abs(np.diff(counts[i, max(a - 60, 0): a + 60])).mean() / (counts[i, max(a - 60, 0): a + 60].mean() + 1)
                      for i, a in enumerate(at)])
    idx = np.flatnonzero(ok & (rough < 0.1))
    idx = idx[np.argsort(-(peak / (median + 1))[idx], kind="stable")]
    if len(idx) < n:
        raise AssertionError(f"only {len(idx)} rows of {TRACE} have a clear ramped peak; need {n}")
    return [int(i) for i in idx[:n]]


@pytest.fixture(scope="session")
def real_rows():
    """Two real function-days with clear peaks: {'a': (counts[1440], peak_minute), 'b': ...}."""
    import pandas as pd

    assert TRACE.is_file(), f"real trace sample missing: {TRACE}"
    frame = pd.read_csv(TRACE)
    counts = frame.iloc[:, 4:].to_numpy(np.float64)
    rows = pick_peak_rows(counts, 2)
    out = {}
    for name, row in zip(("a", "b"), rows):
        day = counts[row]
        smooth = np.convolve(day, np.ones(10) / 10, mode="same")
        out[name] = (day, int(np.argmax(smooth)))
    return out


class History:
    """Which (namespace, service) has which real day, and where the backfilled days sit in time."""

    def __init__(self, end: int, rows: dict):
        self.end = end                          # unix time (minute-aligned) where the history stops
        self.start = end - HISTORY_DAYS * 1440 * 60
        self.rows = rows
        self.series: dict[tuple[str, str], str] = {}

    def day2_time(self, minute: int) -> int:
        """Unix time of the *end* of minute `minute` of the second (last) backfilled day."""
        return self.end - 1440 * 60 + (minute + 1) * 60

    def peak_time(self, row: str) -> int:
        return self.day2_time(self.rows[row][1])

    def counts(self, row: str) -> np.ndarray:
        return np.tile(self.rows[row][0], HISTORY_DAYS)


# Every Service a test uses and the real day it carries ("a"/"b"), backfilled once per session.
SERIES = {
    ("it-active", "peak-rev"): "a",
    ("it-template", "peak-tpl"): "a",
    ("it-forecast", "fo-svc"): "b",
    ("it-restore", "with-floor"): "a",
    ("it-restore", "no-floor"): "a",
    ("it-outage", "outage-svc"): "a",
    ("it-bad", "good-svc"): "b",
    ("it-bad", "override-svc"): "b",
    ("it-presets", "legacy-svc"): "a",
    ("it-rollout", "roll-svc"): "a",
    ("it-capacity", "timed-svc"): "a",
    ("it-cap", "capped-svc"): "a",
    ("it-cost", "cost-lo"): "a",     # the same real day twice: two policies, two costs, one traffic
    ("it-cost", "cost-hi"): "a",
    ("it-bad-cost", "cost-svc"): "b",
    # test_operator_fleet: eight Services shared by two replicas
    **{("it-fleet", f"fleet-{i}"): "ab"[i % 2] for i in range(8)},
    ("it-floor", "floor-svc"): "a",
    ("it-status", "steady-svc"): "a",
}
# One series in the OpenTelemetry-era layout (names on target_info), for the knative-otel preset.
OTEL_SERIES = {("it-presets", "otel-svc"): "a"}
DURATIONS_MS = kh.DURATIONS_MS  # latency histograms backfilled for these Services too


def write_openmetrics(path: Path, history: History) -> None:
    """Counters sampled every 15 s whose per-minute increase equals the real per-minute counts."""
    lines = ["# TYPE revision_request_count unknown"]
    offsets = [(k + 1) * 60 // SAMPLES_PER_MINUTE for k in range(SAMPLES_PER_MINUTE)]
    for (ns, svc), row in SERIES.items():
        labels = (f'namespace_name="{ns}",service_name="{svc}",configuration_name="{svc}",'
                  f'revision_name="{svc}-00001",response_code="200"')
        _counter_lines(lines, "revision_request_count", labels, history, row, offsets)
    # Latency histograms (only _sum and _count: the mean is all the operator reads), in ms.
    for suffix, unit in (("sum", None), ("count", 1.0)):
        name = f"revision_request_latencies_{suffix}"
        lines.append(f"# TYPE {name} unknown")
        for (ns, svc), row in SERIES.items():
            if (ns, svc) in DURATIONS_MS:
                labels = (f'namespace_name="{ns}",service_name="{svc}",configuration_name="{svc}",'
                          f'revision_name="{svc}-00001",response_code="200"')
                _counter_lines(lines, name, labels, history, row, offsets, unit or DURATIONS_MS[(ns, svc)])
    for suffix in ("count", "sum"):
        name = f"kn_serving_invocation_duration_seconds_{suffix}"
        lines.append(f"# TYPE {name} unknown")
        for i, ((ns, svc), row) in enumerate(OTEL_SERIES.items()):
            labels = f'job="queue-proxy",instance="10.0.0.{i + 1}:9091"'
            seconds = DURATIONS_MS[(ns, svc)] / 1000.0 if suffix == "sum" else 1.0
            _counter_lines(lines, name, labels, history, row, offsets, seconds)
    lines.append("# TYPE target_info unknown")
    for i, ((ns, svc), row) in enumerate(OTEL_SERIES.items()):
        labels = (f'job="queue-proxy",instance="10.0.0.{i + 1}:9091",k8s_namespace_name="{ns}",'
                  f'kn_service_name="{svc}",kn_revision_name="{svc}-00001"')
        for t in range(history.start, history.end + 1, 15):
            lines.append(f"target_info{{{labels}}} 1 {t}")
    lines.append("# EOF")
    path.write_text("\n".join(lines) + "\n")


def _counter_lines(lines, name, labels, history, row, offsets, per_request: float = 1.0):
    """A counter rising by `per_request` for each request of the real day (1: a request counter)."""
    counts = history.counts(row) * per_request
    total = 0.0
    lines.append(f"{name}{{{labels}}} 0 {history.start}")
    for m, c in enumerate(counts):
        base = history.start + m * 60
        for k, off in enumerate(offsets):  # spread each minute's requests evenly over its samples
            lines.append(f"{name}{{{labels}}} {total + c * (k + 1) / len(offsets):.1f} {base + off}")
        total += c


# ------------------------------------------------------------------------------------------ servers
@pytest.fixture(scope="session")
def history(real_rows):
    return History(end=int(time.time() // 60) * 60, rows=real_rows)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory, history):
    work = tmp_path_factory.mktemp("control-plane")
    om = work / "history.om"
    write_openmetrics(om, history)
    cp = control_plane_module.ControlPlane(work / "servers")
    cp.start(prometheus=True, backfill=om)
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="session")
def admin_client(control_plane):
    from kubernetes import config

    client = config.new_client_from_config(str(control_plane.admin_kubeconfig))
    yield client
    client.close()


def knative_crd_files() -> list[Path]:
    """The real Knative CRDs from ../shared/knative when present, else the project's minimal ones."""
    folder = SHARED_KNATIVE if (SHARED_KNATIVE / "service-crd.yaml").is_file() else FIXTURE_KNATIVE
    files = [folder / "service-crd.yaml", folder / "revision-crd.yaml"]
    for f in files:
        assert f.is_file(), f"Knative CRD fixture missing: {f}"
    return files


@pytest.fixture(scope="session")
def crds(admin_client):
    docs = []
    for path in knative_crd_files() + [MESP_CRD]:
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    for doc in docs:
        kh.create(admin_client, doc)
    kh.wait_crds_established(admin_client, [d["metadata"]["name"] for d in docs])
    return docs


def helm_binary() -> Path:
    out = subprocess.run([str(REPO / "hack" / "install-helm.sh")], check=True, stdout=subprocess.PIPE,
                         text=True).stdout.strip().splitlines()
    return Path(out[-1])


@pytest.fixture(scope="session")
def chart_rbac(admin_client, control_plane, crds):
    """The chart's own RBAC, rendered by helm, applied as the operator's ServiceAccount would get it."""
    ns = control_plane.operator_user.split(":")[2]
    sa = control_plane.operator_user.split(":")[3]
    rendered = subprocess.run(
        [str(helm_binary()), "template", "mesp", str(REPO / "charts" / "mesp"), "--namespace", ns,
         "--set", f"serviceAccount.name={sa}", "--show-only", "templates/rbac.yaml"],
        check=True, capture_output=True, text=True).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    assert {d["kind"] for d in docs} == {"ClusterRole", "ClusterRoleBinding"}
    kh.create(admin_client, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    for doc in docs:
        kh.create(admin_client, doc)
    return docs


@pytest.fixture(scope="session")
def model():
    """The packaged default model artifact (or $MESP_IT_MODEL), loaded once and shared by every in-process operator."""
    import os

    import torch

    from mesp_core.forecasting.model import default_model_path
    from mesp_operator.main import load_model
    from mesp_operator.settings import OperatorSettings

    torch.set_num_threads(1)
    path = Path(os.environ.get("MESP_IT_MODEL") or default_model_path())
    assert (path / "manifest.json").is_file(), f"default model artifact missing at {path}"
    return load_model(OperatorSettings(model_path=path))


@pytest.fixture
def make_namespace(admin_client, crds, chart_rbac):
    """Create a namespace (the CRDs and the chart's RBAC are installed first)."""

    def make(name: str) -> str:
        kh.create(admin_client, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        return name

    return make


@pytest.fixture
def run_operator(control_plane, model, chart_rbac):
    """Start the operator in this process, as the chart's ServiceAccount, against the real servers."""
    from mesp_operator.main import run_in_thread
    from mesp_operator.metrics import OperatorMetrics
    from mesp_operator.settings import OperatorSettings, validate

    started = []

    def start(namespace: str, clock=time.time, loaded=None, **overrides):
        """`loaded`: a (model, description) to run instead of the session's packaged model."""
        values = dict(
            kubeconfig=control_plane.operator_kubeconfig,
            prometheus_url=control_plane.prometheus_url,
            prometheus_timeout_seconds=2.0,
            loop_interval_seconds=0.5,
            namespaces=(namespace,),
            metrics_port=0,
            write_concurrency=4,
            metrics_preset="knative-legacy",  # the layout of most backfilled Services (auto would pick otel's)
        )
        values.update(overrides)
        settings = validate(OperatorSettings(**values))
        metrics = OperatorMetrics()
        chosen = loaded or model
        thread, ready, stop = run_in_thread(settings, model=chosen[0], model_description=chosen[1], clock=clock,
                                            metrics=metrics)
        started.append((thread, stop))
        ready.result(timeout=60)
        return metrics

    yield start
    for thread, stop in started:
        stop.set_result(None)
        thread.join(timeout=30)
        assert not thread.is_alive(), "the operator did not stop within 30 s"

