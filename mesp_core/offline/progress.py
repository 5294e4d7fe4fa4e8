"""Progress for long offline work: stage lines with elapsed time, and tqdm bars, on stderr."""

from __future__ import annotations

import sys
import time


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
