"""`mesp operator`: parse and validate settings, load the model, run kopf with MESP's handlers."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from typing import Callable, Sequence

from mesp_operator.errors import MespOperatorError, ModelError, SettingsError
from mesp_operator.settings import OperatorSettings, parse_settings

log = logging.getLogger("mesp.operator")


def load_model(settings: OperatorSettings):
    """(model, one-line description) from --model or the built-in default artifact; ModelError when unusable.

    The model is served by numpy when every network in it has a numpy forward (--model-backend auto):
    torch is then never imported, which saves ~0.5 GB of memory. Otherwise torch serves it. Either
    way its math runs on --torch-threads threads (torch's, or numpy's BLAS)."""
    import mesp_core

    path = settings.model_path
    if path is None:
        from mesp_core.forecasting.model import default_model_path

        path = default_model_path()
    try:
        model = mesp_core.load_model(path, backend=settings.model_backend)
    except ImportError as exc:  # torch is a core dependency; the message below is clearer than a traceback
        raise ModelError(f"cannot load model artifact {path}: {exc}; install the mesp package with its "
                         "dependencies") from None
    except Exception as exc:  # ArtifactError and anything else the artifact triggers
        raise ModelError(f"cannot load model artifact {path}: {exc}") from None
    backend = getattr(model, "backend", "torch")
    if backend == "torch":
        import torch

        torch.set_num_threads(settings.torch_threads)
    else:
        # OpenBLAS starts a spinning thread per core: on a busy or CPU-limited node, two threads made
        # the loop's forecast 20-30x slower than one (5-10 s instead of 0.25 s per 1,000 functions).
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=settings.torch_threads, user_api="blas")
    from mesp_operator.decisions import model_context_minutes

    manifest = getattr(model, "manifest", {}) or {}
    clusters = len(manifest.get("clusters", []))
    # The history each loop fetches and feeds the model: the widest expert's input (not the
    # manifest's input_size_max, which caps only the trained experts, not the seasonal ones).
    context = settings.context_minutes or model_context_minutes(manifest)
    threads = f" on {settings.torch_threads} thread{'s' if settings.torch_threads > 1 else ''}"
    description = (f"{path} (format {manifest.get('format', '?')} v{manifest.get('format_version', '?')}, "
                   f"{clusters} clusters, reads {context} min of history, served by {backend}{threads})")
    return model, description


def replayed_clock(start: float, speed: float, anchor: float | None = None,
                   wall: Callable[[], float] = time.time) -> Callable[[], float]:
    """A clock that reads `start` (unix time) at wall-clock time `anchor` (default: now) and runs
    `speed` times faster than the wall clock: the operator then reads a past day from Prometheus and
    plans on it as if it were today."""
    origin = wall() if anchor is None else anchor
    return lambda: start + (wall() - origin) * speed


def kube_api_client(settings: OperatorSettings, pool_size: int):
    """One kubernetes ApiClient for the loop's writes (kopf logs in with the same credentials)."""
    from kubernetes import client, config

    configuration = client.Configuration()
    if settings.kubeconfig is not None:
        config.load_kube_config(config_file=str(settings.kubeconfig), client_configuration=configuration)
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration)
    else:
        config.load_kube_config(client_configuration=configuration)
    configuration.connection_pool_maxsize = pool_size
    configuration.retries = 1
    return client.ApiClient(configuration)


def _connection_info(api_client):
    import kopf

    cfg = api_client.configuration
    if cfg.refresh_api_key_hook is not None:  # in-cluster: the projected token file is rotated by the kubelet
        cfg.refresh_api_key_hook(cfg)
    token = (cfg.api_key or {}).get("authorization") or (cfg.api_key or {}).get("BearerToken")
    scheme = "Bearer"
    if token and " " in token:
        scheme, token = token.split(" ", 1)
    prefix = (cfg.api_key_prefix or {}).get("authorization")
    if prefix:
        scheme = prefix
    return kopf.ConnectionInfo(
        server=cfg.host,
        ca_path=cfg.ssl_ca_cert,
        insecure=not cfg.verify_ssl,
        username=cfg.username or None,
        password=cfg.password or None,
        scheme=scheme if token else None,
        token=token,
        certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file,
        expiration=None,
    )


async def operate(settings: OperatorSettings, *, model=None, model_description: str = "",
                  clock: Callable[[], float] = time.time, ready_flag=None, stop_flag=None,
                  metrics=None) -> None:
    """Run the operator until stop_flag (or a signal). Embeddable: tests pass a clock and flags."""
    import kopf

    from mesp_operator.handlers import build_registry
    from mesp_operator.knative import KnativeClient
    from mesp_operator.metrics import OperatorMetrics
    from mesp_operator.prometheus import PrometheusSource
    from mesp_operator.reconcile import Reconciler
    from mesp_operator.runtime import Runtime
    from mesp_operator.store import PolicyStore
    from mesp_operator.watch_cache import Caches

    if model is None:
        model, model_description = await asyncio.to_thread(load_model, settings)
    metrics = metrics or OperatorMetrics()
    manifest = getattr(model, "manifest", {}) or {}
    metrics.model.labels(str(getattr(model, "path", settings.model_path) or "demo"),
                         str(manifest.get("format_version", "")), str(len(manifest.get("clusters", [])))).set(1)
    api_client = kube_api_client(settings, pool_size=settings.write_concurrency + 4)
    shards = None
    if settings.shards:
        from mesp_operator.sharding import ShardLeases, replica_identity

        replica = replica_identity(settings.replica_id)
        # The API server's audit log then tells which replica made each write.
        api_client.user_agent = f"mesp-operator/{replica}"
        namespace = settings.lease_namespace or os.environ.get("POD_NAMESPACE") or "default"
        shards = ShardLeases(api_client, namespace, settings.lease_name, replica, settings.shards,
                             settings.lease_duration_seconds)
        log.info("replica %s: %d shards, Leases %s/%s-*, lease duration %gs", replica, settings.shards, namespace,
                 settings.lease_name, settings.lease_duration_seconds)
    source = PrometheusSource(settings.prometheus_url, timeout=settings.prometheus_timeout_seconds,
                              preset=settings.metrics_preset, promql=settings.promql)
    reconciler = Reconciler(settings, model, source, KnativeClient(api_client), PolicyStore(api_client),
                            metrics=metrics, clock=clock, model_description=model_description)
    # The caches' watches hold one connection each for minutes: their own pool, not the writers'.
    namespaces = list(settings.namespaces)
    cache_client = kube_api_client(settings, pool_size=3 * max(1, len(namespaces)))
    caches = Caches(cache_client, namespaces,
                    on_error=lambda info: metrics.errors.labels(info.kind).inc())
    runtime = Runtime(settings, reconciler, caches, clock=clock, shards=shards)
    reconciler.owns = runtime.owns  # checked before every write
    server = None
    if settings.metrics_port:
        server, _thread = metrics.serve(settings.metrics_port, settings.metrics_address)

    registry = build_registry(lambda: _connection_info(api_client))
    try:
        await kopf.operator(
            registry=registry,
            standalone=True,
            clusterwide=not settings.namespaces,
            namespaces=list(settings.namespaces),
            liveness_endpoint=settings.liveness_endpoint,
            memo=kopf.Memo(runtime=runtime),
            ready_flag=ready_flag,
            stop_flag=stop_flag,
        )
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        api_client.close()
        cache_client.close()


def run(argv: Sequence[str] | None = None) -> int:
    """Entry point of `mesp operator`. Returns a process exit code; bad input gets one line, not a traceback."""
    try:
        settings = parse_settings(argv)
    except SettingsError as exc:
        print(f"mesp operator: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.DEBUG if settings.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not settings.verbose:
        logging.getLogger("kopf").setLevel(logging.WARNING)
    try:
        model, description = load_model(settings)
        log.info("model: %s", description)
        clock = time.time if settings.clock_start is None else \
            replayed_clock(settings.clock_start, settings.clock_speed, settings.clock_anchor)
        if settings.clock_start is not None:
            log.info("replayed clock: from %s, %gx the wall clock", settings.clock_start, settings.clock_speed)
        asyncio.run(operate(settings, model=model, model_description=description, clock=clock))
    except MespOperatorError as exc:
        print(f"mesp operator: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


def run_operator(argv: Sequence[str] | None = None) -> int:
    """Alias kept for the CLI: `mesp operator ARGS` -> run_operator(ARGS)."""
    return run(argv)


def run_in_thread(settings: OperatorSettings, **kwargs) -> tuple[threading.Thread, "threading.Event", object]:
    """Start the operator in a background thread (tests, benchmarks). Returns (thread, ready, stop).

    `stop` is a concurrent.futures.Future: stop.set_result(None) stops the operator.
    """
    import concurrent.futures

    ready = concurrent.futures.Future()
    stop = concurrent.futures.Future()
    started = threading.Event()

    def target():
        started.set()
        asyncio.run(operate(settings, ready_flag=ready, stop_flag=stop, **kwargs))

    thread = threading.Thread(target=target, name="mesp-operator", daemon=True)
    thread.start()
    return thread, ready, stop
