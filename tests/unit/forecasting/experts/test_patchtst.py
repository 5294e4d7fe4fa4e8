"""PatchTST (mesp_core.forecasting.experts.patchtst): overlapping patches of the context, a small
transformer and a flatten head."""

import itertools

import pytest
import torch

from mesp_core.forecasting.experts import PatchTST
from mesp_core.forecasting.experts.patchtst import n_patches


@pytest.mark.parametrize("input_size, patch_len, stride", [(240, 16, 16), (120, 24, 12), (100, 16, 16), (60, 12, 7)])
def test_n_patches_counts_the_patches_the_network_cuts(input_size, patch_len, stride):
    # The context is padded at the end with `stride` copies of its last value, as in the paper.
    padded = torch.zeros(1, input_size + stride)
    assert padded.unfold(1, patch_len, stride).shape[1] == n_patches(input_size, patch_len, stride)
    expert = PatchTST(horizon=5, input_size=input_size, patch_len=patch_len, stride=stride, d_model=8, n_heads=2, d_ff=16)
    assert expert.module.position.shape == (n_patches(input_size, patch_len, stride), 8)
    assert expert.predict(torch.ones(2, input_size).numpy()).shape == (2, 5)


def test_every_combination_the_search_may_pick_builds():
    for input_size, patch_len, d_model, n_heads in itertools.product((120, 240, 480), (12, 16, 24), (32, 64), (2, 4)):
        PatchTST(horizon=5, input_size=input_size, patch_len=patch_len, stride=patch_len, d_model=d_model,
                 n_heads=n_heads, d_ff=64)


def test_patches_longer_than_the_context_and_uneven_heads_are_refused():
    with pytest.raises(ValueError, match="patch_len 32 exceeds input_size 24"):
        PatchTST(horizon=5, input_size=24, patch_len=32)
    with pytest.raises(ValueError, match="d_model 30 must be a multiple of n_heads 4"):
        PatchTST(horizon=5, input_size=48, d_model=30, n_heads=4)
