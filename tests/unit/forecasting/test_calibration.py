"""Quantile calibration maps (mesp_core.forecasting.calibration): checked on load, monotone, identity
where they have no map, and what the model's quantiles read through."""

import json
import shutil

import numpy as np
import pytest

from mesp_core import load_model
from mesp_core.forecasting.artifact import ArtifactError
from mesp_core.forecasting.calibration import CALIBRATION_SECTION, QuantileCalibration

LEVELS = [0.1, 0.5, 0.9]


def test_levels_are_interpolated_and_closed_at_0_and_1():
    calibration = QuantileCalibration(LEVELS, {"cluster-0": [0.2, 0.6, 0.95]})
    assert calibration.level("cluster-0", 0.5) == pytest.approx(0.6)
    assert calibration.level("cluster-0", 0.7) == pytest.approx(0.775)
    assert calibration.level("cluster-0", 0.05) == pytest.approx(0.1)     # towards (0, 0)
    assert calibration.level("cluster-0", 0.95) == pytest.approx(0.975)   # towards (1, 1)
    assert calibration.level("cluster-9", 0.37) == 0.37                   # no map: the nominal level
    values = [calibration.level("cluster-0", q) for q in np.linspace(0.001, 0.999, 200)]
    assert np.all(np.diff(values) >= 0) and 0.0 < min(values) and max(values) < 1.0


def test_the_manifest_round_trip_keeps_every_map():
    calibration = QuantileCalibration(LEVELS, {"cluster-0": [0.2, 0.6, 0.95], "naive": [0.05, 0.5, 0.8]})
    again = QuantileCalibration.from_manifest(json.loads(json.dumps(calibration.to_manifest(note="x"))))
    assert set(again.maps) == {"cluster-0", "naive"}
    for q in (0.03, 0.1, 0.42, 0.9, 0.99):
        assert again.level("naive", q) == pytest.approx(calibration.level("naive", q))


@pytest.mark.parametrize("section, reason", [
    ({"version": 2, "levels": LEVELS, "maps": {}}, "version 2"),
    ({"version": 1, "levels": LEVELS}, "'levels' list and a 'maps' object"),
    ({"version": 1, "levels": [0.5, 0.1, 0.9], "maps": {}}, "increase strictly"),
    ({"version": 1, "levels": LEVELS, "maps": {"cluster-0": [0.2, 0.6]}}, "2 values for 3 levels"),
    ({"version": 1, "levels": LEVELS, "maps": {"cluster-0": [0.6, 0.2, 0.9]}}, "not monotone"),
    ({"version": 1, "levels": LEVELS, "maps": {"cluster-0": [0.0, 0.5, 0.9]}}, "outside (0, 1)"),
    ({"version": 1, "levels": LEVELS, "maps": {"cluster-0": ["a", 0.5, 0.9]}}, "could not convert"),
    ({"version": 1, "approach": "dense", "levels": LEVELS, "maps": {}}, "only 'moe'"),
    ([1, 2], "not an object"),
])
def test_a_corrupt_section_is_a_clear_artifact_error(tiny_model_dir, tmp_path, section, reason):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest[CALIBRATION_SECTION] = section
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="quantile_calibration") as info:
        load_model(folder)
    assert reason in str(info.value)


def test_without_a_section_the_model_reads_its_quantiles_as_they_are(tiny_model):
    assert CALIBRATION_SECTION not in tiny_model.manifest and tiny_model.quantile_calibration is None


def test_the_mixtures_quantiles_read_each_group_at_its_mapped_level(tiny_model, tiny_trace):
    import copy

    context = tiny_trace.counts[:16, :900]
    raw = tiny_model.forecast_distribution(context, 30)
    keys = sorted(set(raw.group_keys().tolist()))
    model = copy.copy(tiny_model)
    # Every group read at 0.95 whatever is asked: the 0.5 quantile becomes the raw 0.95 quantile.
    model.quantile_calibration = QuantileCalibration([0.01, 0.99], {k: [0.95, 0.95] for k in keys})
    mapped = model.forecast_distribution(context, 30)
    np.testing.assert_array_equal(mapped.point, raw.point)
    np.testing.assert_array_equal(mapped.quantile(0.5), raw.quantile(0.95))
    # Other approaches are not the mixture's groups: their quantiles stay as they are.
    for approach in ("naive", "dense"):
        np.testing.assert_array_equal(model.forecast_distribution(context, 30, approach).quantile(0.5),
                                      tiny_model.forecast_distribution(context, 30, approach).quantile(0.5))
