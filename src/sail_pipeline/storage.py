"""A full disk, said plainly: which file was being written, how much space is left, and that
nothing half-written was left for a re-run to trust."""

from __future__ import annotations

import errno
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sail_pipeline.errors import UserError

_FULL = {errno.ENOSPC, errno.EDQUOT}


class DiskFull(UserError, OSError):
    """No space left (or quota exceeded) while writing a file the run needs."""


def _free(path: Path) -> str:
    for folder in (path, *path.parents):
        if folder.exists():
            return f"{shutil.disk_usage(folder).free / 2**30:.2f} GiB free on its file system"
    return "free space unknown"


@contextmanager
def written_whole_or_not_at_all(target: str | Path, partial: str | Path | None = None
                                ) -> Iterator[None]:
    """Run a write of `target`; on any error remove `partial` (the temporary file or folder the
    write was filling); a full disk becomes `DiskFull`, naming `target`."""
    target = Path(target)
    try:
        yield
    except BaseException as error:
        if partial is not None:
            leftover = Path(partial)
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno in _FULL:
            raise DiskFull(error.errno, f"no space left on the device while writing {target} "
                           f"({_free(target)}). Nothing half-written was kept: free some "
                           f"space and run again; finished work is reused") from error
        raise
