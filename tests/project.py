"""Make a throw-away copy of the Kedro project so end-to-end tests never touch ./data."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def make_project(target: Path, source: Path = ROOT) -> Path:
    """A copy of the project at `source` (this checkout, or an older commit's tree)."""
    for name in ("pyproject.toml", "dvc.yaml", ".dvcignore", ".telemetry"):
        shutil.copy(source / name, target / name)
    shutil.copytree(source / "requirements", target / "requirements")
    shutil.copytree(source / "conf", target / "conf",
                    ignore=shutil.ignore_patterns("credentials*"))
    shutil.copytree(source / "src", target / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return target


def init_dvc(project: Path) -> None:
    """Make the copy a git + DVC repository, as a clone of this project is."""
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    (project / ".gitignore").write_text("/data/\nmlflow.db\n")
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run([str(BIN / "dvc"), "init", "-q"], cwd=project, check=True, env=env(project))
    subprocess.run([str(BIN / "dvc"), "config", "core.analytics", "false"], cwd=project,
                   check=True, env=env(project))
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    subprocess.run([*git, "commit", "-qm", "test project"], cwd=project, check=True)


def env(project: Path, **extra: str) -> dict[str, str]:
    """The project's environment; `extra` adds to it or overrides (a tracking server)."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}",
            "KEDRO_DISABLE_TELEMETRY": "true", "DVC_NO_ANALYTICS": "1", **extra}


def run(project: Path, *args: str, timeout: int = 900, **extra: str
        ) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), cwd=project, env=env(project, **extra),
                          capture_output=True, text=True, timeout=timeout)


def start_kedro_run(project: Path, *args: str) -> subprocess.Popen:
    """`kedro run ARGS` in the background, in a process group of its own (Kedro, the warm
    trainer, a stage), so that a test can SIGKILL all of it (`tests.kills.kill_when`)."""
    return subprocess.Popen([str(BIN / "kedro"), "run", *args], cwd=project, env=env(project),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
