"""Connecting to Ray: the one place `import ray` happens, lazily, with a clear error without it."""

from __future__ import annotations

import contextlib
import functools
import socket

from mesp_core.offline.progress import peak_rss_mb

INSTALL_HINT = 'pip install "mesp[ray]"'


class RayUnavailableError(RuntimeError):
    """--ray was asked for but Ray is not installed (or the cluster cannot be reached)."""


def require_ray():
    """The `ray` module, or RayUnavailableError saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailableError(
            f"--ray needs the Ray package, which is not installed here ({exc}); install it with: {INSTALL_HINT}"
        ) from None
    return ray


def connect(address: str = "auto", **init_kwargs) -> bool:
    """Attach this process to a Ray cluster; True when this call started the connection.

    `address` "auto": the cluster named by RAY_ADDRESS (set inside a KubeRay RayJob) or started
    on this machine with `ray start --head`; when there is none, a local cluster of this
    machine's cores is started for the length of the run. Anything else is a cluster address
    (`HOST:6379`, `ray://HOST:10001`)."""
    ray = require_ray()
    if not address:
        raise ValueError("--ray needs 'auto' or a cluster address (HOST:PORT or ray://HOST:PORT)")
    if address != "auto":
        _check_reachable(address)  # Ray itself retries an unreachable address for minutes
    if ray.is_initialized():
        return False
    kwargs = {"log_to_driver": False, "include_dashboard": False, **init_kwargs}
    try:
        # ray.init(address=None) connects to RAY_ADDRESS / the latest local cluster, else starts one.
        ray.init(address=None if address == "auto" else address, **kwargs)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise RayUnavailableError(f"cannot reach the Ray cluster at {address!r}: {exc}") from None
    return True


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """RayUnavailableError unless something listens at the HOST:PORT of a cluster address."""
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise RayUnavailableError(f"--ray {address!r}: expected 'auto', HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise RayUnavailableError(f"cannot reach the Ray cluster at {address!r}: {exc}") from None


@contextlib.contextmanager
def ray_session(address: str = "auto", **init_kwargs):
    """`connect` for the length of a block; disconnects only when the block connected."""
    started = connect(address, **init_kwargs)
    try:
        yield require_ray()
    finally:
        if started:
            require_ray().shutdown()


def default_shards() -> int:
    """Shards for a run: two per CPU of the cluster, so a slow or lost worker holds up little."""
    ray = require_ray()
    cpus = int(ray.cluster_resources().get("CPU", 1))
    return max(2, 2 * cpus)


@functools.cache
def remote(fn, num_returns: int = 1, max_retries: int = 3, max_calls: int = 0):
    """`fn` as a Ray task (built on first use, so importing this package never imports Ray).

    Tasks are pure functions of their arguments, so Ray may rerun one on another worker when
    its worker dies (max_retries) and get the same result. `max_calls=1`: the worker process
    exits after the task (its memory goes back to the machine; 0 = reused without limit)."""
    return require_ray().remote(num_returns=num_returns, max_retries=max_retries, max_calls=max_calls)(fn)


def get_results(refs, errors=(ValueError,)):
    """`ray.get(refs)`, with a task's own error of one of the `errors` types raised as it is (bad
    input gets the single-process message, not Ray's wrapper)."""
    ray = require_ray()
    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, errors):
            raise exc.cause from None
        raise


def private_mb() -> float:
    """Private resident memory of the calling process now, MiB (Linux RssAnon).

    A Ray process maps the shared object store, and the store's pages it reads count in its RSS
    (and ru_maxrss) although no process owns them; this leaves them out. Sampled as a task ends,
    while its arrays are still alive, it is close to the task's own peak."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_mb()

