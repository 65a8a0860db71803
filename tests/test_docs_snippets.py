"""Every command and snippet of the README and the docs site that a user would paste runs.

The pages: README.md and docs/**/*.md, except the generated ones (reference/, results/,
notebooks/ and index.md, the README's copy: written from the code or the runs, with their own
checks). On a copy of the
session's micro-sized project (its data and dvc.lock made by `kedro run`). `kedro run` lines run
as dry runs (they print each stage's command and write nothing), all in one Python process so
Kedro is imported once; a command that several pages show runs once. Not run, each with its
reason: a block right after a `<!-- not-run: REASON -->` line, and the commands `NOT_RUN` names
(`make` targets: CI runs `make test`, the others install or serve; GPU commands; servers).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.project import env

ROOT = Path(__file__).resolve().parents[1]
DRY = "runtime.launcher.dry_run=true"
# Why a command is not run here (matched against the start of the command).
NOT_RUN = {
    "make ": "a make target: CI runs `make test`; the others install, lock or serve",
    "source ": "shell setup: the test runs in the virtual environment already",
    "kedro run --env gpu": "needs a GPU and the real backbones",
    "python -m deepspeed.launcher.runner --num_gpus 8": "needs 8 GPUs",
    "kedro run --pipelines=scaling --namespaces=": "a point of the default grid; "
    "tests/test_scaling_e2e.py runs a micro point alone",
    "git add dvc.lock": "commits to the repository; tests/test_scaling_e2e.py does it in a copy",
    "for n in ": "queues the default sweep; tests/test_scaling_e2e.py queues the micro one",
    "for s in ": "three SFT runs and evaluations; tests/test_pipeline_e2e.py runs the SFT",
    "python tools/seed_table.py": "reads that loop's CSVs; tests/test_seed_table.py runs it",
    "python tools/run_breakdown.py": "reads a finished run's timing record; "
    "tests/test_run_timing.py runs it",
    "dvc queue start": "runs the queue; tests/test_scaling_e2e.py runs the micro one",
}


GENERATED = ("reference", "results", "notebooks", "index.md")  # index.md: the README's copy
NOT_RUN_MARK = re.compile(r"<!-- (?:not-run: (.+?)|(newcomer-path)) -->\s*$")
# The getting-started page's path from a clone to a sweep's curves in the MLflow UI: not dry,
# so tests/test_scaling_e2e.py runs it, after its micro sweep.
NEWCOMER = "the newcomer path: tests/test_scaling_e2e.py runs it"


def pages() -> list[Path]:
    docs = sorted(p for p in (ROOT / "docs").rglob("*.md")
                  if p.relative_to(ROOT / "docs").parts[0] not in GENERATED)
    return [ROOT / "README.md", *docs]


def fenced_blocks(text: str, name: str = "README.md") -> list[tuple[str, str, str]]:
    """(where, language, body) of every fenced block that runs, nested ones included; `where`
    is `page:line`. A block right after a `<!-- not-run: REASON -->` line is left out."""
    blocks = []
    lines = text.splitlines()
    for match in re.finditer(r"^( *)```(\w*)\n(.*?)^\1```", text, re.S | re.M):
        indent = len(match[1])
        body = "\n".join(line[indent:] for line in match[3].splitlines())
        line = text[:match.start()].count("\n") + 1
        if line >= 2 and NOT_RUN_MARK.search(lines[line - 2]):
            continue
        blocks.append((f"{name}:{line}", match[2], body))
    return blocks


def not_run_blocks() -> list[tuple[str, str]]:
    """(page:line, reason) of every block marked not to run."""
    found = []
    for page in pages():
        lines = page.read_text().splitlines()
        for number, line in enumerate(lines[:-1], start=1):
            mark = NOT_RUN_MARK.search(line)
            if mark and lines[number].lstrip().startswith("```"):
                found.append((f"{page.relative_to(ROOT)}:{number + 1}", mark[1] or NEWCOMER))
    return found


def commands(body: str) -> list[str]:
    """The shell commands of a bash block: continuations joined, comments dropped."""
    joined = body.replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        command = re.sub(r"\s+#.*$", "", line).strip()
        if command and not command.startswith("#"):
            out.append(command)
    return out


def as_dry_run(args: list[str]) -> list[str]:
    if "--params" in args:
        i = args.index("--params") + 1
        return [*args[:i], f"{args[i]},{DRY}", *args[i + 1:]]
    return [*args, "--params", DRY]


BLOCKS = [block for page in pages()
          for block in fenced_blocks(page.read_text(), str(page.relative_to(ROOT)))]


def test_the_pages_have_the_blocks_this_test_expects():
    languages = [language for _, language, _ in BLOCKS]
    assert languages.count("python") >= 2 and languages.count("bash") >= 10
    assert "yaml" in languages
    assert {where.split(":")[0] for where, *_ in BLOCKS} >= {"README.md",
                                                            "docs/getting-started.md"}


def test_a_marked_block_is_left_out_and_says_why():
    text = ("<!-- not-run: needs a GPU -->\n```bash\nkedro run --env gpu\n```\n\n"
            "```bash\nkedro run\n```\n")
    assert [body for _, _, body in fenced_blocks(text, "x.md")] == ["kedro run"]
    assert all(reason.strip() for _, reason in not_run_blocks())


@pytest.fixture
def docs_project(project_copy):
    return project_copy


def _run(project: Path, command: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(command, shell=True, cwd=project, env=env(project),
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_every_bash_command_runs(docs_project):
    kedro_lines, shell_lines, skipped, seen = [], [], [], set()
    for line, language, body in BLOCKS:
        if language != "bash":
            continue
        for command in commands(body):
            # The test runs in the environment: `.venv/bin/kedro` is the `kedro` on its PATH.
            command = command.removeprefix(".venv/bin/")
            if command in seen:  # shown on several pages: run once
                continue
            seen.add(command)
            reason = next((why for start, why in NOT_RUN.items() if command.startswith(start)),
                          None)
            if reason:
                skipped.append((line, command, reason))
            elif command.startswith("kedro run"):
                kedro_lines.append((line, shlex.split(command)[1:]))
            else:
                shell_lines.append((line, command))
    assert len(kedro_lines) >= 8 and len(shell_lines) >= 6

    # Every `kedro run` line, as a dry run, in one process.
    script = f"""
import json, sys
from pathlib import Path
from kedro.framework.cli.cli import KedroCLI
from kedro.framework.project import configure_project
results = []
import mlflow
for args in {[as_dry_run(args) for _, args in kedro_lines]!r}:
    # One command per process from a shell: start each one as a fresh process would.
    while mlflow.active_run():
        mlflow.end_run()
    configure_project("sail_pipeline")
    try:
        KedroCLI(Path.cwd()).main(args=args, prog_name="kedro", standalone_mode=False)
        results.append(None)
    except SystemExit as exit:
        results.append(None if not exit.code else f"exit {{exit.code}}")
    except Exception as error:
        results.append(repr(error)[:2000])
print("RESULTS " + json.dumps(results))
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=docs_project,
                            env=env(docs_project), capture_output=True, text=True,
                            timeout=900)
    found = [line for line in result.stdout.splitlines() if line.startswith("RESULTS ")]
    assert found, result.stdout[-3000:] + result.stderr[-3000:]
    failures = [(line, args, error) for (line, args), error in
                zip(kedro_lines, json.loads(found[-1][8:]), strict=True) if error]
    assert not failures, failures
    assert result.stdout.count("[dry run] knowledge:") >= 3  # sft ran in several lines

    for line, command in shell_lines:
        if command.startswith("dvc exp run"):
            # Planned, not trained: in DVC's temporary copy of the git tree, which needs the
            # untracked data and lock copied in (the DVC guide, "Kedro and DVC agree").
            command = command.replace("dvc exp run", "dvc exp run --dry -C data -C dvc.lock")
        outcome = _run(docs_project, command)
        assert outcome.returncode == 0, (line, command, outcome.stdout[-2000:],
                                         outcome.stderr[-2000:])
    assert all(reason for *_, reason in skipped)


@pytest.mark.slow
def test_the_wrong_parameter_examples_print_what_the_pages_show(docs_project):
    examples = [b for b in BLOCKS if b[2].startswith("$ kedro run")]
    assert len(examples) >= 2  # a recipe key and a sweep key
    for line, _, body in examples:
        command, *expected = body.splitlines()
        outcome = _run(docs_project, command.removeprefix("$ "))
        # The message alone, as a usage error: no traceback of the machinery that found it.
        assert outcome.returncode == 2, (line, outcome.stderr[-2000:])
        assert "Traceback" not in outcome.stdout + outcome.stderr
        for text in expected:
            assert text.strip() in outcome.stdout + outcome.stderr, (line, text)


@pytest.mark.slow
def test_every_python_snippet_runs(docs_project):
    """All snippets in one interpreter (each in a fresh namespace), so imports are paid once."""
    from sail_pipeline.captioning.local_server import chat_reply, serve_canned

    snippets = [(line, body) for line, language, body in BLOCKS if language == "python"]

    async def caption(body, request):
        return chat_reply("a red circle")

    with serve_canned(caption) as server:
        # The API snippet names a local endpoint; a canned server stands in for it.
        codes = {line: body.replace("http://127.0.0.1:8000/v1", server.base_url)
                 for line, body in snippets}
        script = f"""
import traceback
failed = {{}}
for line, code in {codes!r}.items():
    try:
        exec(compile(code, line, "exec"), {{"__name__": "__main__"}})
    except Exception:
        failed[line] = traceback.format_exc()[-3000:]
print("FAILED", failed)
"""
        outcome = subprocess.run([sys.executable, "-c", script], cwd=docs_project,
                                 env=env(docs_project, OPENAI_API_KEY="sk-test"),
                                 capture_output=True, text=True, timeout=600)
    assert "FAILED {}" in outcome.stdout, outcome.stdout[-4000:] + outcome.stderr[-2000:]
    assert "a red circle" in outcome.stdout  # the API snippet printed the server's caption


def test_every_yaml_snippet_is_valid_parameters():
    from sail_pipeline.glue.validation import validate_project
    from sail_pipeline.schema import deep_merge

    base: dict = {}
    for path in sorted((ROOT / "conf/base").glob("parameters*.yml")):
        base = deep_merge(base, yaml.safe_load(path.read_text()) or {})
    for _, language, body in BLOCKS:
        if language == "yaml":
            validate_project(deep_merge(base, yaml.safe_load(body)),
                             deepspeed_dir=ROOT / "conf/base/deepspeed")
