"""A fixed convex blend of experts (mesp_core.forecasting.experts.blend)."""

import numpy as np
import pytest


def test_blend_mixes_its_members_and_round_trips_through_safetensors(tmp_path):
    from safetensors.torch import load_file, save_file

    from mesp_core.forecasting.experts import Blend, build_expert

    rng = np.random.default_rng(0)
    contexts = [rng.poisson(20, size=n).astype(np.float32) for n in (90, 300, 1500)]
    naive = build_expert({"family": "seasonal_naive", "horizon": 30})
    net = build_expert({"family": "dlinear", "horizon": 30, "input_size": 120, "seed": 3})
    blend = Blend(horizon=30, members=[naive, net], weights=[0.25, 0.75])
    expected = 0.25 * naive.predict(contexts) + 0.75 * net.predict(contexts)
    np.testing.assert_allclose(blend.predict(contexts), np.maximum(expected, 0), rtol=1e-5, atol=1e-4)
    save_file(blend.state_dict(), str(tmp_path / "b.safetensors"))
    again = build_expert(blend.config(), load_file(str(tmp_path / "b.safetensors")))
    np.testing.assert_array_equal(again.predict(contexts), blend.predict(contexts))
    with pytest.raises(ValueError, match="sum to 1"):
        Blend(horizon=30, members=[naive, net], weights=[0.5, 0.7])
    with pytest.raises(ValueError, match="members it does not have"):
        build_expert(blend.config(), {**blend.state_dict(), "m7.x": blend.state_dict()[next(iter(blend.state_dict()))]})
