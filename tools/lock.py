"""Write, check and install the project's lock files (the Makefile's `lock`, `install`, `lock-gpu`).

The lock is written by `uv pip compile` from pyproject.toml's ranges. Above uv's output this
script records the exact requirement lines the lock was compiled from, so that
`python tools/lock.py check` (and tests/test_lock.py) can name any dependency that was added,
removed or changed in pyproject.toml without `make lock`.

    python tools/lock.py lock [--upgrade]     # requirements/lock-cpu.txt (this machine: CPU)
    python tools/lock.py lock --gpu           # requirements/lock-gpu.txt (run it on the GPU box)
    python tools/lock.py check                # exit 1, naming the difference, if stale
    python tools/lock.py verify               # exit 1 unless the installed packages are the lock's
    python tools/lock.py find-links           # the --find-links arguments uv needs for torch

Standard library only: it runs before any virtual environment exists.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
REQUIREMENTS = ROOT / "requirements"
INPUT_MARK = "# lock input: "
CONFIG_MARK = "# uv config sha256: "


@dataclass(frozen=True)
class Flavour:
    """One lock file: which extras it takes and how uv resolves it."""

    name: str
    extras: tuple[str, ...]
    # The interpreter and platform the lock is for. None: the interpreter running uv (GPU
    # users compile on the machine they install on).
    python_version: str | None
    python_platform: str | None
    # Source distributions that must build against the installed torch (their setup.py
    # imports it), so they build without isolation after torch is in place.
    build_against_torch: tuple[str, ...]
    directory: Path = REQUIREMENTS

    @property
    def lock(self) -> Path:
        return self.directory / f"lock-{self.name}.txt"

    @property
    def uv_config(self) -> Path:
        return self.directory / f"uv-{self.name}.toml"


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


FLAVOURS = {
    # What `make run` and `make test` install on this CPU machine: Python 3.11 (the CPU torch
    # wheel on disk is cp311), x86-64 Linux.
    "cpu": Flavour("cpu", ("eval", "dev", "ray"), "3.11", "x86_64-manylinux_2_28",
                   ("deepspeed",)),
    "gpu": Flavour("gpu", ("eval", "flash", "dev", "ray"), None, None,
                   ("deepspeed", "flash-attn")),
}


def canonical_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_inputs(flavour: Flavour, pyproject: Path = PYPROJECT) -> list[str]:
    """The requirement lines uv compiles for this flavour, as pyproject.toml declares them."""
    project = tomllib.loads(pyproject.read_text())["project"]
    optional = project.get("optional-dependencies", {})
    missing = [extra for extra in flavour.extras if extra not in optional]
    if missing:
        raise SystemExit(f"{pyproject}: [project.optional-dependencies] has no {missing}")
    lines = [f"requires-python {project.get('requires-python', '')}"]
    lines += [f"[project] {req}" for req in project["dependencies"]]
    for extra in flavour.extras:
        lines += [f"[{extra}] {req}" for req in optional[extra]]
    return sorted(lines)


def config_digest(flavour: Flavour) -> str:
    return hashlib.sha256(flavour.uv_config.read_bytes()).hexdigest()


def recorded_inputs(lock: Path) -> tuple[list[str], str | None]:
    inputs, digest = [], None
    for line in lock.read_text().splitlines():
        if line.startswith(INPUT_MARK):
            inputs.append(line[len(INPUT_MARK):])
        elif line.startswith(CONFIG_MARK):
            digest = line[len(CONFIG_MARK):]
    return sorted(inputs), digest


def staleness(flavour: Flavour, pyproject: Path = PYPROJECT) -> list[str]:
    """What changed since the lock was written, one line per difference; empty when current."""
    if not flavour.lock.exists():
        return [f"{shown(flavour.lock)} does not exist"]
    recorded, digest = recorded_inputs(flavour.lock)
    current = lock_inputs(flavour, pyproject)
    problems = [f"added to pyproject.toml: {line}" for line in current if line not in recorded]
    problems += [f"removed from pyproject.toml: {line}" for line in recorded
                 if line not in current]
    if digest != config_digest(flavour):
        problems.append(f"{shown(flavour.uv_config)} changed")
    return problems


def pinned_versions(lock: Path) -> dict[str, str]:
    """Canonical package name -> pinned version, from a requirements file uv wrote."""
    pins = {}
    for line in lock.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        if match:
            pins[canonical_name(match[1])] = match[2]
    return pins


def environment_differences(flavour: Flavour) -> tuple[list[str], list[str]]:
    """(problems, extras) of the running interpreter's packages against the lock.

    problems: a pinned package missing or at another version, or a CUDA build of torch in the
    CPU flavour. extras: installed packages the lock does not name (pip and this project
    aside); `make install` removes them, so they are only there if installed by hand.
    """
    from importlib import metadata

    installed: dict[str, set[str]] = {}
    for dist in metadata.distributions():
        installed.setdefault(canonical_name(dist.metadata["Name"]), set()).add(dist.version)
    pins = pinned_versions(flavour.lock)
    problems = []
    for name, version in sorted(pins.items()):
        have = installed.get(name)
        if not have:
            problems.append(f"{name}=={version} is not installed")
        elif have != {version}:
            problems.append(f"{name} is {', '.join(sorted(have))}; the lock pins {version}")
    if flavour.name == "cpu":
        torch = installed.get("torch", set())
        if any("+cpu" not in version for version in torch):
            problems.append(f"torch {', '.join(sorted(torch))} is not the CPU build")
    extras = sorted(set(installed) - set(pins) - {"pip", "sail-pipeline"})
    return problems, extras


def pip_find_links() -> list[str]:
    """The find-links locations in this machine's pip configuration (where CPU torch lies)."""
    places = os.environ.get("PIP_FIND_LINKS", "").split()
    listing = subprocess.run([sys.executable, "-m", "pip", "config", "list"],
                             capture_output=True, text=True).stdout
    for line in listing.splitlines():
        match = re.match(r"^[^.]*\.find-links='(.*)'$", line)
        if match:
            places += match[1].split()
    return list(dict.fromkeys(places))


def find_links_arguments() -> list[str]:
    places = os.environ.get("FIND_LINKS", "").split() or pip_find_links()
    return [arg for place in places for arg in ("--find-links", place)]


def uv_executable() -> str:
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        raise SystemExit("uv not found: `make install` puts it in .venv (the dev extra); "
                         "or `pip install uv`")
    return uv


def write_lock(flavour: Flavour, upgrade: bool) -> None:
    command = [uv_executable(), "pip", "compile", str(PYPROJECT.relative_to(ROOT)),
               "--config-file", str(flavour.uv_config.relative_to(ROOT)),
               "--output-file", str(shown(flavour.lock)),
               "--custom-compile-command", "make lock" + ("-gpu" if flavour.name == "gpu" else ""),
               "--quiet"]
    for extra in flavour.extras:
        command += ["--extra", extra]
    if flavour.python_version:
        command += ["--python-version", flavour.python_version]
    if flavour.python_platform:
        command += ["--python-platform", flavour.python_platform]
    if flavour.name == "cpu":
        command += find_links_arguments()
    if upgrade:
        command.append("--upgrade")
    subprocess.run(command, cwd=ROOT, check=True)
    body = flavour.lock.read_text()
    header = [
        "# Inputs of this lock, recorded by tools/lock.py; `python tools/lock.py check` and",
        "# tests/test_lock.py compare them with pyproject.toml. Refresh: make lock"
        + ("-gpu." if flavour.name == "gpu" else "."),
        *(INPUT_MARK + line for line in lock_inputs(flavour)),
        CONFIG_MARK + config_digest(flavour),
    ]
    flavour.lock.write_text("\n".join(header) + "\n" + body)
    print(f"wrote {shown(flavour.lock)}: {len(pinned_versions(flavour.lock))} pins")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    which = argparse.ArgumentParser(add_help=False)
    which.add_argument("--gpu", action="store_true",
                       help="the CUDA lock (requirements/lock-gpu.txt), for a GPU machine")
    sub = parser.add_subparsers(dest="command", required=True)
    lock = sub.add_parser("lock", parents=[which],
                          help="compile the lock from pyproject.toml's ranges")
    lock.add_argument("--upgrade", action="store_true",
                      help="take the newest releases the ranges allow (default: keep the pins)")
    sub.add_parser("check", parents=[which], help="exit 1, naming the changes, if stale")
    sub.add_parser("verify", parents=[which],
                   help="exit 1 unless this interpreter's packages are exactly the lock's")
    sub.add_parser("find-links", help="print uv's --find-links arguments for CPU torch")
    sub.add_parser("build-against-torch", parents=[which],
                   help="print uv's --no-build-isolation-package arguments")
    args = parser.parse_args(argv)

    flavour = FLAVOURS["gpu" if getattr(args, "gpu", False) else "cpu"]
    if args.command == "lock":
        write_lock(flavour, args.upgrade)
    elif args.command == "check":
        problems = staleness(flavour)
        if problems:
            print(f"{shown(flavour.lock)} is stale (run `make lock`):", file=sys.stderr)
            print("\n".join(f"  {p}" for p in problems), file=sys.stderr)
            return 1
        print(f"{shown(flavour.lock)} matches pyproject.toml")
    elif args.command == "verify":
        problems, extras = environment_differences(flavour)
        problems += [f"{name} is installed but not in the lock" for name in extras]
        if problems:
            print(f"{sys.prefix} differs from {shown(flavour.lock)}:", file=sys.stderr)
            print("\n".join(f"  {p}" for p in problems), file=sys.stderr)
            return 1
        print(f"{sys.prefix} matches {shown(flavour.lock)} "
              f"({len(pinned_versions(flavour.lock))} packages)")
    elif args.command == "find-links":
        print(" ".join(find_links_arguments()))
    elif args.command == "build-against-torch":
        print(" ".join(f"--no-build-isolation-package {name}"
                       for name in flavour.build_against_torch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
