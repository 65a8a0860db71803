"""Memory plan: model states agree with DeepSpeed's estimators; activations behave."""

from __future__ import annotations

import contextlib
import io

import pytest

from sail_pipeline.cli.memory_plan import main
from sail_pipeline.training.memory_plan import (
    layer_activation_bytes,
    model_shapes,
    model_state_bytes,
    plan,
    recommend,
)


@pytest.fixture(scope="module")
def shapes():
    return model_shapes("sail-vl-2b")


@pytest.fixture(scope="module")
def ds_estimators():
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
        from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs
    return estimate_zero2_model_states_mem_needs, estimate_zero3_model_states_mem_needs


def test_sail_vl_2b_parameter_count(shapes):
    assert shapes.params == 1_856_314_880  # ViT 304M + projector 8.7M + Qwen2.5-1.5B (tied)
    assert shapes.largest_layer_params == 151_936 * 1536  # the embedding


@pytest.mark.parametrize("gpus", [1, 2, 8])
@pytest.mark.parametrize("offload", [False, True])
def test_model_states_match_deepspeed_estimators(shapes, ds_estimators, gpus, offload):
    zero2, zero3 = ds_estimators
    psi, largest = shapes.params, shapes.largest_layer_params
    _, ds2 = zero2(total_params=psi, num_gpus_per_node=gpus, cpu_offload=offload)
    ours2 = model_state_bytes(psi, gpus, 2, offload, largest)["gpu"]
    assert ours2 == pytest.approx(ds2, rel=0.03)
    _, ds3, _ = zero3(total_params=psi, largest_layer_params=largest, num_gpus_per_node=gpus,
                      cpu_offload=offload, cpu_offload_params=offload)
    ours3 = model_state_bytes(psi, gpus, 3, offload, largest)["gpu"]
    assert ours3 == pytest.approx(ds3, rel=0.03)


@pytest.mark.parametrize("gpus", [2, 4, 8, 64])
def test_higher_zero_stage_never_needs_more_per_gpu(shapes, gpus):
    per_stage = [model_state_bytes(shapes.params, gpus, stage, False,
                                   shapes.largest_layer_params)["gpu"] for stage in range(4)]
    assert per_stage == sorted(per_stage, reverse=True)
    assert per_stage[3] < per_stage[0] / 2
    for stage in (1, 2, 3):
        kept = model_state_bytes(shapes.params, gpus, stage, False, shapes.largest_layer_params)
        offloaded = model_state_bytes(shapes.params, gpus, stage, True,
                                      shapes.largest_layer_params)
        assert offloaded["gpu"] < kept["gpu"] and offloaded["cpu"] > 0


def test_zero_paper_accounting_single_gpu():
    # 2 (bf16 w) + 2 (bf16 g) + 4 (fp32 g) + 12 (fp32 w, m, v) bytes per parameter
    assert model_state_bytes(1000, 1, 0)["gpu"] == 20_000
    # only what trains has gradients and optimizer states
    assert model_state_bytes(1000, 1, 0, trainable_params=100)["gpu"] == 2000 + 1800
    with pytest.raises(ValueError):
        model_state_bytes(1000, 1, 0, offload=True)


def test_korthikanti_formula_for_a_gpt_layer():
    s, b, h, a = 2048, 2, 1024, 16
    gpt = dict(heads=a, q_dim=h, kv_dim=h, intermediate=4 * h, gated=False, dropout=True)
    assert layer_activation_bytes(s, b, h, flash=False, **gpt) == s * b * h * (34 + 5 * a * s / h)
    assert layer_activation_bytes(s, b, h, flash=True, **gpt) == 34 * s * b * h


def test_checkpointing_and_flash_lower_activations():
    for seq in (4096, 8192):
        base = plan("sail-vl-2b", seq_len=seq, grad_ckpt=False, flash=True)
        ckpt = plan("sail-vl-2b", seq_len=seq, grad_ckpt=True, flash=True)
        eager = plan("sail-vl-2b", seq_len=seq, grad_ckpt=False, flash=False)
        assert ckpt["activations_gib"] < base["activations_gib"] / 3
        assert eager["activations_gib"] > base["activations_gib"]
        assert ckpt["model_states_gib"] == base["model_states_gib"]


def test_sail_vl_2b_fits_80_gib_but_not_8():
    settings = dict(zero_stage=2, seq_len=4096, micro_batch=1, grad_ckpt=True)
    on_80 = plan("sail-vl-2b", gpu_gib=80, **settings)
    assert on_80["fits"] and on_80["total_gib"] < 72
    assert on_80["usable_gib"] == pytest.approx(72.0)
    assert not plan("sail-vl-2b", gpu_gib=8, **settings)["fits"]


def test_frozen_stages_need_less():
    full = plan("sail-vl-2b", grad_ckpt=False)
    alignment = plan("sail-vl-2b", grad_ckpt=False, trainable={"projector"})
    assert alignment["trainable_params"] == 8_662_016
    assert alignment["model_states_gib"] < full["model_states_gib"] / 5
    assert alignment["activations_vision_gib"] == 0  # frozen ViT, nothing upstream trains
    assert alignment["activations_llm_gib"] == full["activations_llm_gib"]  # grads pass through


def test_recommendation():
    best = recommend("sail-vl-2b", gpus=1, gpu_gib=80, seq_len=4096)
    assert best is not None and best["zero_stage"] == 0 and best["fits"]
    assert best["micro_batch"] >= best["max_micro_batch_without_ckpt"] >= 1
    assert not plan("sail-vl-2b", gpu_gib=80, zero_stage=0, seq_len=4096,
                    micro_batch=best["micro_batch"] + 1, grad_ckpt=best["grad_ckpt"])["fits"]
    small = recommend("sail-vl-2b", gpus=1, gpu_gib=8, seq_len=4096)
    assert small is not None and small["offload"]
    assert recommend("sail-vl-2b", gpus=1, gpu_gib=1, seq_len=4096) is None


def test_tiny_preset_plans():
    result = plan("tiny", gpu_gib=1, vocab_size=1024, zero_stage=0)
    assert result["fits"] and result["tiles"] == 1


def test_cli_prints_table(capsys):
    assert main(["--preset", "sail-vl-2b", "--gpu-gib", "80"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("|")]
    assert lines[0].startswith("| ZeRO | offload | seq len")
    assert len(lines) == 2 + 6 * 2 * 2  # header, rule, ZeRO x seq x ckpt
    assert "Recommended for 1 x 80 GiB GPU at seq len 4096: ZeRO-0" in out
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "DeepSpeed ZeRO" in capsys.readouterr().out


def test_every_preset_plans_and_counts_flops():
    """InternVL and LLaVA configs alike: shapes come from text_config / vision_config."""
    from sail_pipeline.modeling.presets import PRESETS, get_preset
    from sail_pipeline.training.flops import projector_tokens_per_tile, training_flops

    for name in PRESETS:
        shapes = model_shapes(name, 1024)
        assert shapes.params == sum(shapes.params_by_group.values()) > 0
        assert projector_tokens_per_tile(shapes.config) == get_preset(name).tokens_per_tile
        result = plan(name, gpu_gib=1000, vocab_size=1024, zero_stage=0, grad_ckpt=False)
        assert result["activations_vision_gib"] > 0 and result["total_gib"] > 0
        assert training_flops(shapes.config, 2048, 2048, result["tiles"]) > 0


def test_where_table_recommends_partitioning_only_where_it_pays():
    from sail_pipeline.training.memory_plan import where_table

    table = where_table("sail-vl-2b", ["1x80", "8x80", "1x24"], 4096).splitlines()
    one, eight, small = table[2], table[3], table[4]
    assert one.startswith("| 1 × 80 GiB | 0 |")  # nothing to partition on one GPU
    assert "| 3 |" in eight  # eight GPUs: shard everything, bigger micro batch
    assert int(eight.split("|")[4]) > int(one.split("|")[4])
    assert "CPU offload" in small
    with pytest.raises(ValueError, match="GPUSxGIB"):
        where_table("sail-vl-2b", ["eight"], 4096)


def test_each_preset_plans_with_its_own_vocabulary():
    """No flag needed: llava-1.5-7b plans with LLaMA's 32,000 rows, sail-vl-2b with Qwen's."""
    from sail_pipeline.training.memory_plan import model_shapes

    llava, with_qwen_vocab = model_shapes("llava-1.5-7b"), model_shapes("llava-1.5-7b", 151_936)
    hidden = 4096  # untied: embedding and lm_head each hold vocab x hidden
    assert with_qwen_vocab.params - llava.params == 2 * (151_936 - 32_000) * hidden
    assert model_shapes("sail-vl-2b").params == model_shapes("sail-vl-2b", 151_936).params
