"""FLOPs accounting and MFU: exact on hand-computed configs, sane on the real preset."""

from __future__ import annotations

import pytest
from transformers import InternVLVisionConfig, Qwen2Config

from sail_pipeline.modeling.presets import VocabStub, count_parameters, get_preset, vlm_config
from sail_pipeline.training.flops import (
    lm_flops_per_token,
    lm_matmul_params,
    mfu,
    peak_tflops,
    projector_flops_per_image,
    training_flops,
    vision_flops_per_image,
)


def _small_lm(kv_heads: int = 1) -> Qwen2Config:
    return Qwen2Config(hidden_size=8, intermediate_size=16, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=kv_heads, vocab_size=10)


def test_lm_flops_hand_computed():
    # head_dim 4: q 8x8, k and v 8x4 each, o 8x8 = 192; SwiGLU 3 x 8x16 = 384; x2 layers
    # = 1152; lm_head 8x10 = 80 -> N = 1232. Attention: 12 * 2 layers * 16 seq * 8 = 3072.
    config = _small_lm()
    assert lm_matmul_params(config) == 1232
    assert lm_flops_per_token(config, seq_len=16) == 6 * 1232 + 3072 == 10464


def test_gqa_costs_less_than_mha():
    assert lm_flops_per_token(_small_lm(kv_heads=1), 16) < lm_flops_per_token(_small_lm(2), 16)
    # MHA: k and v are 8x8 too -> 64 more params per layer
    assert lm_matmul_params(_small_lm(2)) - lm_matmul_params(_small_lm(1)) == 2 * 64


def test_vision_flops_hand_computed():
    config = InternVLVisionConfig(image_size=16, patch_size=8, hidden_size=8,
                                  num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=16)
    # 4 patches + CLS = 5 tokens; layer matmuls 4*8*8 + 2*8*16 = 512; patch embed 3*8*8*8.
    forward = 2 * (5 * 512 + 4 * 3 * 8 * 8 * 8) + 4 * 1 * 5 * 5 * 8
    assert vision_flops_per_image(config, n_tiles=2) == 3 * forward * 2 == 109248


def _tiny_config():
    return vlm_config(get_preset("tiny"), VocabStub(300))  # type: ignore[arg-type]


def test_training_flops_all_trainable_is_the_sum_of_parts():
    config = _tiny_config()
    tokens, seq, tiles = 4096, 512, 8
    expected = (tokens * lm_flops_per_token(config.text_config, seq)
                + vision_flops_per_image(config.vision_config, tiles)
                + projector_flops_per_image(config, tiles))
    assert training_flops(config, tokens, seq, tiles) == pytest.approx(expected)
    # Nothing trains: forward only, a third of the work.
    assert training_flops(config, tokens, seq, tiles, set()) == pytest.approx(expected / 3)


def test_frozen_modules_follow_the_documented_approximation():
    config = _tiny_config()
    tokens, seq, tiles = 1000, 256, 4
    full = training_flops(config, tokens, seq, tiles)
    alignment = training_flops(config, tokens, seq, tiles, {"projector"})
    advance = training_flops(config, tokens, seq, tiles, {"vision", "projector"})
    assert alignment < advance < full
    # Alignment: ViT forward only, projector 3x, LLM weights 2x (input grads) + attention 3x.
    lm_fwd_attention = 4.0 * 2 * seq * 128 * tokens  # tiny LLM: 2 layers, 4 heads x 32
    lm_fwd_weights = 2.0 * lm_matmul_params(config.text_config) * tokens
    expected = (vision_flops_per_image(config.vision_config, tiles) / 3
                + projector_flops_per_image(config, tiles)
                + 2 * lm_fwd_weights + 3 * lm_fwd_attention)
    assert alignment == pytest.approx(expected)
    # Text-only step: no images, so no vision or projector work.
    assert training_flops(config, tokens, seq, 0) == pytest.approx(
        tokens * lm_flops_per_token(config.text_config, seq))
    with pytest.raises(ValueError, match="unknown module groups"):
        training_flops(config, tokens, seq, tiles, {"decoder"})


def test_sail_vl_2b_llm_flops_per_token():
    preset = get_preset("sail-vl-2b")
    config = vlm_config(preset, VocabStub(151_936))  # type: ignore[arg-type]
    n = lm_matmul_params(config.text_config)
    assert n == pytest.approx(1.54e9, rel=0.01)
    # The whole LLM (embedding tied to lm_head, norms, biases) counts about the same.
    lm_total = count_parameters(preset, 151_936) - 303_938_560 - 8_662_016  # minus ViT, proj.
    assert n == pytest.approx(lm_total, rel=0.01)
    per_token = lm_flops_per_token(config.text_config, 4096)
    assert per_token == 6 * n + 12 * 28 * 4096 * 1536
    assert 0.9e10 < per_token < 1.3e10


@pytest.mark.parametrize("name, peak", [
    ("NVIDIA H100 80GB HBM3", 989.0),
    ("NVIDIA H100 PCIe", 756.0),
    ("NVIDIA H200", 989.0),
    ("NVIDIA A100-SXM4-80GB", 312.0),
    ("NVIDIA A10", 125.0),
    ("NVIDIA L40S", 362.0),
    ("NVIDIA GeForce RTX 4090", 165.0),
    ("NVIDIA A10G", None),  # not listed; must not fall back to the A10's figure
    ("cpu", None),
    ("", None),
    (None, None),
])
def test_peak_tflops(name, peak):
    assert peak_tflops(name) == peak


def test_peak_override_wins_and_mfu():
    assert peak_tflops("NVIDIA H100 80GB HBM3", override=500.0) == 500.0
    assert peak_tflops(None, override=100) == 100.0
    with pytest.raises(ValueError):
        peak_tflops("cpu", override=0)
    assert mfu(494.5e12, 989.0) == pytest.approx(0.5)
    assert mfu(1e12, None) is None
