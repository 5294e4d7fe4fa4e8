"""MESP core: mixture-of-experts forecasting of serverless invocation traces.

Heavy modules (torch experts, training, plots) are imported lazily so that `import mesp_core`
stays cheap and never pulls optuna, matplotlib, kopf, kubernetes or prometheus_api_client.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "load_model"]


def load_model(path):
    """Load a trained MESP model artifact directory (see mesp_core.artifact)."""
    from mesp_core.model import load_model as _load

    return _load(path)
