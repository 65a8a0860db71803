"""`kedro run`, `dvc` and MLflow end to end, in a copy of the project that is a git + DVC repo.

One `kedro run` of the recipe at micro sizes (the `project` fixture of conftest.py) serves
every test here, and the namespaced variants run on a copy of it: what only real runs show.
"""

from __future__ import annotations

import difflib
import hashlib
import json

import mlflow
import pandas as pd
import pytest

from tests.conftest import RECIPE_STAGES, VARIANTS
from tests.project import make_project, run

BACKBONES = ("llm", "vision")
RECIPE = ("alignment", "advance", "knowledge", "instruction", "preference")
# Stages whose micro budget is large enough for the held-out loss to fall every time. Micro's
# Alignment trains on alt-texts (conf/micro) and is held out on reference captions: no fall.
FALLING = ("llm", "vision", "knowledge")
def _tree_digest(folder) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.mark.slow
def test_every_stage_leaves_a_checkpoint_and_a_summary(project):
    for stage in (*BACKBONES, *RECIPE):
        folder = project / "data/06_models" / stage
        pointer = json.loads((folder / "model.json").read_text())
        # Stored relative to the pointer, so the project can move (see test_io).
        assert pointer["hf_dir"] == "hf" and pointer["run_dir"] == "."
        assert (folder / "hf/model.safetensors").exists(), stage
        summary = pointer["summary"]
        assert summary["mask_mismatches"] == 0, stage
        assert summary["train_samples"] > 0 and summary["steps"] > 0
        if stage in FALLING:
            assert summary["eval_loss_after"] < summary["eval_loss_before"], stage
            losses = summary["logged_train_losses"]
            assert losses[-1] < losses[0], (stage, losses)
    assert (project / "data/06_models/tokenizer/tokenizer.json").exists()


@pytest.mark.slow
def test_zero3_stage_saves_the_consolidated_weights_it_trained(project):
    """Preference trains under ZeRO-3 in the micro configuration: its saved weights, reloaded,
    give the held-out loss the trainer measured (sharded, unsaved weights would not)."""
    import torch

    from sail_pipeline.modeling.presets import load_vlm
    from sail_pipeline.modeling.processor import VLProcessor
    from sail_pipeline.training.data import ConversationData
    from sail_pipeline.training.train import SupervisedLM

    run_dir = project / "data/06_models/preference"
    config = json.loads((run_dir / "run_config.json").read_text())
    assert config["deepspeed_config"]["zero_optimization"]["stage"] == 3
    processor = VLProcessor.from_pretrained(run_dir / "hf")
    table = pd.read_parquet(config["eval_data"]).head(config["train"]["eval_samples"])
    data = ConversationData(table, processor, config["train"]["max_seq_len"])
    batch = data.batch(list(range(len(data))), processor.tokenizer.pad_token_id)
    with torch.no_grad():
        losses, _, _ = SupervisedLM(load_vlm(run_dir / "hf")).eval().token_losses(**batch)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert float(losses.mean()) == pytest.approx(summary["eval_loss_after"], rel=1e-4)


@pytest.mark.slow
def test_evaluation_writes_scores_for_each_checkpoint(project):
    scores = pd.read_csv(project / "data/08_reporting/evaluation_scores.csv")
    assert set(scores["checkpoint"]) == {"advance", "preference"}
    assert {"world_count", "world_colour", "world_shape", "world_caption", "world_pope",
            "world_mme", "world_mmbench", "average"} <= set(scores["task"])
    assert scores["score"].between(0, 1).all()
    assert (project / "data/08_reporting/evaluation_scores.png").stat().st_size > 1000
    metrics = json.loads((project / "data/08_reporting/evaluation_metrics.json").read_text())
    assert set(metrics["preference"]) >= {"count", "colour", "shape", "average"}


@pytest.mark.slow
def test_two_variants_run_as_namespaced_instances(project_copy):
    """`kedro run --pipelines=variants`: each variant of conf/local trains the recipe under its
    own namespace, folders and MLflow child run, on the tables and backbones of the project."""
    project = project_copy
    result = run(project, "kedro", "run", "--pipelines=variants")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    for name in VARIANTS:
        for stage in RECIPE:
            config = json.loads((project / f"data/06_models/{name}/{stage}/run_config.json"
                                 ).read_text())
            assert config["output_dir"].endswith(f"data/06_models/{name}/{stage}")
        report = project / f"data/08_reporting/{name}"
        assert json.loads((report / "evaluation_metrics.json").read_text())["preference"]
    fast = json.loads((project / "data/06_models/fast/knowledge/run_config.json").read_text())
    seeded = json.loads((project / "data/06_models/seed_1/knowledge/run_config.json").read_text())
    base = json.loads((project / "data/06_models/knowledge/run_config.json").read_text())
    assert fast["train"]["lr"] == 0.004 and seeded["train"]["lr"] == base["train"]["lr"]
    assert seeded["runtime"]["seed"] == 1 and fast["runtime"]["seed"] == 0
    # The instances share the tables and the backbones; only their own stages are theirs.
    tables = str((project / "data/05_model_input").resolve())
    assert fast["train_data"] == f"{tables}/knowledge_train.parquet"
    alignment = json.loads((project / "data/06_models/fast/alignment/run_config.json"
                            ).read_text())
    assert alignment["llm_path"] == str((project / "data/06_models/llm/hf").resolve())
    variant = run(project, "sail-report", "--namespace", "fast")
    assert variant.returncode == 0 and "| preference |" in variant.stdout

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    runs = mlflow.search_runs(search_all_experiments=True)
    parent = runs[runs["tags.mlflow.runName"].str.fullmatch(
        r"variants · seed 0 · tiny · config [0-9a-f]{6}")]
    assert len(parent) == 1
    children = runs[runs["tags.mlflow.parentRunId"] == parent.iloc[0]["run_id"]]
    assert sorted(children["tags.mlflow.runName"]) == sorted(VARIANTS)
    for name in VARIANTS:
        instance = children[children["tags.mlflow.runName"] == name].iloc[0]
        stages = runs[runs["tags.mlflow.parentRunId"] == instance["run_id"]]
        assert sorted(stages["tags.sail.stage"]) == sorted(RECIPE)
        assert (stages["tags.sail.instance"] == name).all()
        assert instance["metrics.eval/preference/average"] >= 0
        assert len(instance["tags.git.commit"]) == 40
        assert float(instance["params.sft.knowledge.lr"]) == (
            0.004 if name == "fast" else base["train"]["lr"])


@pytest.mark.slow
def test_mlflow_tree_and_lineage(project):
    """Kedro run -> a child per stage, each with the commit, the parameters and, for training
    runs, the tables it read (the variants' tree: test_two_variants_run_as_...)."""
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    runs = mlflow.search_runs(search_all_experiments=True)
    parents = runs[runs["tags.mlflow.parentRunId"].isna()]
    assert len(parents) == 1
    parent = parents.iloc[0]
    # named for what it is (pipeline, seed, preset, configuration), not `__default__`
    assert parent["tags.mlflow.runName"] == (f"recipe · seed 0 · tiny · config "
                                             f"{parent['tags.sail.config_digest']}")
    assert len(parent["tags.sail.config_digest"]) == 6
    assert parent["tags.runner"] == "SequentialRunner"
    assert len(parent["tags.git.commit"]) == 40 and parent["tags.git.dirty"] in ("true", "false")
    children = runs[runs["tags.mlflow.parentRunId"] == parent["run_id"]]
    assert sorted(children["tags.mlflow.runName"]) == sorted([*BACKBONES, "captioner", *RECIPE])
    assert (children["status"] == "FINISHED").all()
    assert (runs["tags.git.commit"].dropna().str.len() == 40).all()
    # MLflow's own commit tag, which its UI shows, on every run, the parent included
    assert (runs["tags.mlflow.source.git.commit"] == parent["tags.git.commit"]).all()
    # the tables the run read are the parent's dataset inputs
    read = {i.dataset.name for i in
            mlflow.tracking.MlflowClient().get_run(parent["run_id"]).inputs.dataset_inputs}
    assert {"knowledge_train", "alignment_train", "benchmark"} <= read
    assert parent["metrics.eval/preference/average"] >= 0
    assert 0 <= parent["metrics.eval/preference/world_pope/yes_ratio"] <= 1
    assert parent["metrics.knowledge/eval_loss_after"] < parent["metrics.knowledge/eval_loss_before"]
    assert parent["metrics.quality.alt_text.input"] > 0  # the funnel, in the parent run
    assert "params.sft.knowledge.lr" in runs.columns
    client = mlflow.tracking.MlflowClient()
    knowledge = children[children["tags.mlflow.runName"] == "knowledge"].iloc[0]
    history = client.get_metric_history(knowledge["run_id"], "train_loss")
    assert len(history) >= 2 and history[-1].value < history[0].value
    inputs = client.get_run(knowledge["run_id"]).inputs.dataset_inputs
    assert {i.tags[0].value for i in inputs} == {"training", "evaluation"}
    assert {i.dataset.name for i in inputs} == {"knowledge_train", "knowledge_eval"}
    assert all(len(i.dataset.digest) == 16 for i in inputs)
    assert float(knowledge["params.train.lr"]) > 0  # the stage's own settings
    experiment = client.get_experiment(parent["experiment_id"])
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


@pytest.mark.slow
def test_dvc_agrees_with_kedro(project_copy):
    """After `kedro run`, dvc.lock holds the run: `dvc status` is clean and `dvc repro` runs
    nothing. A one-character change to the image processor makes evaluation (and the stages
    that train with it) out of date."""
    project = project_copy
    status = run(project, "dvc", "status", *RECIPE_STAGES)
    assert status.returncode == 0 and "up to date" in status.stdout, status.stdout[-3000:]
    dry = run(project, "dvc", "repro", "--dry", "evaluation")
    assert dry.returncode == 0 and "Running stage" not in dry.stdout, dry.stdout[-3000:]
    processor = project / "src/sail_pipeline/modeling/processor.py"
    original = processor.read_text()
    processor.write_text(original + "#")
    try:
        changed = run(project, "dvc", "repro", "--dry", "evaluation")
        assert changed.returncode == 0, changed.stdout[-3000:] + changed.stderr[-3000:]
        assert "Running stage 'evaluation'" in changed.stdout
    finally:
        processor.write_text(original)
    assert "up to date" in run(project, "dvc", "status", *RECIPE_STAGES).stdout


@pytest.mark.slow
def test_dvc_exp_run_changes_one_parameter_and_reruns_only_its_stage(project_copy):
    copy = project_copy
    # The README's example, dry: DVC plans it in a temporary copy of the git tree, which lacks
    # the untracked data and lock (-C copies them in).
    dry = run(copy, "dvc", "exp", "run", "--dry", "-C", "data", "-C", "dvc.lock", "-S",
              "conf/base/parameters_sft.yml:sft.knowledge.lr=5e-4", "evaluation")
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    assert "Running stage 'sft'" in dry.stdout and "Running stage 'data'" not in dry.stdout
    before = _tree_digest(copy / "data/06_models")
    # For real, in the workspace: a key conf/local (the micro sizes) does not override, so the
    # change reaches the run; only evaluation reads it.
    real = run(copy, "dvc", "exp", "run", "-S",
               "conf/base/parameters_evaluation.yml:evaluation.max_new_tokens=6", "evaluation")
    assert real.returncode == 0, real.stdout[-3000:] + real.stderr[-3000:]
    ran = [s for s in RECIPE_STAGES if f"Running stage '{s}'" in real.stdout]
    assert ran == ["evaluation"], real.stdout[-3000:]
    assert _tree_digest(copy / "data/06_models") == before
    shown = run(copy, "dvc", "exp", "show", "--json")
    assert shown.returncode == 0 and '"max_new_tokens": 6' in shown.stdout


@pytest.mark.slow
def test_a_dry_run_prints_every_command_and_writes_nothing(project_copy):
    project = project_copy
    before = _tree_digest(project / "data")
    result = run(project, "kedro", "run", "--pipelines=sft,evaluation", "--params",
                 "runtime.launcher.dry_run=true", timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for stage in ("knowledge", "instruction", "preference"):
        assert f"[dry run] {stage}:" in result.stdout
    assert "sail_pipeline.training.train --config" in result.stdout
    assert _tree_digest(project / "data") == before
    assert "up to date" in run(project, "dvc", "status", *RECIPE_STAGES).stdout


@pytest.mark.slow
def test_bad_parameter_fails_before_training_naming_the_key(tmp_path):
    project = make_project(tmp_path)
    result = run(project, "kedro", "run", "--env", "micro", "--params", "sft.knowledge.lr=-1",
                 timeout=300)
    assert result.returncode != 0
    assert "sft.knowledge.lr" in result.stdout + result.stderr
    assert not (project / "data").exists()


@pytest.mark.slow
def test_captioning_chain_recaptions_every_kept_id_once(project_copy):
    """curation -> reference captions -> captioner -> recaption the pool -> held-out scores,
    as the default `kedro run` ran them."""
    project = project_copy
    manifest = pd.read_parquet(project / "data/02_intermediate/curation_manifest.parquet")
    captions = pd.read_parquet(project / "data/04_feature/recaptions.parquet")
    failures = pd.read_parquet(project / "data/04_feature/recaption_failures.parquet")
    assert captions["id"].is_unique and set(captions["id"]).isdisjoint(failures["id"])
    assert set(captions["id"]) | set(failures["id"]) == set(manifest["id"])
    with_alt = set(manifest.loc[manifest["alt_text"].notna(), "id"])
    assert set(captions.loc[captions["prompt_kind"] == "recaption", "id"]) == \
        with_alt & set(captions["id"])

    pointer = json.loads((project / "data/06_models/captioner/model.json").read_text())
    assert (project / "data/06_models/captioner/hf/model.safetensors").exists()
    assert pointer["summary"]["mask_mismatches"] == 0 and pointer["summary"]["steps"] == 6
    run_config = json.loads((project / "data/06_models/captioner/run_config.json").read_text())
    assert sorted(run_config["trainable_modules"]) == ["llm", "projector", "vision"]
    assert run_config["llm_path"].endswith("06_models/llm/hf")  # from the backbones

    heldout = pd.read_csv(project / "data/08_reporting/captioner_heldout.csv")
    assert list(heldout["captions"]) == ["alt_text", "captioner_caption_prompt",
                                         "captioner_recaption_prompt"]
    assert (heldout["scenes"] == 40).all() and heldout["score"].between(0, 1).all()
    assert (project / "data/08_reporting/captioner_heldout.png").stat().st_size > 0

    # A second run of the recaption node asks again only for the ids that failed (the micro
    # captioner answers some with an empty caption); every caption it had stays as it was.
    folder = project / "data/04_feature/recaption_shards"
    before = set(folder.rglob("*.parquet"))
    again = run(project, "kedro", "run", "--pipelines=captioning", "--nodes=recaption_pool")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    retried = {i for path in set(folder.rglob("*.parquet")) - before
               for i in pd.read_parquet(path)["id"]}
    assert retried == set(failures["id"])
    final = pd.read_parquet(project / "data/04_feature/recaptions.parquet")
    assert final["id"].is_unique
    kept = final[final["id"].isin(captions["id"])].sort_values("id").reset_index(drop=True)
    assert kept.equals(captions.sort_values("id").reset_index(drop=True))


@pytest.mark.slow
def test_quality_scores_filters_and_feeds_pretraining(project):
    """signals per (id, source) -> statistics report -> funnel -> the pool Alignment reads."""
    data = project / "data"
    manifest = pd.read_parquet(data / "02_intermediate/curation_manifest.parquet")
    signals = pd.read_parquet(data / "04_feature/quality_signals.parquet")
    decisions = pd.read_parquet(data / "04_feature/quality_decisions.parquet")
    # The micro captioner may answer with empty captions only: then recaption has no rows.
    assert {"alt_text", "reference"} <= set(signals["source"])
    assert (signals.groupby("source")["id"].nunique() <= len(manifest)).all()
    for column in ("distinct_4", "nouns", "sharpness", "entropy", "clip_score",
                   "image_gain", "judge_vir", "judge_ita"):
        assert signals[column].notna().any(), column
    funnel = pd.read_csv(data / "08_reporting/quality_funnel.csv").set_index(["source", "step"])
    for source in decisions["source"].unique():
        mine = decisions[decisions["source"] == source]
        assert funnel.loc[(source, "input"), "count"] == len(mine)
        assert funnel.loc[(source, "kept"), "count"] == mine["kept"].sum()
        assert funnel.loc[(source, "kept"), "count"] + funnel.loc[(source, "rejected"),
                                                                  "count"] == len(mine)
    rejected = pd.read_parquet(data / "08_reporting/quality_rejected.parquet")
    assert (rejected["reasons"] != "").all()
    report = (data / "08_reporting/quality_statistics.md").read_text()
    assert "| alt_text |" in report and "unique_4grams" in report
    assert (data / "08_reporting/quality_histograms.png").stat().st_size > 10_000
    # Micro: Alignment and Advance train on the kept alt-text (conf/micro/parameters.yml).
    kept = set(decisions.loc[decisions["kept"] & (decisions["source"] == "alt_text"), "id"])
    alignment = pd.read_parquet(data / "05_model_input/alignment_train.parquet")
    advance = pd.read_parquet(data / "05_model_input/advance_train.parquet")
    ids = {i.removesuffix("-caption") for i in pd.concat([alignment, advance])["id"]}
    assert ids == kept
    alt = manifest.set_index("id")["alt_text"]
    first = alignment.iloc[0]
    assert json.loads(first["messages"])[1]["content"] == alt[first["id"].removesuffix(
        "-caption")]


@pytest.mark.slow
def test_report_prints_the_readme_tables(project):
    result = run(project, "sail-report")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| alignment | projector | kept captions, half of the pool |" in result.stdout
    assert "| pope (0.50) |" in result.stdout and "| caption (–) |" in result.stdout
    assert result.stdout.count("\n| advance |") == 3  # stage, scores and details
    assert "mme acc_plus" in result.stdout and "pope yes_ratio" in result.stdout
    # stdout is the tables alone (`sail-report > results.md`): Kedro's log lines go to stderr.
    assert result.stdout.startswith("| stage |"), result.stdout[:500]
    assert "INFO" not in result.stdout and "Loading data from" in result.stderr


@pytest.mark.slow
def test_results_pages_name_their_run_and_carry_their_figures(project, tmp_path):
    """`sail-report --page … --out`: each page from the run's data, naming the run that wrote
    it (its provenance record), with its figures copied beside it; a page whose experiment
    never ran says so instead of showing stale or empty tables."""
    from sail_pipeline.provenance import code_state

    out = tmp_path / "results"
    result = run(project, "sail-report", "--page", "recipe", "quality", "scaling", "selection",
                 "benchmarks", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == ""  # written to files, each named on stderr
    recipe = (out / "recipe.md").read_text()
    provenance = json.loads((project / "data/08_reporting/run_provenance.json").read_text())
    record = provenance["__default__"]
    assert record["command"] == "kedro run" and record["machine"]["cores"] >= 1
    assert "| commit |" in recipe and "| command | `kedro run` |" in recipe
    assert f"code_state={record['code_state']}" in recipe
    assert record["code_state"] == code_state()  # the session's run is of this code
    assert "| knowledge |" in recipe and "](recipe/evaluation_scores.png)" in recipe
    assert (out / "recipe/evaluation_scores.png").stat().st_size > 1000
    quality = (out / "quality.md").read_text()
    assert "## The quality filter" in quality and "(quality/quality_histograms.png)" in quality
    assert "No sweep has run here yet" in (out / "scaling.md").read_text()
    assert "No benchmark has been recorded here yet" in (out / "benchmarks.md").read_text()
    printed = run(project, "sail-report", "--page", "recipe")
    assert printed.stdout.startswith("# Results: the recipe"), printed.stdout[:300]


@pytest.mark.slow
def test_a_repeated_run_writes_byte_identical_dvc_outputs(project_copy):
    """The same commit and seed, run again: every output DVC tracks is byte-identical, so
    dvc.lock does not change (timings, logs and run ids are telemetry, which .dvcignore hides:
    sail_pipeline.run_telemetry)."""
    project = project_copy
    before = (project / "dvc.lock").read_text()
    for pipeline in ("backbones", "evaluation"):
        again = run(project, "kedro", "run", f"--pipelines={pipeline}")
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
        assert f"dvc.lock records {pipeline}" in again.stdout + again.stderr
    after = (project / "dvc.lock").read_text()
    assert after == before, "".join(difflib.unified_diff(
        before.splitlines(True), after.splitlines(True), n=1))[-3000:]
    # the telemetry is still there, beside the outputs
    summary = json.loads((project / "data/06_models/llm/model.json").read_text())["summary"]
    assert "wall_seconds" not in summary
    assert "wall_seconds" in json.loads(
        (project / "data/06_models/llm/model.telemetry.json").read_text())
