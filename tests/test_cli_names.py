"""`kedro run` with a mistyped pipeline or environment: one line naming the valid ones and the
closest, exit status 2, before Kedro starts anything (and no traceback)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sail_pipeline.cli import UnknownName, check_run_names

ROOT = Path(__file__).resolve().parents[1]


def test_known_names_pass_and_unknown_ones_name_the_closest():
    check_run_names(ROOT, "micro", ["data", "scaling", "__default__"])
    check_run_names(ROOT, None, [])
    with pytest.raises(UnknownName, match=r"no pipeline 'scalling' \(did you mean 'scaling'\?\)"
                       r"; the pipelines are: backbones, .*selection, sft, variants"):
        check_run_names(ROOT, None, ["data", "scalling"])
    with pytest.raises(UnknownName, match=r"no environment 'mikro' \(did you mean 'micro'\?\)"
                       r"; the environments are: gpu, local, micro"):
        check_run_names(ROOT, "mikro", [])
    with pytest.raises(UnknownName, match=r"no pipeline 'zzz'; the pipelines are"):
        check_run_names(ROOT, None, ["zzz"])


@pytest.mark.parametrize("argument", ["--pipelines=scalling", "--env=mikro"])
def test_kedro_run_prints_one_line_and_exits_2(argument):
    result = subprocess.run([str(Path(sys.executable).parent / "kedro"), "run", argument],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-2000:]
    assert "Traceback" not in output and "╭" not in output  # no rich traceback either
    [line] = [line for line in output.splitlines() if line.startswith("UnknownName: ")]
    assert "did you mean" in line


def test_the_tools_stderr_logging_does_not_leak_into_child_processes():
    """Only the process that asks logs to stderr; a `kedro run` it (or pytest) starts later
    logs as it always does: the variable naming the configuration is not left set."""
    code = ("import os, sail_pipeline.cli\n"
            "from sail_pipeline.glue.project_catalog import logs_to_stderr\n"
            "logs_to_stderr()\n"
            "import logging, sys\n"
            "assert all(getattr(getattr(h, 'console', h), 'file', getattr(h, 'stream', None))"
            " is sys.stderr for h in logging.getLogger().handlers)\n"
            "print(os.environ.get('KEDRO_LOGGING_CONFIG'))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, env={k: v for k, v in os.environ.items()
                                              if k != "KEDRO_LOGGING_CONFIG"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "None"
