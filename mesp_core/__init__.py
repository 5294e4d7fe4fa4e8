"""MESP core: mixture-of-experts forecasting of serverless invocation traces.

Packages by role: `data` (traces, generator, windows), `forecasting` (K-Shape, router, experts, the
model and its artifact), `policy` (forecast -> min-scale, pure), `offline` (training, backtest,
metrics, plots), `replay` (the cold-start replay) and `cli`. Heavy modules (torch experts, training,
plots) are imported lazily so that `import mesp_core` stays cheap and never pulls optuna,
matplotlib, kopf, kubernetes or prometheus_api_client.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "load_model", "default_model_path"]


def load_model(path, backend: str = "auto"):
    """Load a trained MESP model artifact directory (see mesp_core.forecasting.artifact). `backend`:
    "auto" (numpy when every expert family has a numpy forward, then torch is never imported),
    "numpy" or "torch"; `model.backend` says which one serves."""
    from mesp_core.forecasting.model import load_model as _load

    return _load(path, backend)


def default_model_path():
    """The model shipped inside the package (see mesp_core.forecasting.model.default_model_path)."""
    from mesp_core.forecasting.model import default_model_path as _path

    return _path()
