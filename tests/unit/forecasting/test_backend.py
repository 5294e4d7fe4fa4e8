"""Which backend serves a model (mesp_core.forecasting.backend): numpy, with no torch import, when every
network in it has a numpy forward; torch when one has none (PatchTST, Autoformer) or when asked."""

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import mesp_core
from mesp_core.forecasting.artifact import ArtifactError, save_tensors
from mesp_core.forecasting.backend import choose_backend, torch_families
from mesp_core.forecasting.experts import EXPERT_FAMILIES, NUMPY_FAMILIES, TRAINABLE_FAMILIES, build_expert

from ..paths import GOLDEN_MODEL, REPO, SHARED_AZURE

SAMPLE = SHARED_AZURE / "invocations_per_function_md.sample.csv.gz"
PATCHTST = {"family": "patchtst", "horizon": 60, "input_size": 120, "d_model": 16, "n_heads": 2, "n_layers": 1,
            "d_ff": 32, "patch_len": 24, "stride": 24}


def test_the_registry_knows_which_families_need_torch_without_importing_them():
    assert set(EXPERT_FAMILIES) == NUMPY_FAMILIES | {"patchtst", "autoformer", "blend"}
    for family in EXPERT_FAMILIES:
        cls = EXPERT_FAMILIES[family]
        assert cls.family == family
        if family != "blend":  # a blend serves with numpy when its members do
            assert cls.numpy_ready == (family in NUMPY_FAMILIES), family
    assert TRAINABLE_FAMILIES == tuple(f for f in EXPERT_FAMILIES if EXPERT_FAMILIES[f].trainable)


def test_auto_picks_numpy_unless_a_family_in_the_model_has_no_numpy_forward():
    packaged = json.loads((mesp_core.default_model_path() / "manifest.json").read_text())
    assert torch_families(packaged) == []
    assert choose_backend(packaged) == "numpy" and choose_backend(packaged, "torch") == "torch"
    with_patchtst = json.loads(json.dumps(packaged))
    blend = with_patchtst["clusters"][3]["expert"]["config"]  # a blend of N-BEATS and LSTM
    blend["members"][1] = PATCHTST
    assert torch_families(with_patchtst) == ["patchtst"]
    assert choose_backend(with_patchtst) == "torch"
    with pytest.raises(ArtifactError, match="backend 'numpy' cannot serve this model: patchtst has no numpy forward"):
        choose_backend(with_patchtst, "numpy")
    with pytest.raises(ValueError, match="backend must be one of auto, numpy, torch"):
        mesp_core.load_model(GOLDEN_MODEL, backend="gpu")


def test_a_model_with_a_patchtst_expert_is_served_by_torch(tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(GOLDEN_MODEL, model_dir)
    manifest = json.loads((model_dir / "manifest.json").read_text())
    expert = build_expert({**PATCHTST, "seed": 3})  # seeded initial weights: a valid PatchTST
    manifest["clusters"][0]["expert"] = {"config": expert.config(), "weights": "experts/cluster-0.safetensors"}
    manifest["files"]["experts/cluster-0.safetensors"] = save_tensors(model_dir / "experts/cluster-0.safetensors",
                                                                       expert.state_dict())
    (model_dir / "manifest.json").write_text(json.dumps(manifest))

    model = mesp_core.load_model(model_dir)
    assert model.backend == "torch" and model.cluster_experts[0].family == "patchtst"
    rng = np.random.default_rng(0)
    context = rng.poisson(20, size=(5, 400)).astype(np.float32)
    np.testing.assert_allclose(model.cluster_experts[0].predict(context), expert.predict(context))
    assert model.forecast(context, 60).shape == (5, 60)
    with pytest.raises(ArtifactError, match="patchtst has no numpy forward"):
        mesp_core.load_model(model_dir, backend="numpy")


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=REPO,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.skipif(not SAMPLE.exists(), reason="the shared Azure sample is not beside the checkout")
def test_the_packaged_model_serves_real_functions_without_importing_torch():
    out = _run(f"""
        import sys
        import numpy as np
        import mesp_core
        from mesp_core.data.reader import read_invocations

        counts = read_invocations({str(SAMPLE)!r}).counts
        busy = counts[counts.sum(axis=1) > 100][:300]
        model = mesp_core.load_model(mesp_core.default_model_path())
        distribution = model.forecast_distribution(busy, 60)
        upper = distribution.quantile(0.95)
        routes = model.explain_routes(busy, switched=distribution.switched)
        floors = model.floor_choose(busy, since=7)
        plan = model.floor_plan(busy, 30, floors=floors).plan
        chosen = model.floor_plan(busy, 30, cold_start_cost=32.0).floors
        sized = model.plan_min_scale(busy, 30, quantile=0.9)
        assert upper.shape == (300, 60) and np.isfinite(upper).all() and len(routes) == 300
        assert plan.shape == sized.shape == (300, 30) and len(chosen) == 300
        print(model.backend, len({{r["expert"] for r in routes}}), int(plan.sum()) > 0, "torch" in sys.modules)
    """)
    backend, experts, planned, torch_loaded = out.split()
    assert (backend, planned, torch_loaded) == ("numpy", "True", "False")
    assert int(experts) >= 3  # several experts took part, not only the naive floor


def test_importing_mesp_core_and_its_serving_modules_does_not_import_torch():
    out = _run("""
        import sys
        import mesp_core, mesp_core.forecasting.model, mesp_core.forecasting.experts, mesp_core.forecasting.floors
        import mesp_core.forecasting.artifact, mesp_core.forecasting.router, mesp_core.forecasting.distribution
        print("torch" in sys.modules)
    """)
    assert out.split() == ["False"]
