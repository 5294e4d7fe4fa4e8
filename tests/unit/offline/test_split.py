"""Which functions each step may see (mesp_core.offline.split): fit / validation / held out by key hash."""

from mesp_core.offline.split import held_out_functions


def test_held_out_functions_are_exactly_the_unseen_ones(tiny_model, tiny_trace):
    held = held_out_functions(tiny_model, tiny_trace)
    manifest = tiny_model.manifest["training_data"]
    assert len(held) == manifest["n_test_functions"]
    assert len(held) + manifest["n_fit_functions"] + manifest["n_val_functions"] == len(tiny_trace.keys)
