"""Seconds to install requirements/lock-cpu.txt into a new virtual environment: pip against uv.

Both install the same pinned packages with cold caches (PIP_NO_CACHE_DIR, UV_NO_CACHE), in the
order `make install` uses: torch and setuptools first (DeepSpeed's setup.py imports torch), then
the lock with DeepSpeed built against them, then this project as an editable install. Each
environment is then checked against the lock (`tools/lock.py verify`).

    python benchmarks/install_time.py            # prints pip seconds / uv seconds last

Needs the package registry (downloads about 1 GB twice); takes about 3 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "lock-cpu.txt"
LOCK_TOOL = ROOT / "tools" / "lock.py"


def pinned(*names: str) -> list[str]:
    lines = LOCK.read_text().splitlines()
    return [line for line in lines if re.match(rf"^({'|'.join(names)})==", line)]


def tool_arguments(command: str, python: Path) -> list[str]:
    return subprocess.run([str(python), str(LOCK_TOOL), command], check=True,
                          capture_output=True, text=True).stdout.split()


def run(command: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"{' '.join(command[:4])} ... failed:\n{result.stderr[-3000:]}")


def install_with_pip(venv: Path, env: dict[str, str]) -> None:
    python = venv / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "-q", "--no-deps"]
    run([*pip, *pinned("torch", "setuptools")], env)
    run([*pip, "--no-build-isolation", "-r", str(LOCK)], env)
    run([*pip, "-e", str(ROOT)], env)


def install_with_uv(venv: Path, env: dict[str, str]) -> None:
    python = venv / "bin" / "python"
    run([str(python), "-m", "pip", "install", "-q", *pinned("uv")], env)
    uv = [str(venv / "bin" / "uv"), "pip", "install", "-q", "--python", str(python),
          "--no-deps", *tool_arguments("find-links", python)]
    run([*uv, *pinned("torch", "setuptools")], env)
    run([*uv, "--exact", *tool_arguments("build-against-torch", python), "-r", str(LOCK),
         "-e", str(ROOT)], env)


def timed_install(installer, workdir: Path) -> float:
    venv = workdir / installer.__name__
    env = dict(os.environ, PIP_NO_CACHE_DIR="1", UV_NO_CACHE="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    started = time.perf_counter()
    installer(venv, env)
    seconds = time.perf_counter() - started
    run([str(venv / "bin" / "python"), str(LOCK_TOOL), "verify"], env)
    print(f"{installer.__name__}: {seconds:.0f} s, environment matches the lock", flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the two environments go (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
        pip_seconds = timed_install(install_with_pip, Path(workdir))
        uv_seconds = timed_install(install_with_uv, Path(workdir))
    print(f"| installer | seconds |\n|---|---|\n| pip | {pip_seconds:.0f} |\n"
          f"| uv | {uv_seconds:.0f} |")
    print(f"uv installs the lock {pip_seconds / uv_seconds:.1f}x faster than pip "
          f"({pip_seconds:.0f} s vs {uv_seconds:.0f} s, cold caches)")


if __name__ == "__main__":
    main()
