"""Write tests/golden/model_v1: a tiny model in artifact format 1 plus the forecasts it gives.

Run only when the artifact format changes on purpose (then add model_v2 beside it and keep v1):
the test suite loads this folder to prove that models written by older MESP versions keep loading
and keep forecasting exactly what they did.

    python hack/make-golden-artifact.py
"""

import json
from dataclasses import replace
from pathlib import Path

import torch

from mesp_core import load_model
from mesp_core.data.synthetic import generate_trace
from mesp_core.offline.config import TrainConfig
from mesp_core.offline.training import train

OUT = Path(__file__).resolve().parents[1] / "tests" / "golden" / "model_v1"

config = TrainConfig(
    k=3,
    families=("dlinear",),
    dense_trials=1,
    dense_top_n=1,
    scratch_trials=0,
    dense_epochs=4,
    cluster_epochs=2,
    max_dense_windows=2000,
    max_cluster_windows=800,
    min_cluster_windows=50,
    stride=60,
    threads=1,
)

torch.manual_seed(0)
train(generate_trace(n_functions=60, days=2, seed=11), OUT, replace(config), progress=True)
model = load_model(OUT, backend="torch")  # recorded as training serves it
context = generate_trace(n_functions=4, days=1, seed=12).counts[:, :600]
expected = {
    "context": context.tolist(),
    "routes": model.route(context).tolist(),
    "forecasts": {a: model.forecast(context, 60, approach=a).tolist() for a in ("moe", "dense", "naive")},
}
(OUT / "expected.json").write_text(json.dumps(expected) + "\n")
print(f"golden artifact written to {OUT}")
