"""A full disk, said plainly: which file was being written, how much space is left, and that
nothing half-written was left for a re-run to trust."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sail_pipeline.errors import UserError

_FULL = {errno.ENOSPC, errno.EDQUOT}
# Writers that are not plain Python file objects lose the errno: torch's zip writer reports a
# full disk as "unexpected pos ..." or "file write failed". A write that fails with less than
# this left on its file system is taken for a full disk.
_NEARLY_FULL_BYTES = 1 << 20


class DiskFull(UserError, OSError):
    """No space left (or quota exceeded) while writing a file the run needs."""


def _free_bytes(path: Path) -> int | None:
    for folder in (path, *path.parents):
        if folder.exists():
            return shutil.disk_usage(folder).free
    return None


def _is_full_disk(error: BaseException, free: int | None) -> bool:
    if isinstance(error, OSError) and error.errno in _FULL:
        return True
    # An interrupt is not a write failing, whatever the free space.
    return isinstance(error, Exception) and free is not None and free < _NEARLY_FULL_BYTES


@contextmanager
def written_whole_or_not_at_all(target: str | Path, partial: str | Path | None = None
                                ) -> Iterator[None]:
    """Run a write of `target`; on any error remove `partial` (the temporary file or folder the
    write was filling); a full disk becomes `DiskFull`, naming `target`."""
    target = Path(target)
    try:
        yield
    except BaseException as error:
        free = _free_bytes(target)  # as the write left it, before its partial file goes
        if partial is not None:
            leftover = Path(partial)
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
        if _is_full_disk(error, free):
            left = "free space unknown" if free is None else f"{free / 2**20:.1f} MiB free"
            raise DiskFull(getattr(error, "errno", None) or errno.ENOSPC,
                           f"no space left on the device while writing {target} ({left} on its "
                           f"file system when the write failed). Nothing half-written was kept: "
                           f"free some space and run again; finished work is reused") from error
        raise


def replace_text(path: str | Path, text: str) -> None:
    """Write a small file whole or not at all: readers see the old text or the new, never a
    truncated file (`open(path, "w")` empties it first, and a full disk can leave it so)."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with written_whole_or_not_at_all(path, partial=partial):
        with partial.open("w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
