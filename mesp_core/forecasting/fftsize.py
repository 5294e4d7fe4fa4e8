"""FFT sizes: the FFT-based kernels (router, seasonal naive) pad to lengths the FFT handles fast."""


def fast_fft_length(n: int) -> int:
    """Smallest 2^a * 3^b * 5^c >= n (sizes pocketfft and torch.fft handle quickly)."""
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            size = p35
            while size < n:
                size *= 2
            best = min(best, size)
            p35 *= 3
        p5 *= 5
    return best
