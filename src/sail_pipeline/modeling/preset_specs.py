"""The model presets' registry: a name -> the shapes of a VLM, as plain data.

No torch or transformers here, so parameter validation can check a preset's name when a run
starts without loading them; `sail_pipeline.modeling.presets` builds the models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from sail_pipeline.modeling.processor import ImageSettings

# CLIP's pixel statistics (LLaVA-1.5's image processor); InternVL uses ImageNet's.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

Family = Literal["internvl", "llava"]
TextModelType = Literal["qwen2", "llama"]
FAMILIES: tuple[Family, ...] = ("internvl", "llava")
TEXT_MODEL_TYPES: tuple[TextModelType, ...] = ("qwen2", "llama")


@dataclass(frozen=True)
class Preset:
    name: str
    vision: dict[str, Any]
    text: dict[str, Any]
    max_tiles: int
    # The vocabulary the real model has (its embedding rows, padding included), for planning
    # memory and FLOPs; a run takes its tokenizer's. tiny / llava-tiny: the world tokenizer's
    # default size (data.tokenizer.vocab_size).
    vocab_size: int
    downsample_ratio: float = 0.5  # internvl only: pixel shuffle
    description: str = ""
    gpu_only: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    family: Family = "internvl"
    text_model_type: TextModelType = "qwen2"
    # llava only: which ViT layer feeds the projector and whether its CLS token is dropped
    # ("default") or kept ("full"); LLaVA-1.5 uses the penultimate layer without CLS.
    vision_feature_layer: int = -2
    vision_feature_select_strategy: Literal["default", "full"] = "default"

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"preset {self.name!r}: unknown family {self.family!r}; "
                             f"known: {FAMILIES}")
        if self.text_model_type not in TEXT_MODEL_TYPES:
            raise ValueError(f"preset {self.name!r}: unknown text_model_type "
                             f"{self.text_model_type!r}; known: {TEXT_MODEL_TYPES}")
        if self.family == "llava" and self.max_tiles != 1:
            # LLaVA-1.5 sees one resized image; tiling is InternVL's (and LLaVA-NeXT's) idea.
            raise ValueError(f"preset {self.name!r}: a llava preset takes max_tiles=1")

    @property
    def tile_size(self) -> int:
        return int(self.vision["image_size"])

    @property
    def tokens_per_tile(self) -> int:
        side = self.tile_size // int(self.vision["patch_size"])
        if self.family == "llava":
            # One token per patch (no pixel shuffle), plus CLS when the strategy keeps it.
            return side**2 + (1 if self.vision_feature_select_strategy == "full" else 0)
        return int((side * self.downsample_ratio) ** 2)

    def image_settings(self) -> ImageSettings:
        from sail_pipeline.modeling.processor import ImageSettings

        stats = {"mean": CLIP_MEAN, "std": CLIP_STD} if self.family == "llava" else {}
        return ImageSettings(
            tile_size=self.tile_size,
            max_tiles=self.max_tiles,
            use_thumbnail=self.max_tiles > 1,
            tokens_per_tile=self.tokens_per_tile,
            **stats,
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
        vocab_size=1024,
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
        vocab_size=151936,  # Qwen2.5's embedding rows (151,665 tokens, padded)
        gpu_only=True,
    ),
    "llava-tiny": Preset(
        name="llava-tiny",
        description="LLaVA-style: 64 px, patch 8 -> 64 image tokens; 2-layer CLIP ViT + MLP + "
                    "tiny's 2-layer Qwen2",
        family="llava",
        text_model_type="qwen2",
        vision=dict(
            image_size=64, patch_size=8, hidden_size=64, num_hidden_layers=2,
            num_attention_heads=4, intermediate_size=256,
        ),
        # The same shapes as `tiny`, so the embedded default's pretrained stand-in LLM fits.
        text=dict(
            hidden_size=128, intermediate_size=384, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
            tie_word_embeddings=True,
        ),
        max_tiles=1,
        vocab_size=1024,
    ),
    "llava-1.5-7b": Preset(
        name="llava-1.5-7b",
        description="CLIP ViT-L/14-336 + MLP + Vicuna-7B shapes (LLaVA-1.5-7B)",
        family="llava",
        text_model_type="llama",
        vision=dict(
            image_size=336, patch_size=14, hidden_size=1024, num_hidden_layers=24,
            num_attention_heads=16, intermediate_size=4096, projection_dim=768,
        ),
        text=dict(
            hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
            num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            rms_norm_eps=1e-5, tie_word_embeddings=False,
        ),
        max_tiles=1,
        vocab_size=32000,  # Vicuna's (LLaMA) vocabulary
        gpu_only=True,
    ),
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown model preset {name!r}; known: {sorted(PRESETS)}") from None
