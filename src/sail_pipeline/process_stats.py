"""What the kernel says about this process: when it started, and its peak resident memory.

Library code (the trainer reports its own peak); the Kedro glue's run timing reads them too.
"""

from __future__ import annotations

import os
import re
import resource
import time
from pathlib import Path


def process_started_at(pid: int | None = None) -> float:
    """When the kernel created the process (seconds since the epoch), so that the phase
    before the first line of Python (the interpreter and its imports) is measured too.

    On Linux from /proc: the start tick against the uptime, both since boot. (psutil adds
    the boot time in whole seconds, which put up to a second too many into `imports`.)
    """
    try:
        stat = Path(f"/proc/{pid or os.getpid()}/stat").read_text()
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return time.time() - (uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        import psutil

        return psutil.Process(pid or os.getpid()).create_time()


def peak_rss_mb() -> float:
    """This process's peak resident memory in MiB since it started, or since the last
    `reset_peak_rss()`: the kernel's VmHWM, else getrusage's ru_maxrss (never reset)."""
    try:
        status = Path("/proc/self/status").read_text()
        match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
        if match:
            return round(int(match.group(1)) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def reset_peak_rss() -> bool:
    """Restart the high-water mark at the current resident size (Linux: clear_refs 5), so
    the next `peak_rss_mb()` is the peak of what follows; False where the kernel cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False
