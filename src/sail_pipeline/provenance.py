"""Where a result came from: the commit, the code, the date, the machine and the command.

A `kedro run` saves this record beside its reports (the catalog's `run_provenance`, one entry
per pipeline selection, so the sweep's run does not overwrite the recipe's), and each results
page (`sail-report --page`) names it. `code_state()` is the digest the docs site compares with
a page's: where the code changed since the run, the page says its results are older than the
code.

Light: standard library only.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from sail_pipeline.identity import (
    PROJECT_ROOT,
    SOURCE_ROOT,
    file_digest,
    import_closure,
    lock_file,
    module_file,
    text_digest,
)

# What decides a run's results besides its data: every module a `kedro run` may load (the
# pipelines' and the settings' import closure: the library, the trainer, the hooks; not the
# report tools that only read results), the base configuration and the lock. Any change there
# marks every results page as older than the code: coarse, but it never calls stale results
# current.
RUN_ROOTS = ("sail_pipeline.pipeline_registry", "sail_pipeline.settings")
CODE_FOLDERS = ("conf/base",)


def code_files(root: Path = PROJECT_ROOT) -> dict[str, Path]:
    """What decides a run's results, by the name it has in any checkout: the package's modules
    below the source root (the checkout that installed the package), the configuration below
    the project's root (a copy of the project may run that package), the lock by its name."""
    files = {p.relative_to(SOURCE_ROOT).as_posix(): p
             for p in sorted(p for p in (module_file(m) for m in import_closure(RUN_ROOTS)) if p)}
    files |= {p.relative_to(root).as_posix(): p for folder in CODE_FOLDERS
              for p in sorted((root / folder).rglob("*")) if p.is_file()}
    lock = lock_file()
    if lock is not None:
        files[f"requirements/{lock.name}"] = lock
    return files


def code_state(root: Path = PROJECT_ROOT) -> str:
    """The digest of the run's code (see RUN_ROOTS), `conf/base` and the lock file."""
    return text_digest("\n".join(f"{name} {file_digest(path)}"
                                  for name, path in code_files(root).items()))


def _git(*args: str, root: Path = PROJECT_ROOT) -> str | None:
    if shutil.which("git") is None:
        return None
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                             timeout=20, check=True)
    except (subprocess.SubprocessError, OSError):
        return None
    return out.stdout.strip()


def commit(root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """The checkout's commit and whether its code differed from it (uncommitted changes)."""
    sha = _git("rev-parse", "HEAD", root=root)
    dirty = _git("status", "--porcelain", "--", "src", *CODE_FOLDERS, "requirements",
                 root=root)
    return {"commit": sha, "uncommitted_changes": bool(dirty) if dirty is not None else None}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gb() -> float | None:
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    return round(pages * size / 2**30, 1)


def _gpus() -> list[str]:
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True)
    except (subprocess.SubprocessError, OSError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def machine() -> dict[str, Any]:
    return {"cpu": _cpu_model(), "cores": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "memory_gb": _memory_gb(), "gpus": _gpus(), "python": platform.python_version(),
            "system": platform.platform(terse=True)}


def record(command: list[str] | None = None, root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """This process's provenance: commit, code digest, UTC date, machine and command."""
    argv = command if command is not None else [Path(sys.argv[0]).name, *sys.argv[1:]]
    return {**commit(root), "code_state": code_state(root),
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine(), "command": shlex.join(argv)}


def describe_machine(machine_record: dict[str, Any]) -> str:
    """One line: '2 cores of an AMD EPYC ..., 23.4 GB, no GPU'."""
    gpus = machine_record.get("gpus") or []
    gpu = (f"{len(gpus)}× {gpus[0]}" if gpus else "no GPU")
    memory = machine_record.get("memory_gb")
    parts = [f"{machine_record.get('cores')} cores of {machine_record.get('cpu')}",
             f"{memory} GB of memory" if memory is not None else None, gpu]
    return ", ".join(part for part in parts if part)

