"""The numpy backend vs the torch backend on real functions: memory, speed, and whether they agree.

    python bench/bench_backends.py [--functions 1000] [--repeat 3] [--threads 1] [--json OUT]

Each backend runs in its own process (as `mesp operator` would), which records its resident memory
(VmRSS) after each stage: Python, numpy, the operator's imports (kopf, kubernetes, its modules),
torch (torch backend only), the packaged model loaded, and after the timed calls (caches, buffers).
The timed calls are what the operator's loop asks of the model, on --functions busy functions of
the real Azure sample with any invocation (their whole day as context): forecast_distribution + the 0.909 quantile +
explain_routes (the loop's batched forecast), floor_choose (a policy's reselect boundary) and
floor_plan with the kept floors (every other loop); best of --repeat, in ms per 1,000 functions.
The parent then compares the two processes' outputs: forecasts (allclose, rtol 1e-4), routes,
switched flags, floor choices and min-scale plans (how many of how many differ).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO.parent / "shared" / "data" / "azure2019" / "invocations_per_function_md.sample.csv.gz"


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def worker(backend: str, contexts: Path, repeat: int, threads: int, out: Path) -> None:
    stages = {"python": rss_mib()}
    import numpy as np

    stages["numpy"] = rss_mib()
    import kopf  # noqa: F401  (what `mesp operator` imports before it loads the model)
    import kubernetes  # noqa: F401

    import mesp_operator.main  # noqa: F401
    import mesp_operator.handlers  # noqa: F401
    import mesp_operator.reconcile  # noqa: F401

    stages["operator imports (kopf, kubernetes, mesp)"] = rss_mib()
    if backend == "torch":
        import torch

        torch.set_num_threads(threads)
        stages["torch"] = rss_mib()
    else:  # as `mesp operator` does: --torch-threads caps numpy's BLAS threads when numpy serves
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads, user_api="blas")
    import mesp_core

    busy = np.load(contexts)
    model = mesp_core.load_model(mesp_core.default_model_path(), backend=backend)
    assert model.backend == backend
    stages["model loaded"] = rss_mib()

    level = 10.0 / 11.0  # the operator's default cold-start cost 10

    def loop_forecast():
        distribution = model.forecast_distribution(busy, 60)
        return distribution, distribution.quantile(level), model.explain_routes(busy, switched=distribution.switched)

    def timed(fn):
        fn()  # warm-up: FFT plans, router spectra, allocator
        best = float("inf")
        for _ in range(repeat):
            started = time.perf_counter()
            result = fn()
            best = min(best, time.perf_counter() - started)
        return result, round(best * 1000 * 1000 / len(busy), 1)

    (distribution, upper, routes), forecast_ms = timed(loop_forecast)
    chosen, choose_ms = timed(lambda: model.floor_choose(busy, since=7))
    plan, plan_ms = timed(lambda: model.floor_plan(busy, 30, floors=chosen).plan)
    expert_plan = model.plan_min_scale(busy, 30, quantile=0.9)
    stages["after the timed calls"] = rss_mib()
    np.savez(out, point=distribution.point, upper=upper, switched=distribution.switched,
             clusters=np.array([r["cluster"] for r in routes]), distances=np.array([r["distance"] for r in routes]),
             chosen=np.array(chosen), plan=plan, expert_plan=expert_plan)
    print(json.dumps({"rss_mib": stages, "ms_per_1000_functions": {
        "forecast_distribution + quantile + explain_routes": forecast_ms,
        "floor_choose": choose_ms, "floor_plan (kept floors)": plan_ms}, "functions": len(busy)}))


def compare(numpy_out: dict, torch_out: dict) -> dict:
    import numpy as np

    def differing(name):
        a, b = numpy_out[name], torch_out[name]
        rows = (a != b).reshape(len(a), -1).any(axis=1)
        return f"{int(rows.sum())} of {len(a)} functions"

    report = {}
    for name in ("point", "upper"):
        a, b = numpy_out[name], torch_out[name]
        report[f"{name}: max |numpy - torch|"] = float(np.abs(a - b).max())
        report[f"{name}: max relative (of each function's largest)"] = float(
            (np.abs(a - b).max(axis=1) / np.maximum(np.abs(b).max(axis=1), 1e-6)).max())
        report[f"{name}: allclose rtol 1e-4 atol 1e-3"] = bool(np.allclose(a, b, rtol=1e-4, atol=1e-3))
    report["route distances: max |numpy - torch|"] = float(np.abs(numpy_out["distances"] - torch_out["distances"]).max())
    for name in ("clusters", "switched", "chosen", "plan", "expert_plan"):
        report[f"{name} differ"] = differing(name)
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--functions", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch's threads, or numpy's BLAS threads, as the operator's default (1)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--worker", choices=("numpy", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--contexts", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.contexts, args.repeat, args.threads, args.out)
        return 0
    import numpy as np

    from mesp_core.data.reader import read_invocations

    figures, outputs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        counts = read_invocations(SAMPLE).counts
        contexts = Path(tmp) / "contexts.npy"
        np.save(contexts, np.ascontiguousarray(counts[counts.sum(axis=1) > 0][:args.functions]))
        for backend in ("numpy", "torch"):
            out = Path(tmp) / f"{backend}.npz"
            done = subprocess.run([sys.executable, __file__, "--worker", backend, "--contexts", str(contexts),
                                   "--repeat", str(args.repeat), "--threads", str(args.threads), "--out", str(out)],
                                  capture_output=True, text=True, env=dict(os.environ), check=False)
            if done.returncode:
                print(done.stderr, file=sys.stderr)
                return 1
            figures[backend] = json.loads(done.stdout.strip().splitlines()[-1])
            with np.load(out) as data:
                outputs[backend] = {name: data[name] for name in data.files}
    figures["agreement"] = compare(outputs["numpy"], outputs["torch"])
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
