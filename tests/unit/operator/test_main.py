"""`mesp operator`'s entry point: the model loaded once with a one-line description, kopf logged in with
the same credentials as the loop's client, and bad input answered with one line."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from kubernetes import client

from mesp_operator.decisions import model_context_minutes
from mesp_operator.errors import ModelError
from mesp_operator.main import _connection_info, load_model, replayed_clock, run
from mesp_operator.settings import OperatorSettings

GOLDEN_MODEL = Path(__file__).resolve().parents[3] / "tests" / "golden" / "model_v1"


def test_the_model_is_loaded_with_a_description_of_its_artifact():
    model, description = load_model(OperatorSettings(model_path=GOLDEN_MODEL))
    assert hasattr(model, "forecast_distribution") and hasattr(model, "explain_routes")
    assert description.startswith(f"{GOLDEN_MODEL} (format mesp-model v1, ")
    # The history the loop feeds it, as the reconciler computes it (the seasonal experts' two days
    # here; the manifest's input_size_max is only the trained experts' cap).
    context = model_context_minutes(model.manifest)
    assert context > model.manifest["input_size_max"]
    # Every network in it (DLinear) has a numpy forward: numpy serves it, and the status says so.
    assert model.backend == "numpy"
    assert description.endswith(f" clusters, reads {context} min of history, served by numpy on 1 thread)")
    _, overridden = load_model(OperatorSettings(model_path=GOLDEN_MODEL, context_minutes=600))
    assert overridden.endswith("reads 600 min of history, served by numpy on 1 thread)")
    forced, described = load_model(OperatorSettings(model_path=GOLDEN_MODEL, model_backend="torch", torch_threads=1))
    assert forced.backend == "torch" and described.endswith(", served by torch on 1 thread)")


def test_the_replayed_clock_starts_where_asked_and_runs_faster():
    ticks = iter([100.0, 100.0, 102.0, 103.0])
    clock = replayed_clock(1_767_225_600.0, 30.0, wall=lambda: next(ticks))
    assert clock() == 1_767_225_600.0
    assert clock() == 1_767_225_600.0 + 60.0  # two wall seconds are a minute at 30x
    anchored = replayed_clock(1_767_225_600.0, 30.0, anchor=90.0, wall=lambda: next(ticks))
    assert anchored() == 1_767_225_600.0 + 13 * 30.0  # it read the start at wall time 90


def test_an_unusable_artifact_is_a_model_error(tmp_path):
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(ModelError, match=f"cannot load model artifact {tmp_path}"):
        load_model(OperatorSettings(model_path=tmp_path))


def test_kopf_logs_in_with_the_clients_token_and_certificates():
    config = client.Configuration()
    config.host, config.ssl_ca_cert, config.verify_ssl = "https://127.0.0.1:6443", "/ca.crt", True
    config.api_key = {"authorization": "Bearer abc"}
    info = _connection_info(client.ApiClient(config))
    assert (info.server, info.ca_path, info.insecure) == ("https://127.0.0.1:6443", "/ca.crt", False)
    assert (info.scheme, info.token) == ("Bearer", "abc")
    config.api_key = {}
    config.cert_file, config.key_file = "/client.crt", "/client.key"
    info = _connection_info(client.ApiClient(config))
    assert info.token is None and info.scheme is None
    assert (info.certificate_path, info.private_key_path) == ("/client.crt", "/client.key")


def test_bad_settings_end_with_one_line_and_exit_code_2(capsys):
    assert run(["--write-concurrency", "0"]) == 2
    assert capsys.readouterr().err == "mesp operator: --write-concurrency: must be between 1 and 128\n"


def test_mesp_operator_logs_at_info_as_its_deployment_runs_it(tmp_path):
    """`mesp operator` (the chart's and the image's command) logs its start at INFO: the CLI's own
    logging set-up (warnings only) once took effect first and left a running operator's log empty."""
    kubeconfig = tmp_path / "kubeconfig"  # an API server nobody listens on: the start is logged first
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: x\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1', insecure-skip-tls-verify: true}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n")
    log = tmp_path / "operator.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "mesp_core.cli", "operator", "--model", str(GOLDEN_MODEL),
                                 "--kubeconfig", str(kubeconfig), "--namespace", "x", "--metrics-port", "0"],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while "INFO mesp.operator: model: " not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, f"mesp operator exited with {proc.returncode}:\n{log.read_text()[-2000:]}"
            time.sleep(0.2)
    finally:
        proc.kill()
        proc.wait(10)
    assert f"INFO mesp.operator: model: {GOLDEN_MODEL}" in log.read_text(), log.read_text()[-2000:]


def test_the_operator_serves_the_packaged_model_without_importing_torch():
    """What `mesp operator` loads and runs per loop: its modules, the packaged model (numpy serves it,
    torch is never imported: ~0.5 GB less memory), a batched forecast and the floor stage's choice."""
    code = textwrap.dedent("""
        import sys
        import time
        import numpy as np
        import mesp_operator.main, mesp_operator.handlers, mesp_operator.reconcile, mesp_operator.runtime
        from mesp_core.data.synthetic import generate_trace
        from mesp_operator.forecast import Sizing, floor_batch, forecast_batch
        from mesp_operator.settings import parse_settings

        model, description = mesp_operator.main.load_model(parse_settings([], env={}))
        contexts = generate_trace(n_functions=40, days=2, seed=3).counts[:, -1440:].astype(np.float32)
        sizing = Sizing(10.0)
        batch = forecast_batch(model, contexts, [("moe", 1440, sizing)] * 40)
        minute = int(time.time() // 60)
        floors = floor_batch(model, contexts, [(1440, 1, 60.0, sizing)] * 40, minute=minute,
                             keys=[f"uid-{i}" for i in range(40)], records=[None] * 40)
        assert all(name is not None for name in floors.names) and len(batch.routes) == 40
        from threadpoolctl import threadpool_info

        blas = {info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"}
        print(description.rsplit(",", 1)[1], "torch" in sys.modules, *blas)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["served", "by", "numpy", "on", "1", "thread)", "False", "1"]
