"""Run a command under a hard memory limit set from inside the test, and read its peak.

The limit is a memory cgroup made for the one command (v2, or v1's memory controller), which
covers the command and every process it starts (Kedro and its trainer subprocesses): past the
limit the kernel kills it, and the test sees the kill. Where no cgroup can be made (no root, a
read-only /sys/fs/cgroup) it falls back to RLIMIT_AS on each process, which bounds address space
rather than resident memory, so its limit is the larger `address_space_bytes`.
"""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

_V2 = [Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")]
_V1 = Path("/sys/fs/cgroup/memory")


@dataclass(frozen=True)
class LimitedRun:
    result: subprocess.CompletedProcess
    mechanism: str  # "cgroup v2", "cgroup v1" or "RLIMIT_AS"
    limit_bytes: int
    peak_bytes: int | None  # the cgroup's peak usage (all of its processes); None: not known
    killed_by_limit: bool  # the cgroup's OOM killer fired


def _v2_root() -> Path | None:
    for root in _V2:
        controllers = root / "cgroup.controllers"
        if controllers.exists() and "memory" in controllers.read_text().split():
            subtree = root / "cgroup.subtree_control"
            if "memory" in subtree.read_text().split() or _enable_memory(subtree):
                return root
    return None


def _enable_memory(subtree_control: Path) -> bool:
    try:
        subtree_control.write_text("+memory")
        return True
    except OSError:
        return False


@contextlib.contextmanager
def _cgroup(limit_bytes: int) -> Iterator[tuple[str, Path, Callable[[], int | None],
                                                Callable[[], bool]]]:
    name = f"sail-test-{uuid.uuid4().hex[:8]}"
    root = _v2_root()
    if root is not None:
        group = root / name
        group.mkdir()
        (group / "memory.max").write_text(str(limit_bytes))
        with contextlib.suppress(OSError):
            (group / "memory.swap.max").write_text("0")

        def peak() -> int | None:
            path = group / "memory.peak"
            return int(path.read_text()) if path.exists() else None

        def killed() -> bool:
            events = dict(line.split() for line in (group / "memory.events").read_text()
                          .splitlines())
            return int(events.get("oom_kill", 0)) > 0

        mechanism = "cgroup v2"
    else:
        group = _V1 / name
        group.mkdir()
        (group / "memory.limit_in_bytes").write_text(str(limit_bytes))
        with contextlib.suppress(OSError):  # only where swap accounting is on
            (group / "memory.memsw.limit_in_bytes").write_text(str(limit_bytes))

        def peak() -> int | None:
            return int((group / "memory.max_usage_in_bytes").read_text())

        def killed() -> bool:
            control = (group / "memory.oom_control").read_text().split()
            pairs = dict(zip(control[::2], control[1::2], strict=False))
            return int(pairs.get("oom_kill", 0)) > 0

        mechanism = "cgroup v1"
    try:
        yield mechanism, group, peak, killed
    finally:
        with contextlib.suppress(OSError):
            group.rmdir()


def run_with_memory_limit(command: list[str], limit_bytes: int, address_space_bytes: int,
                          timeout: int, **popen: object) -> LimitedRun:
    """`command` under a hard limit of `limit_bytes` of memory (see the module's note)."""
    try:
        context = _cgroup(limit_bytes)
        mechanism, group, peak, killed = context.__enter__()
    except OSError:
        context = None

    if context is not None:
        procs = str(group / "cgroup.procs")

        def enter() -> None:  # in the child, before exec: it and all it starts are inside
            with open(procs, "w") as handle:
                handle.write(str(os.getpid()))

        try:
            result = subprocess.run(command, preexec_fn=enter, timeout=timeout,  # noqa: PLW1509
                                    capture_output=True, text=True, **popen)
            return LimitedRun(result, mechanism, limit_bytes, peak(), killed())
        finally:
            context.__exit__(None, None, None)

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (address_space_bytes, address_space_bytes))

    result = subprocess.run(command, preexec_fn=cap, timeout=timeout,  # noqa: PLW1509
                            capture_output=True, text=True, **popen)
    return LimitedRun(result, "RLIMIT_AS", address_space_bytes, None, False)
