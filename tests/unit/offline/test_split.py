"""Which functions each step may see (mesp_core.offline.split): fit / validation / held out by key hash."""

import copy

import numpy as np
import pytest

from mesp_core.data.synthetic import generate_trace
from mesp_core.data.trace import split_functions
from mesp_core.offline.split import function_split, held_out_functions, key_digest, replay_functions, seeded_sample


def test_held_out_functions_are_exactly_the_unseen_ones(tiny_model, tiny_trace):
    held = held_out_functions(tiny_model, tiny_trace)
    manifest = tiny_model.manifest["training_data"]
    assert len(held) == manifest["n_test_functions"]
    assert len(held) + manifest["n_fit_functions"] + manifest["n_val_functions"] == len(tiny_trace.keys)


def test_key_digest_is_a_stable_16_hex_prefix_of_the_keys_sha256():
    # Models on disk list these digests (training_keys.txt): the format must never change.
    assert key_digest(("o1", "a1", "f1")) == "9606cd097146f874"
    assert key_digest(("owner", "app", "function")) == "45b254f2bb27013d"
    assert key_digest(("o1", "a1", "f2")) != key_digest(("o1", "a1", "f1"))


def test_function_split_is_disjoint_complete_and_seeded():
    trace = generate_trace(n_functions=50, days=1, seed=4)
    fit, val, held = function_split(trace, test_fraction=0.2, val_fraction=0.25, seed=0)
    assert held.tolist() == split_functions(trace, 0.2, seed=0)[1].tolist()
    assert sorted([*fit, *val, *held]) == list(range(50))
    assert len(val) == 10 and len(fit) == 30  # a quarter of the 40 left
    assert all(np.all(np.diff(part) > 0) for part in (fit, val, held))  # each sorted
    again = function_split(trace, 0.2, 0.25, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip((fit, val, held), again))
    _, other_val, other_held = function_split(trace, 0.2, 0.25, seed=1)
    assert not np.array_equal(other_val, val) and not np.array_equal(other_held, held)
    assert len(function_split(trace, 0.2, 0.001, seed=0)[1]) == 1  # at least one validation function


def test_held_out_functions_follow_the_models_training_keys_file(tiny_model, tiny_trace, tmp_path):
    seen = [0, 3, 7]
    (tmp_path / "training_keys.txt").write_text("".join(key_digest(tiny_trace.keys[i]) + "\n" for i in seen))
    model = copy.copy(tiny_model)
    model.path = tmp_path
    held = held_out_functions(model, tiny_trace)
    assert held.dtype == np.int64 and held.tolist() == [i for i in range(len(tiny_trace.keys)) if i not in seen]
    assert replay_functions(model, tiny_trace).tolist() == held.tolist()
    assert replay_functions(model, tiny_trace, all_functions=True).tolist() == list(range(len(tiny_trace.keys)))
    (tmp_path / "training_keys.txt").unlink()  # no record: nothing counts as seen
    assert len(held_out_functions(model, tiny_trace)) == len(tiny_trace.keys)
    model.path = None
    assert len(held_out_functions(model, tiny_trace)) == len(tiny_trace.keys)


def test_the_tiny_models_training_keys_are_its_fit_and_validation_functions(tiny_model, tiny_trace):
    recorded = tiny_model.manifest["training"]["config"]
    fit, val, held = function_split(tiny_trace, recorded["test_fraction"], recorded["val_fraction"], recorded["seed"])
    listed = (tiny_model.path / "training_keys.txt").read_text().split()
    assert listed == [key_digest(tiny_trace.keys[i]) for i in sorted([*fit, *val])]
    assert held_out_functions(tiny_model, tiny_trace).tolist() == held.tolist()


def test_seeded_sample():
    rows = np.array([3, 10, 11, 40, 41, 57, 90, 91])
    sample = seeded_sample(rows, 4, seed=2)
    assert len(sample) == 4 and set(sample) <= set(rows) and sample.tolist() == sorted(sample.tolist())
    assert seeded_sample(rows, 4, seed=2).tolist() == sample.tolist()
    assert any(seeded_sample(rows, 4, seed=s).tolist() != sample.tolist() for s in range(3, 8))
    assert seeded_sample(rows, 8).tolist() == rows.tolist() and seeded_sample(rows, 100).tolist() == rows.tolist()
    with pytest.raises(ValueError, match="a sample needs at least 1 function, got 0"):
        seeded_sample(rows, 0)
