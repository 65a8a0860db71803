"""Shared fixtures: a small world and a tokenizer trained on it (seconds, not minutes)."""

from __future__ import annotations

import os
import shutil

import pytest
import yaml

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

_broken_environment: list[str] = []


_SHARED_PROJECT = {"project", "project_copy", "readme_project"}
# End-to-end tests long enough to get a worker of their own (see below).
_LONG = ("variants", "dvc_queue", "selection_experiments", "every_bash_command", "scaling_sweep",
         "killed_at_drawn_stages", "hostile_inputs")


def pytest_collection_modifyitems(config, items):
    """Environment checks (lock, imports) first: a broken install should fail in seconds.

    Then the tests of the shared end-to-end project, so that under `-n 2 --dist loadgroup` one
    worker starts building it at once: the longest (the two-variant run, the DVC queue, the
    selection experiments) each in a group of its own, the rest in one, while the unit tests
    fill the gaps.
    """
    for item in items:
        if _SHARED_PROJECT & set(getattr(item, "fixturenames", ())):
            # Each of the longest in a group of its own, so the two workers can balance them.
            long = next((name for name in _LONG if name in item.name), None)
            item.add_marker(pytest.mark.xdist_group(long or "e2e"))
    items.sort(key=lambda item: (item.get_closest_marker("environment") is None,
                                 not _SHARED_PROJECT & set(getattr(item, "fixturenames", ()))))


def pytest_runtest_logreport(report):
    if report.failed and "environment" in report.keywords:
        _broken_environment.append(report.nodeid)


def pytest_runtest_setup(item):
    if _broken_environment and item.get_closest_marker("environment") is None:
        pytest.exit(f"stopping: the environment is broken ({len(_broken_environment)} failed "
                    f"check(s) above, e.g. {_broken_environment[0]}); fix it or `make install`",
                    returncode=1)


@pytest.fixture(scope="session")
def small_world():
    from sail_pipeline.world import WorldParams, generate_world

    return generate_world(WorldParams(n_train=120, n_benchmark=20, seed=3))


@pytest.fixture(scope="session")
def world_tokenizer(small_world):
    from sail_pipeline import recipe_data
    from sail_pipeline.modeling.tokenizer import train_tokenizer

    train = {name: getattr(small_world, name) for name in ("scenes", "vqa", "conversations", "probes")}
    train = {k: v[v["split"] == "train"] for k, v in train.items()}
    return train_tokenizer(recipe_data.text_corpus(train["scenes"], train["vqa"],
                                                   train["conversations"], train["probes"]), 512)


# What `kedro run` (the default pipeline) makes: the whole chain, a DVC stage per pipeline.
RECIPE_STAGES = ("data", "backbones", "curation", "captioning", "quality", "pretrain", "sft",
                 "evaluation")
# The smallest budgets that still train every stage: the variants show the plumbing.
_SMALL = {"pretrain": {s: {"steps": 2, "tokens": None} for s in ("alignment", "advance")},
          "sft": {s: {"steps": 2, "tokens": None} for s in ("knowledge", "instruction",
                                                              "preference")},
          "evaluation": {"checkpoints": ["preference"], "limit": 6}}
VARIANTS = {"fast": _SMALL | {"sft": {**_SMALL["sft"], "knowledge": {"steps": 2, "lr": 0.004}}},
            "seed_1": _SMALL | {"runtime": {"seed": 1}}}


@pytest.fixture(scope="session")
def project(tmp_path_factory, worker_id):
    """A git + DVC copy of the project after `kedro run` at the micro configuration's sizes.
    They sit in conf/local (with two example `variants`, which `kedro run` does not run), so
    the run writes data/ as `make run` does and DVC tracks it. Read-only: tests that change it
    work on a copy (`project_copy`).

    Built once per test session: under pytest-xdist (`make test`) the first worker to need it
    builds it while the others wait on a file lock, then every worker shares it."""
    from filelock import FileLock

    from tests.project import init_dvc, make_project, run

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if worker_id != "master" else base  # this session's folder
    target = shared / "recipe_project"
    with FileLock(str(shared / "recipe_project.lock")):
        if not (target / ".built").exists():
            if target.exists():
                shutil.rmtree(target)
            target.mkdir()
            project = make_project(target)
            micro = yaml.safe_load((project / "conf/micro/parameters.yml").read_text())
            (project / "conf/local/parameters.yml").write_text(
                yaml.safe_dump(micro | {"variants": VARIANTS}))
            init_dvc(project)
            result = run(project, "kedro", "run")
            assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
            (target / ".built").write_text("")
    return target


@pytest.fixture
def project_copy(project, tmp_path):
    """A copy of `project` that a test may change."""
    return shutil.copytree(project, tmp_path / "project", symlinks=True)


@pytest.fixture(scope="session")
def tiny_generator(world_tokenizer):
    import torch

    from sail_pipeline.modeling.inference import VLMGenerator
    from sail_pipeline.modeling.presets import build_vlm, get_preset
    from sail_pipeline.modeling.processor import VLProcessor

    preset = get_preset("tiny")
    model = build_vlm(preset, world_tokenizer, seed=0)
    # Fresh init is so small that tied embeddings just echo the last prompt token ("\n"),
    # so every caption would be "" and any mix-up invisible; larger weights make each
    # caption depend on its image and prompt.
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 2:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return VLMGenerator(model, VLProcessor(world_tokenizer, preset.image_settings()),
                        batch_size=64)
