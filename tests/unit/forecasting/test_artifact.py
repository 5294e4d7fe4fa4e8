"""The versioned model folder (mesp_core.forecasting.artifact): the golden artifact still loads, and a
missing, corrupt or mismatched folder is refused with a clear ArtifactError."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mesp_core import load_model
from mesp_core.forecasting.artifact import ArtifactError

from ..paths import GOLDEN_MODEL as GOLDEN


def _copy_golden(tmp_path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(GOLDEN, target)
    return target


def test_golden_artifact_still_loads_and_forecasts_what_it_did():
    """An artifact written by MESP 0.1 (format_version 1) must keep loading, with the same output."""
    model = load_model(GOLDEN)
    expected = json.loads((GOLDEN / "expected.json").read_text())
    context = np.asarray(expected["context"], dtype=np.float32)
    for approach, values in expected["forecasts"].items():
        np.testing.assert_allclose(model.forecast(context, 60, approach=approach), values, rtol=1e-4, atol=1e-3)
    np.testing.assert_array_equal(model.route(context), expected["routes"])


def test_missing_folder_and_missing_manifest(tmp_path):
    with pytest.raises(ArtifactError, match="does not exist"):
        load_model(tmp_path / "nope")
    with pytest.raises(ArtifactError, match="no manifest.json"):
        load_model(tmp_path)


def test_corrupt_manifest(tmp_path):
    model_dir = _copy_golden(tmp_path)
    (model_dir / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="corrupt manifest"):
        load_model(model_dir)


def test_newer_format_version_is_refused_with_advice(tmp_path):
    model_dir = _copy_golden(tmp_path)
    manifest = json.loads((model_dir / "manifest.json").read_text())
    manifest["format_version"] = 99
    (model_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="newer than this MESP supports"):
        load_model(model_dir)


def test_flipped_byte_in_weights_is_caught(tmp_path):
    model_dir = _copy_golden(tmp_path)
    weights = sorted((model_dir / "experts").glob("*.safetensors"))[0]
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="corrupt"):
        load_model(model_dir)


def test_truncated_weights_without_hash_get_a_clear_error(tmp_path):
    model_dir = _copy_golden(tmp_path)
    manifest = json.loads((model_dir / "manifest.json").read_text())
    weights = next(iter(k for k in manifest["files"] if k.startswith("experts/")))
    manifest["files"].pop(weights)
    (model_dir / "manifest.json").write_text(json.dumps(manifest))
    (model_dir / weights).write_bytes(b"\x08\x00\x00")
    with pytest.raises(ArtifactError, match="cannot read weights"):
        load_model(model_dir)


def test_weights_that_do_not_fit_the_config(tmp_path):
    model_dir = _copy_golden(tmp_path)
    manifest = json.loads((model_dir / "manifest.json").read_text())
    entry = next(c for c in manifest["clusters"] if c["expert"]["weights"])
    entry["expert"]["config"]["input_size"] = entry["expert"]["config"]["input_size"] + 7
    (model_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="do not fit"):
        load_model(model_dir)


@pytest.mark.parametrize("damage", ["nan", "rows"])
def test_quantile_tables_that_cannot_size_a_floor_are_refused(tmp_path, damage):
    """Written under matching hashes (as a buggy trainer would): the table itself is checked."""
    from safetensors.torch import load_file, save_file

    from mesp_core.forecasting.artifact import sha256_file

    model_dir = _copy_golden(tmp_path)
    path = model_dir / "quantiles.safetensors"
    tables = load_file(path)
    name = sorted(tables)[0]
    tables[name] = tables[name].clone()
    if damage == "nan":
        tables[name][0, 0] = float("nan")
    else:
        tables[name] = tables[name][:-1]
    save_file(tables, path)
    manifest = json.loads((model_dir / "manifest.json").read_text())
    manifest["files"]["quantiles.safetensors"] = sha256_file(path)
    (model_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="NaN or infinite" if damage == "nan" else "one row per quantile level"):
        load_model(model_dir)
