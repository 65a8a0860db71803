"""Model presets: a name maps to the shapes of an InternVL-style VLM.

`tiny` trains usefully on two CPU cores; `sail-vl-2b` has the shapes of SAIL-VL-2B
(InternViT-300M-448px + Qwen2.5-1.5B). Either starts from random weights or from local
directories holding a pretrained LLM (`Qwen2ForCausalLM` format) and a pretrained vision
tower (`InternVLVisionModel` format) — the embedded default makes small ones of those.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import (
    InternVLConfig,
    InternVLForConditionalGeneration,
    InternVLVisionConfig,
    InternVLVisionModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from sail_pipeline.modeling.processor import ImageSettings
from sail_pipeline.modeling.tokenizer import IM_END, IMG_CONTEXT

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Preset:
    name: str
    vision: dict[str, Any]
    text: dict[str, Any]
    max_tiles: int
    downsample_ratio: float = 0.5
    description: str = ""
    gpu_only: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tile_size(self) -> int:
        return int(self.vision["image_size"])

    @property
    def tokens_per_tile(self) -> int:
        side = self.tile_size // int(self.vision["patch_size"])
        return int((side * self.downsample_ratio) ** 2)

    def image_settings(self) -> ImageSettings:
        return ImageSettings(
            tile_size=self.tile_size,
            max_tiles=self.max_tiles,
            use_thumbnail=self.max_tiles > 1,
            tokens_per_tile=self.tokens_per_tile,
        )


PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        name="tiny",
        description="64 px tiles, patch 8 -> 16 image tokens; 2-layer ViT + 2-layer Qwen2",
        vision=dict(
            image_size=64, patch_size=8, hidden_size=64, num_hidden_layers=2,
            num_attention_heads=4, intermediate_size=256, layer_scale_init_value=1.0,
        ),
        text=dict(
            hidden_size=128, intermediate_size=384, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
            tie_word_embeddings=True,
        ),
        max_tiles=1,
    ),
    "sail-vl-2b": Preset(
        name="sail-vl-2b",
        description="InternViT-300M-448px + Qwen2.5-1.5B shapes (SAIL-VL-2B)",
        vision=dict(
            image_size=448, patch_size=14, hidden_size=1024, num_hidden_layers=24,
            num_attention_heads=16, intermediate_size=4096, layer_scale_init_value=0.1,
            norm_type="layer_norm", use_qk_norm=False,
        ),
        text=dict(
            hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
            num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=32768,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            rms_norm_eps=1e-6, tie_word_embeddings=True,
        ),
        max_tiles=12,
        gpu_only=True,
    ),
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown model preset {name!r}; known: {sorted(PRESETS)}") from None


def text_config(preset: Preset, tokenizer: PreTrainedTokenizerFast,
                vocab_size: int | None = None) -> Qwen2Config:
    """`vocab_size` defaults to the tokenizer's; a pretrained LLM may have padded rows beyond."""
    return Qwen2Config(
        vocab_size=vocab_size or len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.convert_tokens_to_ids(IM_END),
        **preset.text,
    )


def vision_config(preset: Preset) -> InternVLVisionConfig:
    return InternVLVisionConfig(**preset.vision)


def vlm_config(preset: Preset, tokenizer: PreTrainedTokenizerFast,
               vocab_size: int | None = None) -> InternVLConfig:
    text = text_config(preset, tokenizer, vocab_size)
    return InternVLConfig(
        vision_config=vision_config(preset).to_dict(),
        text_config=text.to_dict(),
        image_token_id=tokenizer.convert_tokens_to_ids(IMG_CONTEXT),
        image_seq_length=preset.tokens_per_tile,
        downsample_ratio=preset.downsample_ratio,
        tie_word_embeddings=bool(preset.text.get("tie_word_embeddings", False)),
    )


def build_vlm(
    preset: Preset,
    tokenizer: PreTrainedTokenizerFast,
    llm_path: str | Path | None = None,
    vision_path: str | Path | None = None,
    seed: int = 0,
) -> InternVLForConditionalGeneration:
    """A VLM of the preset's shapes; backbones loaded from local directories when given."""
    torch.manual_seed(seed)
    vocab_size = None
    if llm_path is not None:
        llm_vocab = Qwen2Config.from_pretrained(str(llm_path)).vocab_size
        if llm_vocab < len(tokenizer):
            raise ValueError(
                f"LLM at {llm_path} has vocab_size {llm_vocab} but the tokenizer has "
                f"{len(tokenizer)} tokens: the LLM must be pretrained with this tokenizer")
        vocab_size = llm_vocab
    model = InternVLForConditionalGeneration(vlm_config(preset, tokenizer, vocab_size))
    if llm_path is not None:
        load_llm_weights(model, llm_path)
    if vision_path is not None:
        load_vision_weights(model, vision_path)
    return model


def load_llm_weights(model: InternVLForConditionalGeneration, path: str | Path) -> None:
    llm = Qwen2ForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    expected = model.config.text_config.vocab_size
    if llm.config.vocab_size != expected:
        raise ValueError(f"LLM at {path} has vocab_size {llm.config.vocab_size}, the VLM "
                         f"{expected}")
    missing, unexpected = model.model.language_model.load_state_dict(
        llm.model.state_dict(), strict=False
    )
    if missing or unexpected:
        raise ValueError(f"LLM at {path} does not fit the preset: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    model.lm_head.load_state_dict(llm.lm_head.state_dict())
    log.info("loaded pretrained LLM from %s", path)


def load_vision_weights(model: InternVLForConditionalGeneration, path: str | Path) -> None:
    vision = InternVLVisionModel.from_pretrained(str(path), dtype=torch.float32)
    missing, unexpected = model.model.vision_tower.load_state_dict(
        vision.state_dict(), strict=False
    )
    if missing or unexpected:
        raise ValueError(f"vision tower at {path} does not fit the preset: missing "
                         f"{missing[:5]}, unexpected {unexpected[:5]}")
    log.info("loaded pretrained vision tower from %s", path)


def count_parameters(preset: Preset, vocab_size: int) -> int:
    """Parameter count of the preset without allocating its weights."""
    class _Vocab:
        pad_token_id = 0

        def __len__(self) -> int:
            return vocab_size

        def convert_tokens_to_ids(self, token: str) -> int:
            return 1

    with torch.device("meta"):
        model = InternVLForConditionalGeneration(vlm_config(preset, _Vocab()))  # type: ignore[arg-type]
    return sum(p.numel() for p in model.parameters())
