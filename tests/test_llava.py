"""The LLaVA-1.5 family: llava-tiny builds, trains, freezes, saves, loads and generates."""

import dataclasses
import json

import pytest
import torch
from PIL import Image
from transformers import CLIPVisionModel, LlamaConfig, LlavaForConditionalGeneration

from sail_pipeline.modeling.inference import load_generator
from sail_pipeline.modeling.presets import (
    CLIP_MEAN,
    CLIP_STD,
    VocabStub,
    build_text_lm,
    build_vision_tower,
    build_vlm,
    count_parameters,
    get_preset,
    load_vlm,
    text_config,
)
from sail_pipeline.modeling.processor import VLProcessor
from sail_pipeline.modeling.tokenizer import IMG_CONTEXT

MESSAGES = [{"role": "user", "content": "<image>\nWhat colour are the shapes?"},
            {"role": "assistant", "content": "red"}]


def _batch(tokenizer, preset):
    processor = VLProcessor(tokenizer, preset.image_settings())
    sample = processor.encode(MESSAGES, n_tiles=1)
    pixels = processor.pixel_values(Image.new("RGB", (80, 64), "red"))
    return {"input_ids": torch.tensor([sample.input_ids]),
            "labels": torch.tensor([sample.labels]),
            "pixel_values": pixels}


def test_llava_tiny_settings():
    preset = get_preset("llava-tiny")
    settings = preset.image_settings()
    assert preset.tokens_per_tile == settings.tokens_per_tile == 64  # (64 / 8)^2, no CLS
    assert (settings.max_tiles, settings.use_thumbnail) == (1, False)
    assert (settings.mean, settings.std) == (CLIP_MEAN, CLIP_STD)
    assert get_preset("tiny").image_settings().mean != CLIP_MEAN  # InternVL unchanged


def test_llava_tiny_forward_gives_a_finite_loss(world_tokenizer):
    preset = get_preset("llava-tiny")
    model = build_vlm(preset, world_tokenizer)
    assert isinstance(model, LlavaForConditionalGeneration)
    assert isinstance(model.model.vision_tower, CLIPVisionModel)
    assert model.config.image_token_id == world_tokenizer.convert_tokens_to_ids(IMG_CONTEXT)
    assert model.config.vision_feature_layer == -2
    assert model.config.vision_feature_select_strategy == "default"
    assert model.config.projector_hidden_act == "gelu"
    batch = _batch(world_tokenizer, preset)
    assert batch["pixel_values"].shape == (1, 3, 64, 64)
    n_tokens = int((batch["input_ids"] == model.config.image_token_id).sum())
    features = model.model.get_image_features(batch["pixel_values"]).pooler_output
    assert n_tokens == sum(f.shape[0] for f in features) == 64
    loss = model(**batch).loss
    assert torch.isfinite(loss)
    loss.backward()
    assert model.model.multi_modal_projector.linear_1.weight.grad is not None


def test_save_and_load_vlm_round_trip(tmp_path, world_tokenizer):
    preset = get_preset("llava-tiny")
    model = build_vlm(preset, world_tokenizer, seed=3).eval()
    model.save_pretrained(tmp_path, safe_serialization=True)
    loaded = load_vlm(tmp_path).eval()
    assert isinstance(loaded, LlavaForConditionalGeneration)
    batch = _batch(world_tokenizer, preset)
    batch.pop("labels")
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, loaded(**batch).logits)


def test_generator_on_a_saved_llava(tmp_path, world_tokenizer):
    preset = get_preset("llava-tiny")
    build_vlm(preset, world_tokenizer).save_pretrained(tmp_path)
    VLProcessor(world_tokenizer, preset.image_settings()).save_pretrained(tmp_path)
    generator = load_generator(tmp_path, batch_size=2)
    assert isinstance(generator.model, LlavaForConditionalGeneration)
    images = [Image.new("RGB", (64, 64), "red"), None, Image.new("RGB", (50, 70), "blue")]
    answers = generator.generate(images, ["What colour?", "How many?", "Shape?"],
                                 max_new_tokens=3)
    assert len(answers) == 3 and all(isinstance(a, str) for a in answers)
    results = generator.loglikelihood(images[:2], ["What colour?", "How many?"], ["red", "two"])
    assert all(total < 0 and isinstance(greedy, bool) for total, greedy in results)


def test_pretrained_stand_ins_load_exactly(tmp_path, world_tokenizer):
    preset = get_preset("llava-tiny")
    torch.manual_seed(1)
    llm = build_text_lm(preset, world_tokenizer)
    tower, hidden = build_vision_tower(preset)
    assert isinstance(tower, CLIPVisionModel) and hidden == 64
    # The stand-in vision pretraining pools `last_hidden_state[:, 1:]`: index 0 is CLS.
    out = tower(pixel_values=torch.zeros(2, 3, 64, 64)).last_hidden_state
    assert out.shape == (2, 1 + preset.tokens_per_tile, hidden)
    llm.save_pretrained(tmp_path / "llm")
    tower.save_pretrained(tmp_path / "vision")
    model = build_vlm(preset, world_tokenizer, tmp_path / "llm", tmp_path / "vision", seed=7)
    for name, value in llm.model.state_dict().items():
        assert torch.equal(model.model.language_model.state_dict()[name], value), name
    for name, value in tower.state_dict().items():
        assert torch.equal(model.model.vision_tower.state_dict()[name], value), name
    assert torch.equal(model.lm_head.weight, llm.lm_head.weight)


def test_a_stand_in_of_the_wrong_family_is_refused(tmp_path, world_tokenizer):
    build_vision_tower(get_preset("tiny"))[0].save_pretrained(tmp_path / "internvit")
    with pytest.raises(ValueError, match="internvl_vision"):
        build_vlm(get_preset("llava-tiny"), world_tokenizer, vision_path=tmp_path / "internvit")


def test_a_llama_text_model_builds_and_loads(tmp_path, world_tokenizer):
    preset = dataclasses.replace(get_preset("llava-tiny"), name="llava-tiny-llama",
                                 text_model_type="llama")
    assert isinstance(text_config(preset, world_tokenizer), LlamaConfig)
    llm = build_text_lm(preset, world_tokenizer)
    llm.save_pretrained(tmp_path / "llm")
    model = build_vlm(preset, world_tokenizer, llm_path=tmp_path / "llm")
    assert model.config.text_config.model_type == "llama"
    assert torch.equal(model.model.language_model.layers[1].mlp.up_proj.weight,
                       llm.model.layers[1].mlp.up_proj.weight)
    assert torch.isfinite(model(**_batch(world_tokenizer, preset)).loss)
    with pytest.raises(ValueError, match="'llama'"):  # a Llama LLM is not a Qwen2 one
        build_vlm(get_preset("llava-tiny"), world_tokenizer, llm_path=tmp_path / "llm")


def test_llava_1_5_7b_preset_has_the_real_shapes():
    preset = get_preset("llava-1.5-7b")
    assert preset.gpu_only and preset.tokens_per_tile == 576  # (336 / 14)^2, CLS dropped
    assert isinstance(text_config(preset, VocabStub(32000)), LlamaConfig)
    # CLIP ViT-L/14-336 (0.30B) + MLP (0.02B) + Vicuna-7B (6.74B) = 7.06B
    assert 7.0e9 < count_parameters(preset, 32_000) < 7.1e9


def test_load_vlm_names_an_unknown_model_type(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "blip-2"}))
    with pytest.raises(ValueError, match="blip-2"):
        load_vlm(tmp_path)
    with pytest.raises(FileNotFoundError, match="missing"):
        load_vlm(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_vlm(tmp_path / "empty")


