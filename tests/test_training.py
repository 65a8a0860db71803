import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from sail_pipeline.glue.validation import validate_project
from sail_pipeline.modeling.presets import get_preset
from sail_pipeline.modeling.processor import VLProcessor
from sail_pipeline.schema import InvalidParameters, TrainParams
from sail_pipeline.training.config import RunConfig, load_deepspeed_config
from sail_pipeline.training.data import ConversationData, StepBatches
from sail_pipeline.training.launcher import LauncherParams, TrainingFailed, build_command, launch
from sail_pipeline.training.schedule import warmup_cosine
from sail_pipeline.training.train import choose_attention, choose_precision, deepspeed_config


def test_batches_are_a_function_of_seed_and_step():
    batches = StepBatches(10, 4, seed=5)
    stream = [batches.indices(step) for step in range(6)]
    # Every epoch visits every sample once.
    flat = [i for b in stream for i in b]
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))
    # A resumed run (a fresh object) continues at the same data position.
    assert StepBatches(10, 4, seed=5).indices(4) == stream[4]
    assert StepBatches(10, 4, seed=6).indices(0) != stream[0]


def test_bad_rows_are_rejected_with_a_reason(world_tokenizer, small_world):
    processor = VLProcessor(world_tokenizer, get_preset("tiny").image_settings())
    image = small_world.scenes["image"].iloc[0]
    good = json.dumps([{"role": "user", "content": "<image>\nWhat colour?"},
                       {"role": "assistant", "content": "red"}])
    no_reply = json.dumps([{"role": "user", "content": "<image>\nWhat colour?"}])
    long_reply = json.dumps([{"role": "user", "content": "<image>\nDescribe."},
                             {"role": "assistant", "content": "red " * 300}])
    table = pd.DataFrame({"id": ["ok", "broken", "silent", "long"],
                          "image": [image] * 4,
                          "messages": [good, "{not json", no_reply, long_reply]})
    data = ConversationData(table, processor, max_seq_len=128)
    assert len(data) == 1
    assert data.rejections.counts() == {"messages_not_json": 1, "no_assistant_tokens": 1,
                                        "longer_than_max_seq_len": 1}
    batch = data.batch([0], world_tokenizer.pad_token_id)
    assert batch["pixel_values"].shape == (1, 3, 64, 64)


def test_repeated_rows_encode_once_and_exactly_as_row_by_row(world_tokenizer, small_world):
    """Each distinct conversation (and text) is encoded once; every row still gets its own
    sample, identical to encoding it alone, and every repeated bad row is counted."""
    import io

    from PIL import Image

    from sail_pipeline.training.data import TextData

    processor = VLProcessor(world_tokenizer, get_preset("tiny").image_settings())
    images = small_world.scenes.set_index("id")["image"]
    conversations = small_world.conversations.head(40)
    table = pd.DataFrame({
        "id": [f"r{i}" for i in range(120)],
        "image": [images[s] for s in conversations["scene_id"]] * 3,
        "messages": list(conversations["messages"]) * 2 + ["{not json"] * 40})
    data = ConversationData(table, processor, max_seq_len=256)
    assert data.rejections.counts() == {"messages_not_json": 40}
    assert len(data) == 80
    for row, sample in zip(table.head(80).itertuples(), data.samples, strict=True):
        n_tiles = processor.num_tiles(*Image.open(io.BytesIO(row.image)).size)
        alone = processor.encode(json.loads(row.messages), n_tiles)
        assert (sample.input_ids, sample.labels, sample.n_tiles) == (
            alone.input_ids, alone.labels, n_tiles)
        assert sample.image is row.image

    texts = list(small_world.scenes["reference_caption"].head(30)) * 3 + ["", "word " * 400]
    text_table = pd.DataFrame({"id": [f"t{i}" for i in range(len(texts))], "text": texts})
    text_data = TextData(text_table, world_tokenizer, max_seq_len=64)
    assert text_data.rejections.counts() == {"empty_text": 1}
    assert text_data.truncated == 1 + sum(
        len(world_tokenizer.encode(t + world_tokenizer.eos_token)) > 64 for t in texts[:90])
    kept = [t for t in texts if t.strip()]
    for text, sample in zip(kept, text_data.samples, strict=True):
        assert sample.input_ids == world_tokenizer.encode(text + world_tokenizer.eos_token)[:64]


def test_schedule_warms_up_then_decays_to_the_floor():
    import torch

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = warmup_cosine(optimizer, total_steps=100, warmup_ratio=0.1, min_lr_ratio=0.1)
    lrs = []
    for _ in range(100):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(0.1) and max(lrs) == pytest.approx(1.0)
    assert lrs[-1] == pytest.approx(0.1, abs=0.01)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))


_RUN_KEYS = set(RunConfig.model_fields)


def _config(tmp_path, **overrides) -> RunConfig:
    """A run config; keys of TrainParams go to its `train` settings."""
    train = {"steps": 10, "lr": 1e-3} | {k: v for k, v in overrides.items()
                                         if k not in _RUN_KEYS}
    values = dict(kind="vlm", stage="alignment", output_dir=str(tmp_path / "run"),
                  train_data=str(tmp_path / "missing.parquet"), tokenizer_path=str(tmp_path),
                  train=TrainParams(**train))
    return RunConfig(**(values | {k: v for k, v in overrides.items() if k in _RUN_KEYS}))


def test_dry_run_builds_the_single_process_command(tmp_path):
    """One process starts the trainer directly, with the environment DeepSpeed's launcher sets."""
    plan = launch(_config(tmp_path), LauncherParams(dry_run=True, master_port=29600))
    config_path = plan["config"]
    assert plan["command"] == [sys.executable, "-m", "sail_pipeline.training.train",
                               "--config", config_path]
    # A dry run leaves the stage's folder as it was: its config goes to a temporary folder.
    assert not (tmp_path / "run").exists()
    assert plan["env"] == {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1",
                           "LOCAL_WORLD_SIZE": "1", "CROSS_RANK": "0", "CROSS_SIZE": "1",
                           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29600"}
    saved = RunConfig.load(config_path)
    assert saved.stage == "alignment" and saved.trainable_modules == ["vision", "projector", "llm"]
    through_deepspeed = launch(_config(tmp_path), LauncherParams(
        dry_run=True, master_port=29600, single_process="deepspeed"))
    assert through_deepspeed["command"] == [
        sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", "1", "--master_port",
        "29600", "--module", "sail_pipeline.training.train", "--config",
        through_deepspeed["config"]]
    assert through_deepspeed["env"] == {}


def test_dry_run_builds_the_multi_node_command(tmp_path):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("node-a slots=8\nnode-b slots=8\n")
    launcher = LauncherParams(num_gpus=8, num_nodes=2, hostfile=str(hostfile),
                              master_addr="node-a", master_port=29700, dry_run=True)
    command = build_command(tmp_path / "run_config.json", launcher)
    joined = " ".join(command)
    assert f"--hostfile {hostfile} --num_nodes 2" in joined
    assert "--master_addr node-a --num_gpus 8 --master_port 29700" in joined


def test_missing_hostfile_fails_before_launch(tmp_path):
    with pytest.raises(FileNotFoundError, match="hostfile"):
        build_command(tmp_path / "c.json", LauncherParams(hostfile=str(tmp_path / "nope")))


def test_missing_inputs_fail_before_any_process_starts(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_data .*missing.parquet"):
        launch(_config(tmp_path), LauncherParams())
    assert not (tmp_path / "run" / "train.log").exists()


def test_a_failing_run_raises_with_the_log_tail(tmp_path, world_tokenizer):
    world_tokenizer.save_pretrained(tmp_path / "tok")
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"this is not parquet")
    cfg = _config(tmp_path, train_data=str(corrupt), tokenizer_path=str(tmp_path / "tok"))
    with pytest.raises(TrainingFailed) as failure:
        launch(cfg, LauncherParams(tail_lines=30))
    message = str(failure.value)
    assert "'alignment' failed" in message and "Parquet" in message
    assert (tmp_path / "run" / "train.log").exists()


def test_run_config_rejects_unknown_keys_and_bad_values(tmp_path):
    with pytest.raises(ValueError, match="steps"):
        _config(tmp_path, steps=0)
    with pytest.raises(ValueError, match="learning_rate"):
        RunConfig.model_validate(_config(tmp_path).model_dump() | {"learning_rate": 1})
    # A stage's settings are not redeclared beside `train`: they belong there.
    with pytest.raises(ValueError, match="micro_batch_size"):
        RunConfig.model_validate(_config(tmp_path).model_dump() | {"micro_batch_size": 4})


CONF_DEEPSPEED = Path(__file__).resolve().parents[1] / "conf/base/deepspeed"


def test_deepspeed_configs_load_by_name_and_a_bad_name_fails_before_training():
    assert load_deepspeed_config("zero3_offload", CONF_DEEPSPEED)["zero_optimization"][
        "offload_param"]["device"] == "cpu"
    with pytest.raises(FileNotFoundError, match="zero9.*known: .*zero2"):
        load_deepspeed_config("zero9", CONF_DEEPSPEED)
    stages = ("knowledge", "instruction", "preference")
    params = {"sft": {s: {"steps": 5, "lr": 1e-3} for s in stages}
              | {"mixtures": {s: {"size": 10, "sources": {"probes": 1.0}} for s in stages}}}
    params["sft"]["instruction"]["deepspeed"] = "zero9"
    with pytest.raises(InvalidParameters, match="sft.instruction.deepspeed"):
        validate_project(params, deepspeed_dir=CONF_DEEPSPEED)
    params["sft"]["instruction"] |= {"deepspeed": "zero2", "tokens": 1000}
    with pytest.raises(InvalidParameters, match="sft.instruction: .*exactly one budget"):
        validate_project(params, deepspeed_dir=CONF_DEEPSPEED)


def test_the_stage_file_and_the_run_config_make_the_deepspeed_config(tmp_path):
    import torch

    cfg = _config(tmp_path, micro_batch_size=4, grad_accum=8,
                  deepspeed_config=load_deepspeed_config("zero2_offload", CONF_DEEPSPEED))
    config = deepspeed_config(cfg, world_size=16, dtype=torch.bfloat16)
    assert config["train_batch_size"] == 4 * 8 * 16
    assert config["zero_optimization"]["stage"] == 2 and config["bf16"]["enabled"]
    assert config["zero_force_ds_cpu_optimizer"] is False  # our AdamW on offloaded states
    assert cfg.zero_stage == 2


def test_precision_and_attention_fall_back_to_what_the_machine_has():
    import torch

    assert choose_attention("auto") == "sdpa" and choose_precision("auto") == torch.float32
    with pytest.raises(ValueError, match="bf16 needs a GPU"):
        choose_precision("bf16")
    with pytest.raises(ValueError, match="flash_attention_2 needs a CUDA GPU"):
        choose_attention("flash_attention_2")


def test_multi_node_dry_run_writes_the_config_it_would_run(tmp_path):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("node-a slots=8\nnode-b slots=8\n")
    launcher = LauncherParams(num_gpus=8, num_nodes=2, hostfile=str(hostfile),
                              master_addr="node-a", master_port=29700, dry_run=True)
    cfg = _config(tmp_path, tokens=10**9, steps=None,
                  deepspeed_config=load_deepspeed_config("zero3", CONF_DEEPSPEED))
    plan = launch(cfg, launcher)
    assert plan["command"] == [
        sys.executable, "-m", "deepspeed.launcher.runner", "--hostfile", str(hostfile),
        "--num_nodes", "2", "--master_addr", "node-a", "--num_gpus", "8", "--master_port",
        "29700", "--module", "sail_pipeline.training.train", "--config", plan["config"]]
    saved = RunConfig.load(plan["config"])
    assert saved.zero_stage == 3 and saved.train.tokens == 10**9 and saved.train.pack
