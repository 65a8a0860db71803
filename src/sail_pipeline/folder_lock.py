"""One writer per shared working folder, by `flock`: library code that runs in or out of Kedro
(recaption shards, the quality signal cache) takes it; the Kedro glue's output locks
(`glue.run_lock`) describe their holder the same way."""

from __future__ import annotations

import fcntl
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sail_pipeline import identity

log = logging.getLogger(__name__)


def describe_this_run() -> str:
    return (f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}, "
            f"`{' '.join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv))}`")


def _folder_lock_path(folder: Path) -> Path:
    # Outside the folder: the folders are DVC outputs, whose hash a lock file would change.
    digest = identity.lock_name(str(folder.resolve()))
    locks = Path(tempfile.gettempdir()) / f"sail-folder-locks-{os.getuid()}"
    locks.mkdir(mode=0o700, exist_ok=True)
    return locks / f"{digest}.lock"


@contextmanager
def sole_writer(folder: str | Path, what: str) -> Iterator[None]:
    """Be the only process writing `folder` while the body runs.

    For folders that runs with disjoint outputs can share, which the output locks do not
    cover: a recaption shard folder (one per captioner and prompt) and a quality signal
    cache folder. A second writer waits, saying for whom, and then reuses what the first
    wrote (both skip finished work), instead of interleaving shards or deleting the other's
    temporary files. A flock: the kernel releases it when its holder dies, even by SIGKILL.
    """
    folder = Path(folder)
    fd = os.open(_folder_lock_path(folder), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown"
            log.warning("%s: %s is being written by another run (%s); waiting for it, then "
                        "reusing what it wrote", what, folder, other)
            fcntl.flock(fd, fcntl.LOCK_EX)
            log.info("%s: the other run is done with %s", what, folder)
        os.ftruncate(fd, 0)
        os.pwrite(fd, describe_this_run().encode(), 0)
        yield
    finally:
        os.close(fd)
