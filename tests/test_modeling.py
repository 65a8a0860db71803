import json

import pytest
import torch
from PIL import Image

from sail_pipeline.modeling.freezing import MODULE_GROUPS, freeze
from sail_pipeline.modeling.presets import PRESETS, build_vlm, count_parameters, get_preset
from sail_pipeline.modeling.processor import IGNORE_INDEX, ImageSettings, VLProcessor, tile_grid
from sail_pipeline.modeling.tokenizer import IM_END, IMG_CONTEXT, load_tokenizer
from sail_pipeline.schema.stages import STAGES


def _processor(tokenizer, preset="tiny"):
    return VLProcessor(tokenizer, get_preset(preset).image_settings())


def test_labels_cover_exactly_the_assistant_replies(world_tokenizer):
    processor = _processor(world_tokenizer)
    messages = [{"role": "user", "content": "<image>\nWhat colour are the shapes?"},
                {"role": "assistant", "content": "red"},
                {"role": "user", "content": "How many shapes are in the image?"},
                {"role": "assistant", "content": "There are two shapes."}]
    sample = processor.encode(messages, n_tiles=1)
    supervised = [t for t in sample.labels if t != IGNORE_INDEX]
    assert world_tokenizer.decode(supervised) == f"red{IM_END}There are two shapes.{IM_END}"
    assert not sample.mask_mismatch
    image_tokens = sample.input_ids.count(world_tokenizer.convert_tokens_to_ids(IMG_CONTEXT))
    assert image_tokens == get_preset("tiny").tokens_per_tile == 16


def test_no_mask_mismatch_on_the_world(world_tokenizer, small_world):
    processor = _processor(world_tokenizer)
    for messages in small_world.conversations["messages"].head(60):
        assert not processor.encode(json.loads(messages), n_tiles=1).mask_mismatch


def test_tokenizer_round_trip(tmp_path, world_tokenizer):
    world_tokenizer.save_pretrained(tmp_path)
    loaded = load_tokenizer(tmp_path)
    assert loaded.encode("two red circles") == world_tokenizer.encode("two red circles")
    assert loaded.chat_template == world_tokenizer.chat_template


@pytest.mark.parametrize(("size", "max_tiles", "grid"), [
    ((448, 448), 12, (1, 1)), ((896, 448), 12, (2, 1)), ((448, 1344), 12, (1, 3)),
    ((4000, 100), 6, (6, 1)), ((640, 480), 1, (1, 1)),
])
def test_tile_grid_matches_aspect_ratio(size, max_tiles, grid):
    assert tile_grid(*size, max_tiles, 448) == grid


def test_tiles_add_a_thumbnail_and_count_tokens(world_tokenizer):
    settings = ImageSettings(tile_size=32, max_tiles=4, tokens_per_tile=4)
    processor = VLProcessor(world_tokenizer, settings)
    pixels = processor.pixel_values(Image.new("RGB", (64, 32), "red"))
    assert pixels.shape == (3, 3, 32, 32)  # 2 tiles + thumbnail
    assert processor.num_tiles(64, 32) == 3
    ids, _ = processor.prompt_ids("What colour?", Image.new("RGB", (64, 32)))
    assert ids.count(world_tokenizer.convert_tokens_to_ids(IMG_CONTEXT)) == 12


def test_sail_vl_2b_preset_has_the_real_shapes():
    preset = PRESETS["sail-vl-2b"]
    assert preset.tokens_per_tile == 256  # 448 px, patch 14, pixel shuffle 0.5
    assert 1.8e9 < count_parameters(preset, 151_936) < 2.2e9


def test_backbones_load_exactly(tmp_path, world_tokenizer):
    from transformers import InternVLVisionModel, Qwen2ForCausalLM

    from sail_pipeline.modeling.presets import text_config, vision_config

    preset = get_preset("tiny")
    torch.manual_seed(1)
    llm = Qwen2ForCausalLM(text_config(preset, world_tokenizer))
    vision = InternVLVisionModel(vision_config(preset))
    llm.save_pretrained(tmp_path / "llm")
    vision.save_pretrained(tmp_path / "vision")
    model = build_vlm(preset, world_tokenizer, tmp_path / "llm", tmp_path / "vision", seed=7)
    assert torch.equal(model.model.language_model.layers[0].mlp.up_proj.weight,
                       llm.model.layers[0].mlp.up_proj.weight)
    assert torch.equal(model.model.vision_tower.encoder.layer[1].mlp.fc1.weight,
                       vision.encoder.layer[1].mlp.fc1.weight)


def test_wrong_vocab_llm_is_refused(tmp_path, world_tokenizer):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    Qwen2ForCausalLM(Qwen2Config(vocab_size=100, hidden_size=128, intermediate_size=384,
                                 num_hidden_layers=2, num_attention_heads=4,
                                 num_key_value_heads=2)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="vocab_size"):
        build_vlm(get_preset("tiny"), world_tokenizer, llm_path=tmp_path)


@pytest.mark.parametrize("preset", ["tiny", "llava-tiny"])
@pytest.mark.parametrize("stage", list(STAGES))
def test_every_stage_trains_exactly_its_modules(stage, preset, world_tokenizer):
    model = build_vlm(get_preset(preset), world_tokenizer)
    report = freeze(model, list(STAGES[stage].trainable))
    prefixes = [p for g in STAGES[stage].trainable for p in MODULE_GROUPS[g]]
    for name, param in model.named_parameters():
        assert param.requires_grad == any(name.startswith(p + ".") for p in prefixes), name
    assert report.trainable_params == sum(p.numel() for p in model.parameters()
                                          if p.requires_grad)
    if stage == "alignment":
        assert report.trainable
        assert all(n.startswith("model.multi_modal_projector.") for n in report.trainable)


def test_freeze_rejects_a_key_that_matches_nothing(world_tokenizer):
    model = build_vlm(get_preset("tiny"), world_tokenizer)
    with pytest.raises(ValueError, match="model.not_a_module"):
        freeze(model, ["projector", "model.not_a_module"])


def test_a_users_tokenizer_and_padded_llm_load_like_qwen(tmp_path, world_tokenizer):
    """Qwen2.5-style: a tokenizer without image tokens, an LLM with padded vocabulary rows."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2ForCausalLM

    from sail_pipeline.modeling.presets import text_config
    from sail_pipeline.modeling.tokenizer import SPECIAL_TOKENS, prepare_pretrained_tokenizer

    core = Tokenizer(models.WordLevel({"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2,
                                       "red": 3, "circle": 4, "[UNK]": 5}, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=core).save_pretrained(tmp_path / "tok")
    tokenizer = prepare_pretrained_tokenizer(tmp_path / "tok")
    assert all(t in tokenizer.get_vocab() for t in SPECIAL_TOKENS)
    assert tokenizer.encode("red circle")[:2] == [3, 4]  # the user's ids are kept

    preset = get_preset("tiny")
    llm = Qwen2ForCausalLM(text_config(preset, tokenizer, vocab_size=len(tokenizer) + 7))
    llm.save_pretrained(tmp_path / "llm")
    model = build_vlm(preset, tokenizer, llm_path=tmp_path / "llm")
    assert model.config.text_config.vocab_size == len(tokenizer) + 7
    assert torch.equal(model.lm_head.weight, llm.lm_head.weight)
    assert model.config.image_token_id == tokenizer.convert_tokens_to_ids(IMG_CONTEXT)
