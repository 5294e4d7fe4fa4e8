"""FFT sizes (mesp_core.forecasting.fftsize): the smallest 2^a 3^b 5^c at or above a length."""

import pytest

from mesp_core.forecasting.fftsize import fast_fft_length


def _smooth(n: int) -> bool:
    for p in (2, 3, 5):
        while n % p == 0:
            n //= p
    return n == 1


def test_every_length_up_to_4400_gets_the_smallest_fast_size_at_or_above_it():
    smooth = [m for m in range(1, 5000) if _smooth(m)]
    for n in range(1, 4401):
        assert fast_fft_length(n) == next(m for m in smooth if m >= n), n


@pytest.mark.parametrize("n, expected", [(1, 1), (7, 8), (1440, 1440), (1441, 1458), (2879, 2880), (4097, 4320)])
def test_known_sizes(n, expected):
    assert fast_fft_length(n) == expected
