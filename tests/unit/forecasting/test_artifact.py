"""The versioned model folder (mesp_core.forecasting.artifact): the golden artifact still loads, and a
missing, corrupt or mismatched folder is refused with a clear ArtifactError."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mesp_core import load_model
from mesp_core.forecasting.artifact import (
    FORMAT_VERSION,
    ArtifactError,
    commit_output_dir,
    load_tensors,
    prepare_output_dir,
    read_manifest,
    save_tensors,
    sha256_file,
    write_manifest,
)

from ..paths import GOLDEN_MODEL as GOLDEN


def _copy_golden(tmp_path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(GOLDEN, target)
    return target


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_golden_artifact_still_loads_and_forecasts_what_it_did(backend):
    """An artifact written by MESP 0.1 (format_version 1) must keep loading, with the same output,
    whichever backend serves it."""
    model = load_model(GOLDEN, backend=backend)
    assert model.backend == backend
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


def test_tensors_round_trip_under_their_hash_and_a_changed_file_is_caught(tmp_path):
    tensors = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3).t()}  # not contiguous: saved all the same
    digest = save_tensors(tmp_path / "sub" / "w.safetensors", tensors)
    assert digest == sha256_file(tmp_path / "sub" / "w.safetensors")
    loaded = load_tensors(tmp_path, "sub/w.safetensors", digest)
    assert torch.equal(loaded["w"], tensors["w"])
    assert torch.equal(load_tensors(tmp_path, "sub/w.safetensors", None)["w"], tensors["w"])  # no hash: not checked
    with pytest.raises(ArtifactError, match="is corrupt"):
        load_tensors(tmp_path, "sub/w.safetensors", "0" * 64)
    with pytest.raises(ArtifactError, match="weights file sub/x.safetensors is missing"):
        load_tensors(tmp_path, "sub/x.safetensors", None)


def test_manifest_round_trip_and_what_is_not_a_manifest(tmp_path):
    write_manifest(tmp_path, {"clusters": [], "value": np.float32(0.5), "table": np.arange(2)})
    manifest = read_manifest(tmp_path)
    assert list(manifest)[:2] == ["format", "format_version"] and manifest["format_version"] == FORMAT_VERSION
    assert manifest["value"] == 0.5 and manifest["table"] == [0, 1]
    assert not (tmp_path / "manifest.json.tmp").exists()
    for text, message in [('{"format": "other", "format_version": 1}', "not a MESP model manifest"),
                          ('["a list"]', "not a MESP model manifest"),
                          ('{"format": "mesp-model", "format_version": "1"}', "no integer format_version")]:
        (tmp_path / "manifest.json").write_text(text)
        with pytest.raises(ArtifactError, match=message):
            read_manifest(tmp_path)


def test_a_model_folder_is_replaced_whole_and_another_folder_never(tmp_path):
    out = tmp_path / "models" / "m"
    staging = prepare_output_dir(out)
    assert staging.parent == out.parent and staging.name.startswith(".m.staging-") and not any(staging.iterdir())
    write_manifest(staging, {"n": 1})
    assert commit_output_dir(staging, out) == out and json.loads((out / "manifest.json").read_text())["n"] == 1
    assert not staging.exists()

    again = prepare_output_dir(out)  # an existing model folder is replaced, not merged
    (out / "stale.bin").write_bytes(b"old")
    write_manifest(again, {"n": 2})
    commit_output_dir(again, out)
    assert json.loads((out / "manifest.json").read_text())["n"] == 2 and not (out / "stale.bin").exists()

    with pytest.raises(ArtifactError, match="already exists"):
        prepare_output_dir(out, overwrite=False)
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("keep me")
    with pytest.raises(ArtifactError, match="is not a MESP model folder; refusing to overwrite"):
        commit_output_dir(prepare_output_dir(precious), precious)
    assert (precious / "thesis.tex").read_text() == "keep me"
