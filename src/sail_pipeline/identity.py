"""Every digest the project makes, made here and only here.

An identity names "this exact thing" so that a stored result is reused when, and only when,
nothing that decides it changed. What goes into each is derived, never listed by hand:
- data: the bytes of a file, or of every file in a folder (`path_digest`), or of the rows a
  table teaches (`rows_digest`);
- settings: the JSON of what a process receives, as resolved (`payload_digest`);
- code: the source of every module of the package that a root module imports, lazily or
  not, or names as a module a subprocess runs, found by walking the import graph
  (`code_digest`); `tools/dvc_stages.py` walks the same graph for DVC's code dependencies;
- environment: the lock file the environment was installed from (`environment_digest`).

Stable streams of random numbers keyed by a name (`stable_int`, `stable_hash`) live here too:
they are digests with another use, and `hash()` differs between processes.

Light: standard library only, so the schema, the trainer and the tools can all import it.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
from collections.abc import Iterable
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGE = "sail_pipeline"
SOURCE_ROOT = Path(__file__).resolve().parent.parent  # src/ in a checkout
PROJECT_ROOT = SOURCE_ROOT.parent
SHORT = 16  # hex digits of a short digest: 64 bits, no collision in any store we will see


# --- bytes, text, payloads, files ----------------------------------------------------------------


def sha256_hex(data: bytes, length: int | None = SHORT) -> str:
    """sha256 of `data` in hex, cut to `length` digits (None: all 64)."""
    return hashlib.sha256(data).hexdigest()[:length]


def text_digest(text: str, length: int | None = SHORT) -> str:
    return sha256_hex(text.encode("utf-8", "surrogatepass"), length)


def payload_digest(payload: Any, length: int = SHORT) -> str:
    """A stable digest of a JSON-able payload (keys sorted; other objects by `str`)."""
    return text_digest(json.dumps(payload, sort_keys=True, default=str), length)


def repr_digest(value: Any, length: int = SHORT) -> str:
    """A digest of `repr(value)`: for tuples of versions and settings that are not JSON."""
    return text_digest(repr(value), length)


def file_digest(path: str | Path, length: int | None = SHORT) -> str:
    """sha256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]


def files_digest(files: Iterable[Path], root: Path, length: int | None = SHORT) -> str:
    """sha256 over each file's path below `root` and its bytes' digest, in the given order."""
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.relative_to(root).as_posix().encode())
        digest.update(file_digest(file).encode())
    return digest.hexdigest()[:length]


def named_bytes_digest(files: Iterable[Path]) -> str:
    """sha256 over each file's name and bytes, in the given order (a checkpoint's weights)."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


@lru_cache(maxsize=256)
def _cached_path_digest(path: str, stats: tuple) -> str:
    target = Path(path)
    if target.is_file():
        return file_digest(target)
    return files_digest(sorted(p for p in target.rglob("*") if p.is_file()), target)


def _stats(target: Path) -> tuple:
    """What tells a changed file or folder from the one digested before: each file's path,
    size and modification time (a folder's own time does not change when a file in it is
    rewritten)."""
    if target.is_file():
        stat = target.stat()
        return ((stat.st_size, stat.st_mtime_ns),)
    return tuple((p.as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
                 for p in sorted(target.rglob("*")) if p.is_file())


def path_digest(path: str | Path) -> str:
    """A file's digest, or a folder's (every file under it, by relative path and bytes);
    cached while its files' sizes and modification times stay the same."""
    target = Path(path).resolve()
    return _cached_path_digest(str(target), _stats(target))


class RowsDigest:
    """A running digest of a table's rows, one line each: what the rows teach, in order."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()

    def add(self, *fields: object) -> None:
        self._digest.update(("\t".join(str(f) for f in fields) + "\n").encode())

    def hexdigest(self, length: int | None = SHORT) -> str:
        return self._digest.hexdigest()[:length]


def stable_int(text: str) -> int:
    """A 32-bit int from a string that, unlike hash(), is the same in every process."""
    return int(sha256_hex(text.encode(), 8), 16)


def stable_hash(text: str) -> int:
    """A 64-bit hash that, unlike ``hash()``, is the same in every process."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def lock_name(text: str) -> str:
    """A short file name for a lock on `text` (a folder's path)."""
    return hashlib.sha1(text.encode()).hexdigest()[:20]


# --- code: the import graph ----------------------------------------------------------------------


def module_file(module: str) -> Path | None:
    """The source file of a module of the package (its __init__.py for a package)."""
    if module != PACKAGE and not module.startswith(PACKAGE + "."):
        return None
    base = SOURCE_ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _resolve_from(module: str, is_package: bool, statement: ast.ImportFrom) -> str:
    if not statement.level:
        return statement.module or ""
    parts = module.split(".")
    anchor = parts if is_package else parts[:-1]
    anchor = anchor[: len(anchor) - statement.level + 1]
    return ".".join(anchor + ([statement.module] if statement.module else []))


@lru_cache(maxsize=1024)
def _references(module: str, path: Path, mtime: float) -> tuple[frozenset[str], frozenset[str]]:
    """(modules of the package, top-level outside packages) that `path` imports anywhere in
    its body, or names in a string (`python -m sail_pipeline.training.train`)."""
    is_package = path.name == "__init__.py"
    source = path.read_text()
    found: set[str] = set()
    outside: set[str] = set()
    if is_package and "import_module(" in source:
        # A package that loads its names on first use (PEP 562 __getattr__): any of its
        # modules may run.
        found |= {f"{module}.{p.stem}" for p in path.parent.glob("*.py") if p.stem != "__init__"}
    for statement in ast.walk(ast.parse(source, str(path))):
        if isinstance(statement, ast.Import):
            found |= {alias.name for alias in statement.names}
        elif isinstance(statement, ast.ImportFrom):
            base = _resolve_from(module, is_package, statement)
            found.add(base)
            # `from package import submodule` imports the submodule too
            found |= {f"{base}.{alias.name}" for alias in statement.names}
        elif isinstance(statement, ast.Constant) and isinstance(statement.value, str) \
                and statement.value.startswith(PACKAGE + "."):
            found.add(statement.value)  # a module a subprocess runs, or one loaded by name
    ours = frozenset(name for name in found if module_file(name) is not None)
    outside = {name.split(".")[0] for name in found if name and not name.startswith(PACKAGE)}
    return ours, frozenset(outside)


def imported_modules(module: str) -> set[str]:
    """Modules of the package that `module` imports or runs, anywhere in its body."""
    path = module_file(module)
    if path is None:
        return set()
    return set(_references(module, path, path.stat().st_mtime)[0])


def _entry_point_modules(outside: set[str]) -> set[str]:
    """Our modules that another program loads by entry point, for the programs in `outside`
    (lmms-eval loads our model adapter from the `lmms_eval.models` group)."""
    try:
        entry_points = metadata.distribution(PACKAGE.replace("_", "-")).entry_points
    except metadata.PackageNotFoundError:
        return set()
    return {point.value.split(":")[0] for point in entry_points
            if point.group.split(".")[0] in outside}


def import_closure(roots: Iterable[str], skip: tuple[str, ...] = (),
                   entry_points: bool = True) -> set[str]:
    """Every module of the package that importing (or running) `roots` loads, parents
    included, not following into the packages `skip` names; with `entry_points`, also our
    modules that a library the closure imports loads by entry point."""
    seen: set[str] = set()
    outside: set[str] = set()
    todo = list(roots)
    while todo:
        module = todo.pop()
        if module in seen or module_file(module) is None or any(
                module == name or module.startswith(name + ".") for name in skip):
            continue
        seen.add(module)
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages run first
        path = module_file(module)
        assert path is not None
        ours, others = _references(module, path, path.stat().st_mtime)
        todo += ours
        outside |= others
        if entry_points:
            todo += _entry_point_modules(outside) - seen
    return seen


def code_digest(roots: Iterable[str]) -> str:
    """sha256 over the source of every module in the import closure of `roots`."""
    files = sorted(p for p in (module_file(m) for m in import_closure(roots)) if p is not None)
    return files_digest(files, SOURCE_ROOT)


# --- environment -----------------------------------------------------------------------------------


def lock_file() -> Path | None:
    """The lock file this environment was installed from: `SAIL_LOCK_FILE`, else the checkout's
    `requirements/lock-<flavour>.txt` (`gpu` where `make install-gpu` made the environment)."""
    if os.environ.get("SAIL_LOCK_FILE"):
        return Path(os.environ["SAIL_LOCK_FILE"])
    flavour = "gpu" if (PROJECT_ROOT / ".venv" / ".installed-gpu").exists() else "cpu"
    path = PROJECT_ROOT / "requirements" / f"lock-{flavour}.txt"
    return path if path.exists() else None


def environment_digest() -> str:
    """The lock file's digest; outside a checkout, the installed distributions' versions."""
    path = lock_file()
    if path is not None:
        return file_digest(path)
    installed = sorted(f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions())
    return payload_digest(installed)
