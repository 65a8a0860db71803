"""`kedro run` and `dvc repro` on the micro configuration, in a copy of the project."""

from __future__ import annotations

import json
import shutil

import mlflow
import pandas as pd
import pytest

from tests.project import init_dvc, make_project, run

STAGES = ("llm", "vision", "alignment", "advance", "knowledge", "instruction", "preference")
# Stages whose micro budget is large enough for the held-out loss to fall every time.
FALLING = ("llm", "vision", "alignment", "knowledge")
GROUP = {"llm": "pretrain", "vision": "pretrain", "alignment": "pretrain",
         "advance": "pretrain", "knowledge": "sft", "instruction": "sft", "preference": "sft"}


@pytest.fixture(scope="module")
def micro_run(tmp_path_factory):
    project = make_project(tmp_path_factory.mktemp("kedro_project"))
    result = run(project, "kedro", "run", "--env", "micro")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return project, result.stdout + result.stderr


@pytest.mark.slow
def test_every_stage_leaves_a_checkpoint_and_a_summary(micro_run):
    project, _ = micro_run
    for stage in STAGES:
        pointer = json.loads((project / f"data/06_models/{GROUP[stage]}/"
                              f"{stage}{'_backbone' if stage in ('llm', 'vision') else '_model'}"
                              f".json").read_text())
        hf_dir = project / "data/06_models" / GROUP[stage] / stage / "hf"
        assert pointer["hf_dir"] == str(hf_dir.resolve())
        assert (hf_dir / "model.safetensors").exists(), stage
        summary = pointer["summary"]
        assert summary["mask_mismatches"] == 0, stage
        assert summary["train_samples"] > 0 and summary["steps"] > 0
        if stage in FALLING:
            assert summary["eval_loss_after"] < summary["eval_loss_before"], stage
            losses = summary["logged_train_losses"]
            assert losses[-1] < losses[0], (stage, losses)
    assert (project / "data/06_models/tokenizer/tokenizer.json").exists()


@pytest.mark.slow
def test_zero3_stage_saves_the_consolidated_weights_it_trained(micro_run):
    """Preference trains under ZeRO-3 in the micro configuration: its saved weights, reloaded,
    give the held-out loss the trainer measured (sharded, unsaved weights would not)."""
    import torch

    from sail_pipeline.modeling.presets import load_vlm
    from sail_pipeline.modeling.processor import VLProcessor
    from sail_pipeline.training.data import ConversationData
    from sail_pipeline.training.train import SupervisedLM

    project, _ = micro_run
    run_dir = project / "data/06_models/sft/preference"
    config = json.loads((run_dir / "run_config.json").read_text())
    assert config["deepspeed"]["zero_optimization"]["stage"] == 3
    processor = VLProcessor.from_pretrained(run_dir / "hf")
    table = pd.read_parquet(config["eval_data"]).head(config["eval_samples"])
    data = ConversationData(table, processor, config["max_seq_len"])
    batch = data.batch(list(range(len(data))), processor.tokenizer.pad_token_id)
    with torch.no_grad():
        losses, _, _ = SupervisedLM(load_vlm(run_dir / "hf")).eval().token_losses(**batch)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert float(losses.mean()) == pytest.approx(summary["eval_loss_after"], rel=1e-4)


@pytest.mark.slow
def test_evaluation_writes_scores_for_each_checkpoint(micro_run):
    project, _ = micro_run
    scores = pd.read_csv(project / "data/08_reporting/evaluation_scores.csv")
    assert set(scores["checkpoint"]) == {"advance", "preference"}
    assert {"world_count", "world_colour", "world_shape", "world_caption", "world_pope",
            "world_mme", "world_mmbench", "average"} <= set(scores["task"])
    assert scores["score"].between(0, 1).all()
    assert (project / "data/08_reporting/evaluation_scores.png").stat().st_size > 1000
    metrics = json.loads((project / "data/08_reporting/evaluation_metrics.json").read_text())
    assert set(metrics["preference"]) >= {"count", "colour", "shape", "average"}


@pytest.mark.slow
def test_mlflow_has_the_kedro_run_and_one_nested_run_per_training(micro_run):
    project, _ = micro_run
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    runs = mlflow.search_runs(search_all_experiments=True)
    parents = runs[runs["tags.mlflow.parentRunId"].isna()]
    assert len(parents) == 1
    parent = parents.iloc[0]
    children = runs[runs["tags.mlflow.parentRunId"] == parent["run_id"]]
    assert sorted(children["tags.mlflow.runName"]) == sorted(STAGES)
    assert (children["status"] == "FINISHED").all()
    assert parent["metrics.eval/preference/average"] >= 0
    assert 0 <= parent["metrics.eval/preference/world_pope/yes_ratio"] <= 1
    assert parent["metrics.alignment/eval_loss_after"] < parent["metrics.alignment/eval_loss_before"]
    history = mlflow.tracking.MlflowClient().get_metric_history(
        children[children["tags.mlflow.runName"] == "knowledge"].iloc[0]["run_id"], "train_loss")
    assert len(history) >= 2 and history[-1].value < history[0].value
    assert "params.sft.knowledge.lr" in runs.columns


@pytest.mark.slow
def test_bad_parameter_fails_before_training_naming_the_key(tmp_path):
    project = make_project(tmp_path)
    result = run(project, "kedro", "run", "--env", "micro", "--params", "sft.knowledge.lr=-1",
                 timeout=300)
    assert result.returncode != 0
    assert "sft.knowledge.lr" in result.stdout + result.stderr
    assert not (project / "data").exists()


@pytest.mark.slow
def test_captioning_chain_recaptions_every_kept_id_once(micro_run):
    """curation -> reference captions -> captioner -> recaption the pool -> held-out scores."""
    project, _ = micro_run
    result = run(project, "kedro", "run", "--env", "micro", "--pipelines=curation,captioning")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    manifest = pd.read_parquet(project / "data/02_intermediate/curation_manifest.parquet")
    captions = pd.read_parquet(project / "data/04_feature/recaptions.parquet")
    failures = pd.read_parquet(project / "data/04_feature/recaption_failures.parquet")
    assert captions["id"].is_unique and set(captions["id"]).isdisjoint(failures["id"])
    assert set(captions["id"]) | set(failures["id"]) == set(manifest["id"])
    with_alt = set(manifest.loc[manifest["alt_text"].notna(), "id"])
    assert set(captions.loc[captions["prompt_kind"] == "recaption", "id"]) == \
        with_alt & set(captions["id"])

    pointer = json.loads((project / "data/06_models/captioning/captioner_model.json").read_text())
    assert (project / "data/06_models/captioning/captioner/hf/model.safetensors").exists()
    assert pointer["summary"]["mask_mismatches"] == 0 and pointer["summary"]["steps"] == 6
    run_config = json.loads((project / "data/06_models/captioning/captioner/run_config.json"
                             ).read_text())
    assert sorted(run_config["trainable"]) == ["llm", "projector", "vision"]
    assert run_config["llm_path"].endswith("pretrain/llm/hf")  # from the backbones

    heldout = pd.read_csv(project / "data/08_reporting/captioner_heldout.csv")
    assert list(heldout["captions"]) == ["alt_text", "captioner_caption_prompt",
                                         "captioner_recaption_prompt"]
    assert (heldout["scenes"] == 40).all() and heldout["score"].between(0, 1).all()
    assert (project / "data/08_reporting/captioner_heldout.png").stat().st_size > 0

    # A second run of the recaption node asks again only for the ids that failed (the micro
    # captioner answers some with an empty caption); every caption it had stays as it was.
    folder = project / "data/04_feature/recaption_shards"
    before = set(folder.rglob("*.parquet"))
    again = run(project, "kedro", "run", "--env", "micro", "--pipelines=captioning",
                "--nodes=recaption_pool")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    retried = {i for path in set(folder.rglob("*.parquet")) - before
               for i in pd.read_parquet(path)["id"]}
    assert retried == set(failures["id"])
    final = pd.read_parquet(project / "data/04_feature/recaptions.parquet")
    assert final["id"].is_unique
    kept = final[final["id"].isin(captions["id"])].sort_values("id").reset_index(drop=True)
    assert kept.equals(captions.sort_values("id").reset_index(drop=True))


@pytest.mark.slow
def test_dvc_reruns_only_what_changed(micro_run, tmp_path):
    """`dvc repro evaluation` twice (nothing runs), then a pretrain parameter: pretrain and what
    follows. The target leaves out `curation` and `captioning`, which the recipe does not read."""
    project = tmp_path / "project"
    shutil.copytree(micro_run[0], project)
    init_dvc(project)
    assert run(project, "dvc", "commit", "-f", "--with-deps", "evaluation",
               KEDRO_ENV="micro").returncode == 0
    for _ in range(2):
        again = run(project, "dvc", "repro", "evaluation", KEDRO_ENV="micro", timeout=300)
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
        assert "Running stage" not in again.stdout, again.stdout[-3000:]
    # A key the micro configuration does not override, so the change reaches the run.
    params = project / "conf/base/parameters_pretrain.yml"
    params.write_text(params.read_text().replace("tokens: 490000\n    lr: 5.0e-4",
                                                 "tokens: 490000\n    lr: 5.0e-4\n    warmup_ratio: 0.1"))
    changed = run(project, "dvc", "repro", "evaluation", KEDRO_ENV="micro")
    assert changed.returncode == 0, changed.stdout[-4000:] + changed.stderr[-4000:]
    ran = [stage for stage in ("data", "pretrain", "sft", "evaluation", "curation", "captioning")
           if f"Running stage '{stage}'" in changed.stdout]
    assert ran == ["pretrain", "sft", "evaluation"], changed.stdout[-3000:]
    assert json.loads((project / "data/06_models/pretrain/advance/run_config.json").read_text()
                      )["optim"]["warmup_ratio"] == 0.1


@pytest.mark.slow
def test_report_prints_the_readme_tables(micro_run):
    from sail_pipeline import report

    project, _ = micro_run
    reporting = project / "data/08_reporting"
    scores = report.eval_table(reporting / "evaluation_metrics.json",
                               reporting / "evaluation_report.json")
    assert "| pope (0.50) |" in scores and "| caption (–) |" in scores
    assert scores.count("\n| advance |") == 1
    details = report.details_table(reporting / "evaluation_report.json")
    assert "mme acc_plus" in details and "pope yes_ratio" in details
