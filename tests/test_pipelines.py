"""Every pipeline's wiring, in memory through Kedro's SequentialRunner, in seconds.

As Kedro's starters test pipelines: a DataCatalog of MemoryDatasets, the nodes' real code. The
trainer subprocess and lmms-eval are replaced by fakes that record what they were asked (the
end-to-end tests run them for real), so a wrong input name, a parameter of the wrong type or a
stage starting from the wrong checkpoint fails here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline
from kedro.runner import SequentialRunner

from sail_pipeline.engine import stage as training_node
from sail_pipeline.evaluation.runner import EvalReport
from sail_pipeline.glue.context import resolve_param
from sail_pipeline.glue.io import ParquetPathDataset
from sail_pipeline.pipelines.backbones import create_pipeline as backbones
from sail_pipeline.pipelines.curation import create_pipeline as curation
from sail_pipeline.pipelines.data import create_pipeline as data
from sail_pipeline.pipelines.evaluation import nodes as evaluation_nodes
from sail_pipeline.pipelines.pretrain import create_pipeline as pretrain
from sail_pipeline.pipelines.recipe import create_pipeline as recipe
from sail_pipeline.pipelines.sft import create_pipeline as sft
from sail_pipeline.pipelines.variants import create_pipeline as variants
from sail_pipeline.recipe_data import MIXTURE_TABLES, POOL_TABLES
from sail_pipeline.schema import (
    RECIPE,
    SFT_STAGES,
    ProjectParams,
    deep_merge,
    validate_parameters,
)
from sail_pipeline.schema.quality import QualityParams

ROOT = Path(__file__).resolve().parents[1]


def micro_params(**overrides: Any) -> ProjectParams:
    """conf/base merged with conf/micro, as `kedro run --env micro` sees them."""
    tree: dict[str, Any] = {}
    for path in sorted((ROOT / "conf/base").glob("parameters*.yml")):
        tree = deep_merge(tree, yaml.safe_load(path.read_text()) or {})
    tree = deep_merge(tree, yaml.safe_load((ROOT / "conf/micro/parameters.yml").read_text()))
    return validate_parameters(deep_merge(tree, overrides))


class Kept(MemoryDataset):
    """A MemoryDataset the runner cannot release, so the test can read every output."""

    def _release(self) -> None:
        pass


def run_in_memory(pipeline, project: ProjectParams, tmp_path: Path,
                  inputs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run `pipeline` with its parameters from `project` and folders under `tmp_path`; return
    every dataset it wrote."""
    datasets: dict[str, Any] = {}
    for name in pipeline.inputs():
        if name.startswith("params:"):
            datasets[name] = MemoryDataset(resolve_param(project, name), copy_mode="assign")
        elif name.endswith(("_workdir", "_shards", "_cache")):
            datasets[name] = MemoryDataset(str(tmp_path / name), copy_mode="assign")
    for name, value in (inputs or {}).items():
        datasets[name] = MemoryDataset(value, copy_mode="assign")
    missing = pipeline.inputs() - set(datasets)
    assert not missing, f"inputs the test did not provide: {sorted(missing)}"
    for name in pipeline.all_outputs():
        # Training tables travel as Parquet paths, as the catalog's ParquetPathDataset has it.
        datasets[name] = (ParquetPathDataset(str(tmp_path / f"{name}.parquet"))
                          if name.endswith(("_train", "_eval")) else Kept(copy_mode="assign"))
    catalog = DataCatalog(datasets)
    SequentialRunner().run(pipeline, catalog)
    return {name: catalog.load(name) for name in pipeline.all_outputs()}


class FakeTrainer:
    """Stands in for `launch`: records each run config, returns a stage summary."""

    def __init__(self) -> None:
        self.configs: dict[str, Any] = {}

    def __call__(self, cfg, launcher) -> dict[str, Any]:
        self.configs[cfg.output_dir] = cfg
        return {"hf_dir": f"{cfg.output_dir}/hf", "run_dir": cfg.output_dir, "train_samples": 3,
                "wall_seconds": 0.1, "eval_loss_before": 2.0, "eval_loss_after": 1.0,
                "steps": 1}

    def by_stage(self) -> dict[str, Any]:
        return {cfg.stage: cfg for cfg in self.configs.values()}


@pytest.fixture
def trainer(monkeypatch) -> FakeTrainer:
    fake = FakeTrainer()
    monkeypatch.setattr(training_node, "launch", fake)
    return fake


@pytest.fixture
def evaluated(monkeypatch) -> list[str]:
    asked: list[str] = []

    def fake_suite(hf_dir, benchmark, workdir, **kwargs) -> EvalReport:
        asked.append(hf_dir)
        return EvalReport(scores={"world_count": 0.5}, n_samples={"world_count": 4},
                          chance={"world_count": 1 / 3}, average=50.0,
                          samples_path=Path(workdir) / "samples.jsonl",
                          results_path=Path(workdir) / "results.json")

    monkeypatch.setattr(evaluation_nodes, "run_world_suite", fake_suite)
    return asked


TABLES = {f"{table}_{split}": f"/tables/{table}_{split}.parquet"
          for table in ("lm_text", "vision_attributes", *RECIPE) for split in ("train", "eval")}


def test_data_pipeline_makes_every_table_from_a_tiny_world(tmp_path):
    project = micro_params(data={"world": {"n_train": 24, "n_benchmark": 6}})
    out = run_in_memory(data(), project, tmp_path)
    # Alignment's and Advance's training tables come from the quality pipeline's pool.
    assert (set(TABLES) - set(POOL_TABLES) - set(MIXTURE_TABLES)) | {"benchmark", "tokenizer"
                                                                     } <= set(out)
    # Pretraining's come from the quality pipeline's pool, the SFT stages' from their mixtures.
    assert not (set(POOL_TABLES) | set(MIXTURE_TABLES)) & set(out)
    assert len(out["world_scenes"]) == 30 and len(pd.read_parquet(out["alignment_eval"])) > 0
    assert out["tokenizer"].vocab_size <= project.data.tokenizer.vocab_size


def test_pretrain_wires_backbones_into_alignment_and_alignment_into_advance(tmp_path, trainer):
    project = micro_params()
    out = run_in_memory(backbones() + pretrain(), project, tmp_path,
                        {**TABLES, "tokenizer": "/tokenizer"})
    stages = trainer.by_stage()
    assert set(stages) == {"llm", "vision", "alignment", "advance"}
    alignment, advance = stages["alignment"], stages["advance"]
    assert alignment.llm_path == str(tmp_path / "llm_workdir/hf")
    assert alignment.vision_path == str(tmp_path / "vision_workdir/hf")
    assert alignment.trainable_modules == ["projector"]
    assert advance.trainable_modules == ["vision", "projector"]
    assert advance.init_from == out["alignment_model"]["hf_dir"]
    # The validated settings themselves reach the trainer, not a copy of some of their fields.
    assert alignment.train == project.pretrain.alignment
    assert alignment.runtime == project.runtime
    assert stages["llm"].kind == "lm" and stages["vision"].kind == "vision"


def _sft_training(schedule: str) -> Pipeline:
    """The SFT pipeline's stage nodes, without the data nodes that write their tables."""
    return recipe(schedule=schedule).only_nodes_with_tags("sft")


def test_sft_continues_from_advance_through_the_curriculum(tmp_path, trainer):
    project = micro_params()
    run_in_memory(_sft_training("curriculum"), project, tmp_path,
                  {**TABLES, "advance_model": {"hf_dir": "/advance/hf"}})
    stages = trainer.by_stage()
    assert stages["knowledge"].init_from == "/advance/hf"
    assert stages["instruction"].init_from == str(tmp_path / "knowledge_workdir/hf")
    assert stages["preference"].init_from == str(tmp_path / "instruction_workdir/hf")
    assert stages["preference"].deepspeed_config["zero_optimization"]["stage"] == 3  # micro's zero3


def test_all_in_one_trains_one_stage_on_the_union_with_every_budget(tmp_path, trainer,
                                                                      evaluated):
    project = micro_params(sft={s: {"steps": None, "tokens": 1000 * (k + 1)}
                                for k, s in enumerate(SFT_STAGES)} | {"schedule": "all_in_one"},
                           evaluation={"checkpoints": ["knowledge", "preference"]})
    out = run_in_memory(recipe(schedule="all_in_one").only_nodes_with_tags("sft", "evaluation"),
                        project, tmp_path, {**TABLES, "advance_model": {"hf_dir": "/advance/hf"},
                                            "alignment_model": {"hf_dir": "/alignment/hf"},
                                            "all_in_one_train": "/tables/all_in_one_train.parquet",
                                            "all_in_one_eval": "/tables/all_in_one_eval.parquet",
                                            "benchmark": "/benchmark.parquet"})
    stages = trainer.by_stage()
    assert set(stages) == {"knowledge"}  # one stage trains
    assert stages["knowledge"].train_data == "/tables/all_in_one_train.parquet"
    assert stages["knowledge"].train.tokens == 1000 + 2000 + 3000
    assert stages["knowledge"].train.lr == project.sft.knowledge.lr
    knowledge = out["knowledge_model"]["hf_dir"]
    assert out["instruction_model"]["hf_dir"] == out["preference_model"]["hf_dir"] == knowledge
    assert out["preference_model"]["summary"]["passed_through"] == "preference"
    assert evaluated == [knowledge]  # the same weights are scored once
    assert set(out["evaluation_scores"]["checkpoint"]) == {"knowledge", "preference"}


def test_sft_data_builds_validates_and_mixes_the_candidate_sets(tmp_path, small_world,
                                                                world_tokenizer):
    project = micro_params()
    world_tokenizer.save_pretrained(tmp_path / "tokenizer")
    pipeline = sft().only_nodes_with_tags("sft_data")
    out = run_in_memory(pipeline, project, tmp_path, {
        "world_scenes": small_world.scenes, "world_vqa": small_world.vqa,
        "world_conversations": small_world.conversations, "world_probes": small_world.probes,
        "tokenizer": str(tmp_path / "tokenizer")})
    mixtures = out["sft_mixture_accounting"]
    for stage in SFT_STAGES:
        spec = getattr(project.sft.mixtures, stage)
        table = pd.read_parquet(out[f"{stage}_train"])
        assert len(table) == spec.size and table["id"].is_unique
        assert table["n_tokens"].max() <= getattr(project.sft, stage).max_seq_len
        shares = table["source"].value_counts(normalize=True)
        for source, proportion in spec.sources.items():
            assert abs(shares[source] - proportion) <= 1 / spec.size + 1e-9
        assert len(pd.read_parquet(out[f"{stage}_eval"])) == spec.eval_size
        lines = mixtures[(mixtures["stage"] == stage) & (mixtures["split"] == "train")]
        assert lines["rows"].sum() == spec.size
    union = pd.read_parquet(out["all_in_one_train"])
    assert len(union) == sum(getattr(project.sft.mixtures, s).size for s in SFT_STAGES)
    accounting = out["sft_candidate_accounting"].set_index("set")
    assert set(accounting.index) == set(project.sft.candidate_names())
    assert (accounting["rows"] == accounting["kept_train"] + accounting["kept_heldout"]
            + accounting["rejected"]).all()


def test_evaluation_scores_the_chosen_checkpoints(tmp_path, evaluated):
    project = micro_params()
    pointers = {f"{s}_model": {"hf_dir": f"/{s}/hf"} for s in RECIPE}
    out = run_in_memory(recipe().only_nodes_with_tags("evaluation"), project, tmp_path,
                        {**pointers, "benchmark": "/benchmark.parquet"})
    assert evaluated == ["/advance/hf", "/preference/hf"]  # conf/micro's checkpoints
    assert set(out["evaluation_scores"]["checkpoint"]) == {"advance", "preference"}
    assert out["evaluation_metrics"]["preference"]["average"] == 50.0


def test_two_variants_run_as_namespaced_instances_with_their_own_settings(
        tmp_path, trainer, evaluated):
    project = micro_params(variants={"fast": {"sft": {"knowledge": {"lr": 0.004}}},
                                     "seed_1": {"runtime": {"seed": 1}}})
    shared = {**TABLES, "tokenizer": "/tokenizer", "llm_model": {"hf_dir": "/llm/hf"},
              "vision_model": {"hf_dir": "/vision/hf"}, "benchmark": "/benchmark.parquet"}
    out = run_in_memory(variants(project), project, tmp_path, shared)
    configs = trainer.configs.values()
    knowledge = {Path(c.output_dir).name: c for c in configs if c.stage == "knowledge"}
    assert knowledge["fast.knowledge_workdir"].train.lr == 0.004
    assert knowledge["seed_1.knowledge_workdir"].train.lr == project.sft.knowledge.lr
    assert knowledge["seed_1.knowledge_workdir"].runtime.seed == 1
    assert {"fast.evaluation_metrics", "seed_1.evaluation_metrics"} <= set(out)
    assert len(evaluated) == 4  # two checkpoints per instance


def test_curation_accounts_for_a_tiny_world(tmp_path, small_world):
    project = micro_params()
    out = run_in_memory(curation(), project, tmp_path, {"world_scenes": small_world.scenes})
    manifest, quarantine = out["curation_manifest"], out["curation_quarantine"]
    train = small_world.scenes[small_world.scenes["split"] == "train"]
    assert len(manifest) + len(quarantine) == len(train)
    assert isinstance(out["curation_funnel"], pd.DataFrame)


def test_captioning_wires_reference_captions_to_the_captioner_and_the_pool(
        tmp_path, trainer, small_world):
    """The oracle captions the reference set and the pool; the captioner trains in between."""
    project = micro_params(captioning={"reference": {"size": 10},
                                       "recaption": {"backend": "oracle"}})
    from sail_pipeline.pipelines.captioning import create_pipeline as captioning

    scenes = small_world.scenes
    train = scenes[scenes["split"] == "train"].reset_index(drop=True)
    manifest = pd.DataFrame({"id": "world:" + train["id"], "image": train["image"],
                             "alt_text": train["alt_text"], "sha256": train["id"]})
    out = run_in_memory(captioning(), project, tmp_path, {
        "curation_manifest": manifest, "world_scenes": scenes, "tokenizer": "/tokenizer",
        "llm_model": {"hf_dir": "/llm/hf"}, "vision_model": {"hf_dir": "/vision/hf"}})
    assert len(out["reference_captions"]) == 10
    captioner = trainer.by_stage()["captioner"]
    assert captioner.llm_path == "/llm/hf" and captioner.train == project.captioning.captioner.train
    assert set(out["recaptions"]["id"]) | set(out["recaption_failures"]["id"]) == \
        set(manifest["id"])


def test_quality_scores_every_source_and_builds_the_pool_from_kept_captions(
        tmp_path, small_world, world_tokenizer):
    """caption sources -> stand-in CLIP -> signals -> report and filter -> pool tables, with
    the garbage the filter must drop planted in the recaptions."""
    from sail_pipeline.pipelines.quality import create_pipeline as quality

    project = micro_params(pretrain={"caption_source": "recaption"})
    project.quality = QualityParams.model_validate({
        "clip": {"steps": 2, "batch_size": 8}, "likelihood": {"enabled": False},
        "filter": {"thresholds": {"words": {"min": 2}, "word_repetition_ratio": {"max": 0.2}}}})
    scenes = small_world.scenes
    train = scenes[scenes["split"] == "train"].reset_index(drop=True)
    ids = "world:" + train["id"]
    manifest = pd.DataFrame({"id": ids, "image": train["image"], "alt_text": train["alt_text"]})
    recaptions = pd.DataFrame({"id": ids, "caption": train["reference_caption"]})
    garbage = {ids[0]: "", ids[1]: "circle", ids[2]: "a red a red a red a red a red a red",
               ids[3]: b"\xff\xfe not utf-8", ids[4]: "x" * 100_000, ids[5]: None}
    recaptions["caption"] = [garbage.get(i, c) for i, c in zip(ids, recaptions["caption"], strict=True)]
    tokenizer = tmp_path / "tokenizer"
    world_tokenizer.save_pretrained(tokenizer)
    out = run_in_memory(quality(), project, tmp_path, {
        "curation_manifest": manifest, "recaptions": recaptions,
        "reference_captions": recaptions.iloc[6:30].reset_index(drop=True),
        "world_scenes": scenes, "tokenizer": str(tokenizer),
        "captioner_model": {"hf_dir": None}, "advance_ocr_train": pd.DataFrame(
            columns=["id", "image", "messages"])})
    signals, decisions = out["quality_signals"], out["quality_decisions"]
    assert len(signals) == len(decisions) == 2 * len(train) + 24
    reasons = decisions[decisions["source"] == "recaption"].set_index("id")["reasons"]
    assert reasons[ids[0]].startswith("words<2") and "words<2" in reasons[ids[1]]
    assert "word_repetition_ratio>0.2" in reasons[ids[2]]
    assert reasons[ids[3]].startswith("not_utf8") and reasons[ids[4]].startswith("too_long")
    assert reasons[ids[5]].startswith("missing_caption")
    # The oracle judge gives the world's true captions 5/5: no clean recaption is dropped.
    assert (reasons.iloc[6:] == "").all()
    pool = pd.concat([pd.read_parquet(out["alignment_train"]),
                      pd.read_parquet(out["advance_train"])])
    assert {i.removesuffix("-caption") for i in pool["id"]} == set(ids[6:])
    funnel = out["quality_funnel"].set_index(["source", "step"])["count"]
    assert funnel["recaption", "input"] == len(train)
    assert funnel["recaption", "kept"] == len(train) - 6
    assert "| recaption |" in out["quality_statistics"]


def test_a_users_llava_set_joins_a_mixture_and_its_bad_rows_are_counted(
        tmp_path, small_world, world_tokenizer):
    """A user's LLaVA JSON named in `sft.candidates` and used in a mixture: its good rows are
    drawn, its broken ones rejected with their reasons in the accounting."""
    import io
    import json

    from PIL import Image

    folder = tmp_path / "mine"
    folder.mkdir()
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "blue").save(buffer, format="PNG")
    (folder / "blue.png").write_bytes(buffer.getvalue())
    good = [{"id": f"g{i}", "image": "blue.png", "conversations": [
        {"from": "human", "value": "<image>\nWhat colour is the image?"},
        {"from": "gpt", "value": "blue"}]} for i in range(60)]
    bad = [{"id": "gone", "image": "nope.png", "conversations": good[0]["conversations"]},
           {"id": "empty", "conversations": [{"from": "human", "value": "Hi"},
                                             {"from": "gpt", "value": ""}]},
           {"id": "order", "conversations": [{"from": "gpt", "value": "Hi"}]}]
    (folder / "set.json").write_text(json.dumps(good + bad))
    base = micro_params().sft.mixtures.instruction.sources
    project = micro_params(sft={
        "candidates": {"mine": {"path": str(folder / "set.json"), "group": "general"}},
        "mixtures": {"instruction": {"sources": {**base, "multi_turn": base["multi_turn"] - 0.1,
                                                 "mine": 0.1}}}})
    world_tokenizer.save_pretrained(tmp_path / "tokenizer")
    out = run_in_memory(sft(project).only_nodes_with_tags("sft_data"), project, tmp_path, {
        "world_scenes": small_world.scenes, "world_vqa": small_world.vqa,
        "world_conversations": small_world.conversations, "world_probes": small_world.probes,
        "tokenizer": str(tmp_path / "tokenizer")})
    instruction = pd.read_parquet(out["instruction_train"])
    assert (instruction["source"] == "mine").sum() == round(
        0.1 * project.sft.mixtures.instruction.size)
    mine = out["sft_candidate_accounting"].set_index("set").loc["mine"]
    assert mine["source"] == "user" and mine["rows"] == 63 and mine["rejected"] == 3
    assert mine["kept_train"] + mine["kept_heldout"] == 60 and mine["kept_heldout"] > 0
    assert (mine["rejected_image_missing"], mine["rejected_empty_assistant_turn"],
            mine["rejected_role_order"]) == (1, 1, 1)
