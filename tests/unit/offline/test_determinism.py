"""A seed and the data fix the model (mesp_core.offline.training): budgets are counts, every fit is
seeded, and the torch thread count does not change what is trained. The session's tiny model
(conftest.tiny_model_dir) is trained again here and compared with it."""

import json
from dataclasses import replace

import pytest
import torch

from ..conftest import TINY

# What may differ between two runs of the same training: when and how long it ran, and the thread
# count asked for (recorded in the config).
MACHINE_FIELDS = ("created",)
TRAINING_MACHINE_FIELDS = ("seconds", "stage_seconds")


def _decisions(model_dir) -> dict:
    """The manifest without the fields that record the machine rather than the model."""
    manifest = json.loads((model_dir / "manifest.json").read_text())
    for name in MACHINE_FIELDS:
        manifest.pop(name)
    training = manifest["training"]
    for name in TRAINING_MACHINE_FIELDS:
        training.pop(name)
    training["config"].pop("threads")
    return manifest


@pytest.fixture(scope="module")
def retrained(tmp_path_factory, tiny_trace):
    """The tiny model trained twice more: with the same seed on two torch threads, and with another seed."""
    from mesp_core.offline.training import train

    root = tmp_path_factory.mktemp("retrained")
    before = torch.get_num_threads()
    train(tiny_trace, root / "same-seed", replace(TINY, threads=2), progress=False)
    assert torch.get_num_threads() == before  # the caller's thread count comes back
    train(tiny_trace, root / "other-seed", replace(TINY, seed=1), progress=False)
    return root


def test_the_same_seed_and_data_train_the_same_model_whatever_the_thread_count(tiny_model_dir, retrained):
    first, again = _decisions(tiny_model_dir), _decisions(retrained / "same-seed")
    # The chosen experts and every metric the manifest records...
    assert [c["chosen"] for c in again["clusters"]] == [c["chosen"] for c in first["clusters"]]
    assert [c["ranking"] for c in again["clusters"]] == [c["ranking"] for c in first["clusters"]]
    assert again["dense"]["ranking"] == first["dense"]["ranking"]
    assert again["recent_check"] == first["recent_check"]
    # ...and, through the files' hashes, every weight and quantile bit for bit.
    assert again["files"] == first["files"]
    assert again == first
    assert first["training"]["cut_short"] == [] and first["training"]["config"]["max_fit_seconds"] is None


def test_budgets_are_counts_and_no_fit_was_stopped_by_a_clock(tiny_model_dir):
    manifest = json.loads((tiny_model_dir / "manifest.json").read_text())
    config = manifest["training"]["config"]
    for row in manifest["dense"]["ranking"]:
        for trial in row.get("trial_table", []):
            assert trial["epochs"] <= config["dense_epochs"] and trial["stopped"] in ("max_epochs", "early_stopping")
    fitted = [r for c in manifest["clusters"] for r in c["ranking"] if "epochs" in r]
    assert fitted, "the tiny clusters are big enough to fit candidates on"
    assert all(r["epochs"] <= config["cluster_epochs"] and not r["cut_short"] for r in fitted)


def test_another_seed_trains_another_model(tiny_model_dir, retrained):
    first, other = _decisions(tiny_model_dir), _decisions(retrained / "other-seed")
    # The seed picks the validation functions, the K-Shape start, the trials and every fit.
    assert other["training"]["config"]["seed"] == 1
    assert other["files"] != first["files"]
    assert other["dense"]["ranking"] != first["dense"]["ranking"]
