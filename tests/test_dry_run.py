"""Dry runs by one mechanism (`glue.dry_run`): training nodes print their command, every other
node is stood in for, and datasets hand the next node the path a real run would write."""

from __future__ import annotations

import pandas as pd
import pytest
from kedro.pipeline import Pipeline, node, pipeline

from sail_pipeline.glue import dry_run
from sail_pipeline.glue.io import DryRunDataset, ParquetPathDataset
from sail_pipeline.pipeline_registry import register_pipelines
from tests.test_pipelines import micro_params


def _explode(*args):
    raise AssertionError("a dry run ran a node that is not a training stage")


def test_every_node_but_the_training_stages_is_stood_in_for(caplog):
    plain = Pipeline([
        node(_explode, "a", "b", name="one_output"),
        node(_explode, "b", ["c", "d"], name="two_outputs"),
        node(_explode, "d", {"x": "e", "y": "f"}, name="dict_outputs"),
        node(lambda c: "trained", "c", "g", name="train_stage", tags=["training"]),
    ])
    namespaced = pipeline(Pipeline([node(_explode, "in", "out", name="run_point")]),
                          namespace="alt_text_n16_s0", inputs={"in"})
    dry = dry_run.stand_ins(plain + namespaced, "scaling", "micro")
    by_name = {n.name: n for n in dry.nodes}
    assert by_name["one_output"].run({"a": 1}) == {"b": dry_run.NOT_RUN}
    assert by_name["two_outputs"].run({"b": 1}) == {"c": dry_run.NOT_RUN, "d": dry_run.NOT_RUN}
    assert by_name["dict_outputs"].run({"d": 1}) == {"e": dry_run.NOT_RUN, "f": dry_run.NOT_RUN}
    assert by_name["train_stage"].run({"c": 1}) == {"g": "trained"}  # as it is
    with pytest.raises(dry_run.MissingForDryRun, match="train_stage starts from c, which"):
        by_name["train_stage"].run({"c": dry_run.NOT_RUN})
    with caplog.at_level("INFO", logger="sail_pipeline.glue.dry_run"):
        by_name["alt_text_n16_s0.run_point"].run({"in": 1})
    assert ("alone: kedro run --pipelines=scaling --namespaces=alt_text_n16_s0 --env micro"
            in caplog.text)


def test_a_table_a_stood_in_node_made_loads_as_its_would_be_path(tmp_path):
    dataset = DryRunDataset(ParquetPathDataset(str(tmp_path / "t.parquet")))
    assert dataset.load() == str((tmp_path / "t.parquet").resolve())  # nothing on disk
    dataset.save(dry_run.NOT_RUN)
    assert dataset.load() == str((tmp_path / "t.parquet").resolve())
    assert not (tmp_path / "t.parquet").exists()
    real = tmp_path / "r.parquet"
    pd.DataFrame({"id": ["a"]}).to_parquet(real)
    assert DryRunDataset(ParquetPathDataset(str(real))).load() == str(real.resolve())


def test_the_registry_stands_in_on_a_dry_run_only():
    def stood_in(pipelines: dict) -> dict[str, bool]:
        return {n.name: hasattr(n.func, "stood_in_for") for n in pipelines["__default__"].nodes}

    wet = stood_in(register_pipelines(micro_params()))
    dry = stood_in(register_pipelines(micro_params(runtime={"launcher": {"dry_run": True}})))
    assert not any(wet.values()) and wet.keys() == dry.keys()
    trained = {"train_alignment", "train_knowledge", "train_captioner", "pretrain_llm",
               "pretrain_vision"}
    assert {name for name, stood in dry.items() if not stood} == trained | {
        "train_advance", "train_instruction", "train_preference"}
