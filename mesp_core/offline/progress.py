"""Progress for long offline work: stage lines with elapsed time, tqdm bars on stderr, peak memory."""

from __future__ import annotations

import resource
import sys
import time


def peak_rss_mb() -> float:
    """Peak resident memory of the calling process so far, MiB (ru_maxrss is KiB on Linux)."""
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / (1 << 20)


class Progress:
    """Stage lines on stderr plus tqdm bars where a stage has many steps."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.started = time.monotonic()

    def stage(self, text: str) -> None:
        if self.enabled:
            print(f"[{time.monotonic() - self.started:6.0f}s] {text}", file=sys.stderr, flush=True)

    def bar(self, total: int, desc: str):
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, disable=not self.enabled, leave=False, file=sys.stderr)
