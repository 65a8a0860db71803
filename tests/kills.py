"""Kill anywhere: seeded kill points, several per test, drawn rather than picked by hand.

A test draws where its run is killed (after which step, shard or part), kills it with SIGKILL
there, starts it again, and so on; the last start runs to the end. The seed is in the test, so
a failure replays exactly.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Callable


def kill_points(seed: int, count: int, low: int, high: int) -> list[int]:
    """`count` distinct points in [low, high], in the order the runs reach them."""
    return sorted(random.Random(seed).sample(range(low, high + 1), count))


def kill_when(process: subprocess.Popen, reached: Callable[[], bool], what: str,
              timeout_s: float = 240, group: bool = False) -> None:
    """SIGKILL `process` (its whole process group with `group`) as soon as `reached()`.

    Polls every 5 ms: a training step here takes tens of milliseconds, and a kill that lands
    a step late is still a kill at a drawn point, but not the one the test reports.
    """
    deadline = time.monotonic() + timeout_s
    while not reached():
        if process.poll() is not None:
            raise AssertionError(f"the run ended (exit {process.returncode}) before {what}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"the run never got to {what} in {timeout_s:.0f} s")
        time.sleep(0.005)
    if group:
        os.killpg(process.pid, signal.SIGKILL)
    else:
        process.send_signal(signal.SIGKILL)
    process.wait()
