"""Model presets: a name maps to the shapes of a VLM of one of two architecture families.

`internvl` (InternViT + pixel-shuffle MLP + LLM, `InternVLForConditionalGeneration`):
`tiny` trains usefully on two CPU cores; `sail-vl-2b` has the shapes of SAIL-VL-2B
(InternViT-300M-448px + Qwen2.5-1.5B).

`llava` (CLIP ViT + 2-layer MLP + LLM, `LlavaForConditionalGeneration`), the architecture of
the "Rethinking" paper's experiments: `llava-tiny` is `tiny`'s LLM behind a small CLIP ViT;
`llava-1.5-7b` has the shapes of LLaVA-1.5-7B (CLIP ViT-L/14-336 + Vicuna-7B).

Every preset starts from random weights or from local directories holding a pretrained LLM
(`Qwen2ForCausalLM` / `LlamaForCausalLM` format) and a pretrained vision tower
(`InternVLVisionModel` / `CLIPVisionModel` format) — the embedded default makes small ones of
those with `build_text_lm` and `build_vision_tower`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    CLIPVisionConfig,
    CLIPVisionModel,
    InternVLConfig,
    InternVLForConditionalGeneration,
    InternVLVisionConfig,
    InternVLVisionModel,
    LlamaConfig,
    LlamaForCausalLM,
    LlavaConfig,
    LlavaForConditionalGeneration,
    PreTrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from sail_pipeline.modeling.preset_specs import CLIP_MEAN, CLIP_STD, PRESETS, Preset, get_preset
from sail_pipeline.modeling.tokenizer import IM_END, IMG_CONTEXT

log = logging.getLogger(__name__)

__all__ = ["CLIP_MEAN", "CLIP_STD", "PRESETS", "Preset", "build_vlm", "get_preset", "load_vlm"]

# Per family: the VLM class, its config class, the vision tower class and its config class.
VLM_CLASSES: dict[str, type[PreTrainedModel]] = {
    "internvl": InternVLForConditionalGeneration,
    "llava": LlavaForConditionalGeneration,
}
VISION_CLASSES: dict[str, tuple[type[PreTrainedConfig], type[PreTrainedModel]]] = {
    "internvl": (InternVLVisionConfig, InternVLVisionModel),
    "llava": (CLIPVisionConfig, CLIPVisionModel),
}
# The model_types a pretrained vision tower directory may have: a whole CLIP checkpoint (e.g.
# openai/clip-vit-large-patch14-336) loads into CLIPVisionModel too, dropping the text half.
VISION_MODEL_TYPES: dict[str, tuple[str, ...]] = {
    "internvl": ("internvl_vision",),
    "llava": ("clip_vision_model", "clip"),
}
# Per text model type: the config class and the causal LM a pretrained LLM is saved as.
TEXT_CLASSES: dict[str, tuple[type[PreTrainedConfig], type[PreTrainedModel]]] = {
    "qwen2": (Qwen2Config, Qwen2ForCausalLM),
    "llama": (LlamaConfig, LlamaForCausalLM),
}


def text_config(preset: Preset, tokenizer: PreTrainedTokenizerFast,
                vocab_size: int | None = None) -> Qwen2Config | LlamaConfig:
    """The LLM's config, of the preset's text model type (Qwen2 or Llama).

    `vocab_size` defaults to the tokenizer's; a pretrained LLM may have padded rows beyond.
    """
    config_class, _ = TEXT_CLASSES[preset.text_model_type]
    return config_class(
        vocab_size=vocab_size or len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.convert_tokens_to_ids(IM_END),
        **preset.text,
    )


def vision_config(preset: Preset) -> InternVLVisionConfig | CLIPVisionConfig:
    """The vision tower's config: InternViT for `internvl`, CLIP's ViT for `llava`."""
    config_class, _ = VISION_CLASSES[preset.family]
    return config_class(**preset.vision)


def vlm_config(preset: Preset, tokenizer: PreTrainedTokenizerFast,
               vocab_size: int | None = None) -> InternVLConfig | LlavaConfig:
    """The whole VLM's config; the image token is our IMG_CONTEXT token in both families."""
    text = text_config(preset, tokenizer, vocab_size)
    if preset.family == "llava":
        # Our processor wraps the image tokens in <img>…</img> text tokens; LLaVA only looks
        # at the IMG_CONTEXT positions, so that wrapping is harmless.
        return LlavaConfig(
            vision_config=vision_config(preset).to_dict(),
            text_config=text.to_dict(),
            image_token_id=tokenizer.convert_tokens_to_ids(IMG_CONTEXT),
            image_seq_length=preset.tokens_per_tile,
            projector_hidden_act="gelu",
            vision_feature_layer=preset.vision_feature_layer,
            vision_feature_select_strategy=preset.vision_feature_select_strategy,
            tie_word_embeddings=bool(preset.text.get("tie_word_embeddings", False)),
        )
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
) -> PreTrainedModel:
    """A VLM of the preset's family and shapes; backbones loaded from local directories.

    Returns an `InternVLForConditionalGeneration` or a `LlavaForConditionalGeneration`; both
    lay out `model.vision_tower`, `model.multi_modal_projector`, `model.language_model` and
    `lm_head`, which is all that freezing and loading rely on.
    """
    torch.manual_seed(seed)
    vocab_size = None
    if llm_path is not None:
        _check_model_type(llm_path, preset.text_model_type, "LLM")
        config_class, _ = TEXT_CLASSES[preset.text_model_type]
        llm_vocab = config_class.from_pretrained(str(llm_path)).vocab_size
        if llm_vocab < len(tokenizer):
            raise ValueError(
                f"LLM at {llm_path} has vocab_size {llm_vocab} but the tokenizer has "
                f"{len(tokenizer)} tokens: the LLM must be pretrained with this tokenizer")
        vocab_size = llm_vocab
    model = VLM_CLASSES[preset.family](vlm_config(preset, tokenizer, vocab_size))
    if llm_path is not None:
        load_llm_weights(model, llm_path)
    if vision_path is not None:
        load_vision_weights(model, vision_path)
    return model


def _read_config(path: str | Path, what: str) -> dict[str, Any]:
    config_file = Path(path) / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{what} at {path}: no config.json in that directory")
    return json.loads(config_file.read_text())


def _check_model_type(path: str | Path, expected: str | tuple[str, ...], what: str) -> None:
    """Fail naming both types: a Llama LLM silently read as Qwen2 would load as garbage."""
    expected = (expected,) if isinstance(expected, str) else expected
    found = _read_config(path, what).get("model_type")
    if found not in expected:
        wanted = " or ".join(repr(e) for e in expected)
        raise ValueError(f"{what} at {path} has model_type {found!r}, the model expects "
                         f"{wanted}")


def load_llm_weights(model: PreTrainedModel, path: str | Path) -> None:
    """Copy a pretrained causal LM (of the VLM's text model type) into the VLM's LLM + head."""
    text_type = model.config.text_config.model_type
    if text_type not in TEXT_CLASSES:
        raise ValueError(f"VLM's text model type {text_type!r} is not supported; known: "
                         f"{sorted(TEXT_CLASSES)}")
    _check_model_type(path, text_type, "LLM")
    llm = TEXT_CLASSES[text_type][1].from_pretrained(str(path), dtype=torch.float32)
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


def load_vision_weights(model: PreTrainedModel, path: str | Path) -> None:
    """Copy a pretrained vision tower (InternVLVisionModel / CLIPVisionModel) into the VLM."""
    family = model.config.model_type
    if family not in VISION_CLASSES:
        raise ValueError(f"VLM model_type {family!r} is not supported; known: "
                         f"{sorted(VISION_CLASSES)}")
    _check_model_type(path, VISION_MODEL_TYPES[family], "vision tower")
    vision = VISION_CLASSES[family][1].from_pretrained(str(path), dtype=torch.float32)
    missing, unexpected = model.model.vision_tower.load_state_dict(
        vision.state_dict(), strict=False
    )
    if missing or unexpected:
        raise ValueError(f"vision tower at {path} does not fit the preset: missing "
                         f"{missing[:5]}, unexpected {unexpected[:5]}")
    log.info("loaded pretrained vision tower from %s", path)


def build_vision_tower(preset: Preset) -> tuple[nn.Module, int]:
    """A fresh vision tower of the preset's family and its hidden size.

    For the stand-in vision pretraining: both InternViT and CLIP's ViT put a CLS token at
    index 0 of `last_hidden_state`, and `save_pretrained` writes what `load_vision_weights`
    reads.
    """
    config = vision_config(preset)
    return VISION_CLASSES[preset.family][1](config), int(config.hidden_size)


def build_text_lm(preset: Preset, tokenizer: PreTrainedTokenizerFast) -> PreTrainedModel:
    """A fresh causal LM of the preset's text shapes (the stand-in LLM to pretrain)."""
    return TEXT_CLASSES[preset.text_model_type][1](text_config(preset, tokenizer))


def load_vlm(path: str | Path, dtype: torch.dtype = torch.float32) -> PreTrainedModel:
    """Load a saved VLM checkpoint of either family, chosen by its config.json's model_type.

    Callers (trainer, inference) then need not know which architecture a stage produced.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint directory {path} does not exist")
    model_type = _read_config(path, "checkpoint").get("model_type")
    if model_type not in VLM_CLASSES:
        raise ValueError(f"checkpoint at {path} has model_type {model_type!r}, not a supported "
                         f"VLM; known: {sorted(VLM_CLASSES)}")
    return VLM_CLASSES[model_type].from_pretrained(str(path), dtype=dtype)


class VocabStub:
    """What `vlm_config` reads from a tokenizer, for a vocabulary of `size` tokens.

    Sizing a preset (parameter counts, FLOPs, memory, GPU benchmarks) needs a real-size
    vocabulary (Qwen2.5's 151,936) but no tokenizer: the special tokens sit at the end.
    """

    pad_token_id = 0

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def convert_tokens_to_ids(self, token: str) -> int:
        return {IMG_CONTEXT: self.size - 1, IM_END: self.size - 2}.get(token, self.size - 3)


def count_parameters(preset: Preset, vocab_size: int) -> int:
    """Parameter count of the preset without allocating its weights."""
    with torch.device("meta"):
        config = vlm_config(preset, VocabStub(vocab_size))  # type: ignore[arg-type]
        model = VLM_CLASSES[preset.family](config)
    return sum(p.numel() for p in model.parameters())
