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


def test_params_values_are_yaml_so_lists_and_mappings_work():
    from sail_pipeline.cli import split_params

    assert split_params("scaling.sizes=[16,32,64],scaling.seeds=[0, 1],runtime.seed=3") == {
        "scaling": {"sizes": [16, 32, 64], "seeds": [0, 1]}, "runtime": {"seed": 3}}
    assert split_params("sft.knowledge={lr: 1.0e-3, trainable: [llm, projector]},x='a,b'") == {
        "sft": {"knowledge": {"lr": 0.001, "trainable": ["llm", "projector"]}}, "x": "a,b"}
    assert split_params("") == {}
    import click

    with pytest.raises(click.BadParameter, match="give key=value"):
        split_params("scaling.sizes")


def test_kedro_run_takes_a_list_in_params():
    """The project's `run` command parses `--params` itself (Kedro's split on every comma)."""
    from sail_pipeline.cli import run

    context = run.make_context("run", ["--params", "scaling.sizes=[16,32,64],runtime.seed=1"])
    assert context.params["params"] == {"scaling": {"sizes": [16, 32, 64]},
                                        "runtime": {"seed": 1}}


def test_a_mistyped_key_is_reported_once_with_the_closest_key():
    from sail_pipeline.schema import InvalidParameters, validate_parameters

    tree = {"sft": {"knowlege": {"lr": 0.1}},
            "variants": {"fast": {"runtime": {"seed": 1}}, "slow": {"runtime": {"seed": 2}}}}
    with pytest.raises(InvalidParameters) as caught:
        validate_parameters(tree)
    lines = str(caught.value).splitlines()
    assert "  sft.knowlege: no such key (did you mean 'knowledge'?)" in lines
    assert sum("knowlege" in line for line in lines) == 1
    assert lines[-1] == ("  (each also in the variants fast, slow, which start from the same "
                         "keys)")
    # a typo inside one variant's own overrides is that variant's, and is kept
    tree = {"variants": {"fast": {"runtime": {"sed": 1}}}}
    with pytest.raises(InvalidParameters, match=r"variants\.fast\.runtime\.sed: no such key "
                                                r"\(got 1\) \(did you mean 'seed'\?\)"):
        validate_parameters(tree)


def test_conf_local_files_an_env_run_ignores_are_named_once(tmp_path, monkeypatch, capsys):
    from sail_pipeline import cli
    from sail_pipeline.glue import project

    for folder in ("base", "micro", "local"):
        (tmp_path / "conf" / folder).mkdir(parents=True)
    (tmp_path / "conf/local/.gitkeep").touch()
    assert project.unread_local_files(tmp_path, "micro") == []  # nothing to miss
    (tmp_path / "conf/local/parameters_curation.yml").write_text("curation: {}\n")
    (tmp_path / "conf/local/credentials.yml").write_text("openai: {}\n")
    assert project.unread_local_files(tmp_path, None) == []  # read: no --env
    assert project.unread_local_files(tmp_path, "local") == []
    assert project.unread_local_files(tmp_path, "micro") == [
        "conf/local/credentials.yml", "conf/local/parameters_curation.yml"]
    assert project.configuration_folders("micro") == ["conf/base", "conf/micro"]
    assert project.configuration_folders(None) == ["conf/base", "conf/local"]

    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.kedro]\npackage_name = "sail_pipeline"\n')
    monkeypatch.setattr(project, "_warned", set())
    checked = cli._known_names(lambda **kwargs: "ran")
    assert checked(env="micro", pipelines=[]) == "ran"
    warning = capsys.readouterr().err
    assert warning.startswith("WARNING: conf/local/credentials.yml, "
                              "conf/local/parameters_curation.yml are not read by this run: "
                              "with --env micro Kedro reads conf/base + conf/micro")
    assert checked(env="micro", pipelines=[]) == "ran"
    assert capsys.readouterr().err == ""  # once per process
    assert checked(env=None, pipelines=[]) == "ran"
    assert capsys.readouterr().err == ""


def test_a_config_file_gives_a_run_its_params_as_yaml(tmp_path):
    """docs/guides/recipe.md's `--config sweep.yml`: the file's `run.params`, lists intact."""
    from sail_pipeline.cli import run

    page = (ROOT / "docs/guides/recipe.md").read_text()
    text = page.split("cat > sweep.yml <<'YAML'\n", 1)[1].split("YAML\n", 1)[0]
    (tmp_path / "sweep.yml").write_text(text)
    context = run.make_context("run", ["--config", str(tmp_path / "sweep.yml")])
    assert context.params["params"] == {"scaling": {
        "sizes": [125, 300, 700], "seeds": [0, 1], "variants": ["alt_text", "reference"]}}
    assert context.params["pipeline"] == "scaling"


def test_a_runs_recorded_command_writes_its_parameters_as_they_were_typed():
    """Results pages name the command that made their data; Kedro hands `--params
    runtime.points.kind=ray` over nested, and the page printed the nested dict."""
    from sail_pipeline.glue.hooks import kedro_command

    command = kedro_command({"pipeline_names": ["scaling"], "runtime_params": {
        "runtime": {"points": {"kind": "ray"}}, "scaling": {"seeds": [0, 1]}}})
    assert command == ["kedro", "run", "--pipelines=scaling", "--params",
                       "runtime.points.kind=ray,scaling.seeds=[0, 1]"]
