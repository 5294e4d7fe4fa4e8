"""Context preparation (cut / tile-pad / validate) and window cutting."""

import numpy as np
import pytest

from mesp_core.data.windows import WindowSet, make_windows, prepare_contexts


def test_prepare_contexts_cuts_long_contexts_to_their_last_minutes():
    x = np.arange(20, dtype=np.float32).reshape(2, 10)
    out = prepare_contexts(x, 4)
    assert out.dtype == np.float32 and out.shape == (2, 4)
    np.testing.assert_array_equal(out, x[:, -4:])


def test_prepare_contexts_tiles_short_contexts_backwards():
    out = prepare_contexts(np.array([[1.0, 2.0, 3.0]]), 8)
    # The real minutes stay at the end; earlier positions repeat them with period 3.
    np.testing.assert_array_equal(out[0], [2, 3, 1, 2, 3, 1, 2, 3])


def test_prepare_contexts_accepts_ragged_lists():
    rows = [np.arange(5.0), np.arange(2.0), np.arange(12.0)]
    out = prepare_contexts(rows, 6)
    np.testing.assert_array_equal(out[0], [4, 0, 1, 2, 3, 4])
    np.testing.assert_array_equal(out[1], [0, 1, 0, 1, 0, 1])
    np.testing.assert_array_equal(out[2], np.arange(6.0, 12.0))


def test_prepare_contexts_list_and_array_agree():
    rng = np.random.default_rng(3)
    for width in (1, 7, 59, 60, 61, 300):
        arr = rng.poisson(4, size=(3, width)).astype(np.float32)
        np.testing.assert_array_equal(prepare_contexts(arr, 60), prepare_contexts(list(arr), 60))


def test_tiling_keeps_a_timer_periodic():
    period = 15
    pattern = np.zeros(period)
    pattern[0] = 9.0
    context = np.tile(pattern, 6)  # 90 minutes
    out = prepare_contexts([context], 240)[0]
    assert np.array_equal(out[period:], out[:-period])


@pytest.mark.parametrize(
    "contexts, message",
    [
        (np.array([[1.0, np.nan, 2.0]]), "non-finite"),
        (np.array([[1.0, np.inf]]), "non-finite"),
        ([np.array([1.0, 2.0]), np.array([3.0, -1.0])], "context 1 contains a negative"),
        ([np.array([])], "context 0 has 0 minutes"),
        ([np.ones((2, 2))], "must be 1-D"),
        ([["a", "b"]], "not numeric"),
        (np.ones((2, 3, 4)), "2-D array"),
        ("abc", "2-D array"),
    ],
)
def test_prepare_contexts_rejects_bad_input_with_a_clear_message(contexts, message):
    with pytest.raises(ValueError, match=message):
        prepare_contexts(contexts, 10)


def test_prepare_contexts_enforces_min_length():
    with pytest.raises(ValueError, match="at least 60"):
        prepare_contexts(np.ones((1, 30)), 240, min_length=60)


def test_make_windows_contexts_and_targets_line_up():
    series = [np.arange(300, dtype=np.float32), 1000 + np.arange(200, dtype=np.float32)]
    w = make_windows(series, input_size=100, horizon=20, stride=40, min_context=60)
    assert isinstance(w, WindowSet)
    assert w.x.shape[1] == 100 and w.y.shape[1] == 20
    for x, y, s, t in zip(w.x, w.y, w.series, w.origin):
        full = series[s]
        np.testing.assert_array_equal(y, full[t : t + 20])
        np.testing.assert_array_equal(x[-min(t, 100) :], full[max(0, t - 100) : t])
    # Origins run back from the last possible one (len - horizon) every `stride` minutes.
    assert w.origin[w.series == 0].max() == 280
    assert np.all(np.diff(w.origin[w.series == 0]) == 40)
    assert w.origin.min() >= 60


def test_make_windows_pads_short_contexts_by_tiling():
    s = np.arange(200, dtype=np.float32)
    w = make_windows([s], input_size=120, horizon=10, origins=[80])
    np.testing.assert_array_equal(w.x[0], prepare_contexts([s[:80]], 120)[0])


def test_make_windows_with_fixed_origins_skips_impossible_ones():
    w = make_windows(np.ones((2, 200)), 60, 60, origins=[30, 100, 140, 150])
    # 30 is below min_context, 150 + 60 runs past the end.
    assert sorted(set(w.origin.tolist())) == [100, 140]
    assert len(w) == 4


def test_make_windows_max_windows_is_seeded():
    series = [np.arange(1000, dtype=np.float32) for _ in range(5)]
    a = make_windows(series, 60, 10, stride=5, max_windows=50, rng=1)
    b = make_windows(series, 60, 10, stride=5, max_windows=50, rng=1)
    c = make_windows(series, 60, 10, stride=5, max_windows=50, rng=2)
    assert len(a) == 50
    np.testing.assert_array_equal(a.x, b.x)
    assert not np.array_equal(a.origin, c.origin)


def test_make_windows_rejects_bad_series():
    with pytest.raises(ValueError, match="series 1 contains a negative"):
        make_windows([np.ones(200), -np.ones(200)], 60, 10)
    with pytest.raises(ValueError, match="single 1-D array"):
        make_windows(np.ones(200), 60, 10)


def test_windowset_subset_and_shape_checks():
    w = make_windows([np.arange(400, dtype=np.float32)], 60, 10, stride=50)
    sub = w.subset(w.origin > 200)
    assert len(sub) == int((w.origin > 200).sum()) and sub.horizon == 10 and sub.input_size == 60
    with pytest.raises(ValueError, match="disagree"):
        WindowSet(np.zeros((3, 5)), np.zeros((2, 4)), np.zeros(3))
