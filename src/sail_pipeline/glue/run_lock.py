"""One writer per output: a `kedro run` locks every dataset it will write before any node runs.

A second run in the same project that would write any of them stops at start, naming the
dataset and the run that holds it (its pid, start time and command). Runs with disjoint
outputs go ahead side by side: the sweep's point commands (`--namespaces=<point>`), run
in parallel, as the README's Slurm array does. The locks are `flock`s on files in
`<data>/.locks/`: the kernel releases them when their process ends, even by SIGKILL, so a
killed run leaves no stale lock to clear by hand.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path

from sail_pipeline.errors import UserError
from sail_pipeline.folder_lock import describe_this_run

LOCKS_FOLDER = ".locks"
log = logging.getLogger(__name__)


class OutputsInUse(UserError, RuntimeError):
    """Another run in this project is writing an output of this one."""


def _file_name(dataset: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", dataset) + ".lock"


class OutputLocks:
    """The locks of one run; `acquire` takes all or none."""

    def __init__(self, data_folder: str | Path) -> None:
        self.folder = Path(data_folder) / LOCKS_FOLDER
        self._held: list[int] = []

    def acquire(self, datasets: Iterable[str], holder: str | None = None) -> int:
        """Lock every dataset, in sorted order (so two runs cannot each hold half); raise
        OutputsInUse, holding none, when another run holds one. Returns how many."""
        self.folder.mkdir(parents=True, exist_ok=True)
        holder = holder or describe_this_run()
        for dataset in sorted(set(datasets)):
            path = self.folder / _file_name(dataset)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                other = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                self.release()
                raise OutputsInUse(
                    f"{dataset} is being written by another run in this project ({other}). "
                    f"Wait for it to end, or run in a copy of the project (or an --env whose "
                    f"data folder differs); runs whose outputs do not overlap, such as "
                    f"the sweep's point commands, run side by side.") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, holder.encode(), 0)
            self._held.append(fd)
        return len(self._held)

    def release(self) -> None:
        for fd in self._held:
            os.close(fd)  # closing the last descriptor releases the flock
        self._held = []
