"""Killing a Ray worker in the middle of a task, for the tests that check Ray reruns it with the same result."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path


def _descendants(root: int) -> list[int]:
    """Processes below `root` (this test's Ray nodes and their workers), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    found, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        children = [child for child, parent in parents.items() if parent == pid]
        found += children
        frontier += children
    return found


def running(task: str) -> list[int]:
    """Our Ray workers executing `task` right now (Ray titles them ray::<task>)."""
    pids = []
    for pid in _descendants(os.getpid()):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        if title.startswith(f"ray::{task}"):
            pids.append(pid)
    return pids


@contextlib.contextmanager
def kill_one_worker_running(task: str, after_seconds: float = 0.0):
    """While the body runs, SIGKILL the first of our Ray workers seen executing `task` (after it has
    run `after_seconds`). Yields the list of killed pids: empty when no such task was caught running."""
    killed: list[int] = []
    done = threading.Event()

    def kill():
        while not done.is_set() and not killed:
            for pid in running(task):
                time.sleep(after_seconds)
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                break
            time.sleep(0.005)

    killer = threading.Thread(target=kill)
    killer.start()
    try:
        yield killed
    finally:
        done.set()
        killer.join()
