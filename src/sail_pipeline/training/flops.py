"""Training FLOPs of a VLM step and model FLOPs utilisation (MFU), from the model config alone.

Why: throughput in tokens/s is not comparable across presets, sequence lengths or GPUs; MFU is.
Everything here is arithmetic on `transformers` configs (InternVL or LLaVA layout: the code only
reads `config.text_config` and `config.vision_config`), so it runs without allocating a model,
without a GPU and without Kedro.

Conventions (those of the PaLM paper, appendix B, which MFU reports usually follow):

* A matmul with a ``d_in x d_out`` weight costs ``2·d_in·d_out`` FLOPs per token forward and
  twice that backward (gradients w.r.t. the input and w.r.t. the weight): 6x params in all.
* Attention scores (QKᵀ) and the weighted sum (AV) cost ``4·S·A`` FLOPs per token and layer
  forward, ``12·S·A`` forward + backward, where ``S`` is the sequence length and
  ``A = heads · head_dim``. This is the *non-causal* count (``12·L·H·Q·T`` in PaLM): a causal
  kernel does about half of that work, but MFU is reported against the full count.
* Embedding lookups, norms, activations, softmax, rotary embeddings and biases are left out.
"""

from __future__ import annotations

import re
from typing import Any

# Dense (no 2:4 sparsity) bf16 tensor-core peak TFLOP/s per GPU, keyed by a fragment of the
# name `torch.cuda.get_device_name()` returns. Only bf16-capable parts are listed (no V100/T4).
PEAK_TFLOPS: dict[str, float] = {
    "H100 PCIe": 756.0,
    "H100 NVL": 835.0,
    "H100 SXM": 989.0,
    "H100": 989.0,  # "NVIDIA H100 80GB HBM3" is the SXM part
    "H800": 989.0,
    "H200": 989.0,
    "GH200": 989.0,
    "H20": 148.0,
    "B200": 2250.0,
    "B100": 1750.0,
    "A100": 312.0,
    "A800": 312.0,
    "A30": 165.0,
    "A40": 150.0,
    "A10": 125.0,
    "L40S": 362.0,
    "L40": 181.0,
    "L4": 121.0,
    "RTX 6000 Ada": 364.0,
    "RTX A6000": 155.0,
    "RTX 4090": 165.0,
    "RTX 3090": 71.0,
    "MI300X": 1307.0,
    "MI250X": 383.0,
}

# Whole-token matching: "A10" must not claim "A100" nor "A10G", "H200" must not claim "GH200".
_FRAGMENT_PATTERNS = [
    (re.compile(rf"(?<![a-z0-9]){re.escape(fragment.lower())}(?![a-z0-9])"), peak)
    for fragment, peak in sorted(PEAK_TFLOPS.items(), key=lambda item: -len(item[0]))
]

MODULE_ORDER = ("vision", "projector", "llm")  # data flows vision -> projector -> llm


def peak_tflops(device_name: str | None, override: float | None = None) -> float | None:
    """Dense bf16 peak TFLOP/s of one GPU; `override` wins; None when unknown (e.g. CPU)."""
    if override is not None:
        if override <= 0:
            raise ValueError(f"peak TFLOP/s override must be positive, got {override}")
        return float(override)
    if not device_name:
        return None
    name = device_name.lower()
    for pattern, peak in _FRAGMENT_PATTERNS:  # longest fragment first: "H100 PCIe" before "H100"
        if pattern.search(name):
            return peak
    return None


def mfu(achieved_flops_per_s: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation: achieved FLOP/s per GPU over the peak (in TFLOP/s, as above)."""
    if peak is None or peak <= 0:
        return None
    return achieved_flops_per_s / (peak * 1e12)


# ---------------------------------------------------------------------------------------------
# shapes read from configs


def _get(config: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return default


def _side(value: Any) -> tuple[int, int]:
    if isinstance(value, (list, tuple)):
        return int(value[0]), int(value[-1])
    return int(value), int(value)


def _text_config(model_config: Any) -> Any:
    return getattr(model_config, "text_config", None) or model_config


# Decoders whose MLP is one up-projection + activation + down-projection; everything else the
# project meets (Qwen2, Llama, Mistral, …) uses a gated (SwiGLU) MLP of three matrices.
_UNGATED_DECODERS = {"gpt2", "gpt_neox", "gptj", "opt", "bloom", "falcon", "phi", "starcoder2"}


def lm_shapes(text_config: Any) -> dict[str, int | bool]:
    hidden = int(text_config.hidden_size)
    heads = int(text_config.num_attention_heads)
    head_dim = int(_get(text_config, "head_dim", default=hidden // heads))
    kv_heads = int(_get(text_config, "num_key_value_heads", default=heads))
    return {
        "hidden": hidden,
        "layers": int(text_config.num_hidden_layers),
        "heads": heads,
        "q_dim": heads * head_dim,
        "kv_dim": kv_heads * head_dim,
        "intermediate": int(_get(text_config, "intermediate_size", "ffn_dim", default=4 * hidden)),
        "gated": getattr(text_config, "model_type", "") not in _UNGATED_DECODERS,
        "vocab": int(text_config.vocab_size),
    }


def _lm_layer_matmul_params(shapes: dict[str, Any]) -> int:
    h, q, kv, inter = shapes["hidden"], shapes["q_dim"], shapes["kv_dim"], shapes["intermediate"]
    attention = h * q + 2 * h * kv + q * h  # q, k, v (GQA: k and v are narrower), o
    mlp = (3 if shapes["gated"] else 2) * h * inter  # SwiGLU: gate, up, down
    return attention + mlp


def lm_matmul_params(text_config: Any) -> int:
    """Non-embedding matmul parameters of the decoder, lm_head included (biases left out)."""
    shapes = lm_shapes(text_config)
    lm_head = shapes["hidden"] * shapes["vocab"]
    return shapes["layers"] * _lm_layer_matmul_params(shapes) + lm_head


def _lm_forward_parts(text_config: Any, seq_len: int) -> tuple[float, float]:
    """Forward FLOPs per token: (weight matmuls, attention QKᵀ + AV)."""
    shapes = lm_shapes(text_config)
    weights = 2.0 * lm_matmul_params(text_config)
    attention = 4.0 * shapes["layers"] * seq_len * shapes["q_dim"]
    return weights, attention


def lm_flops_per_token(text_config: Any, seq_len: int) -> float:
    """Training (fwd + bwd) FLOPs per token of a decoder LLM: 6·N + 12·L·S·A (PaLM, non-causal).

    N counts the non-embedding matmul parameters including lm_head, exactly from the config:
    grouped-query attention shrinks k/v to `num_key_value_heads · head_dim` columns, and a
    SwiGLU MLP has three `hidden x intermediate` matrices. A = heads · head_dim (= hidden for
    Qwen2); GQA does not shrink the attention term since every query head attends.
    """
    weights, attention = _lm_forward_parts(text_config, seq_len)
    return 3.0 * (weights + attention)


# Vision towers that prepend a class token to the patch tokens (SigLIP does not).
_NO_CLS_VISION = {"siglip_vision_model", "siglip2_vision_model"}


def vision_shapes(vision_config: Any) -> dict[str, int]:
    image_h, image_w = _side(vision_config.image_size)
    patch_h, patch_w = _side(vision_config.patch_size)
    patches = (image_h // patch_h) * (image_w // patch_w)
    cls = 0 if getattr(vision_config, "model_type", "") in _NO_CLS_VISION else 1
    hidden = int(vision_config.hidden_size)
    return {
        "hidden": hidden,
        "layers": int(vision_config.num_hidden_layers),
        "heads": int(vision_config.num_attention_heads),
        "intermediate": int(_get(vision_config, "intermediate_size", default=4 * hidden)),
        "patches": patches,
        "tokens": patches + cls,
        "patch_params": int(_get(vision_config, "num_channels", default=3)) * patch_h * patch_w
        * hidden,
    }


def vision_tokens_per_tile(vision_config: Any) -> int:
    """Tokens the ViT runs per tile: the patches plus the class token where it has one."""
    return vision_shapes(vision_config)["tokens"]


def _vision_forward_per_tile(vision_config: Any) -> tuple[float, float]:
    """Forward FLOPs per tile: (weight matmuls incl. patch embedding, attention)."""
    s = vision_shapes(vision_config)
    h, tokens = s["hidden"], s["tokens"]
    layer_params = 4 * h * h + 2 * h * s["intermediate"]  # q, k, v, out + fc1, fc2 (GELU MLP)
    weights = 2.0 * (tokens * s["layers"] * layer_params + s["patches"] * s["patch_params"])
    attention = 4.0 * s["layers"] * tokens * tokens * h
    return weights, attention


def vision_flops_per_image(vision_config: Any, n_tiles: int) -> float:
    """Training FLOPs of the ViT for one image of `n_tiles` tiles (thumbnail counted as a tile).

    Per tile: 6 x matmul params per token over patches + class token, the patch embedding
    (a conv = a matmul per patch), and the 12·L·T·h attention term at sequence length T.
    """
    weights, attention = _vision_forward_per_tile(vision_config)
    return 3.0 * (weights + attention) * n_tiles


def projector_shapes(model_config: Any) -> tuple[int, int, int]:
    """(input width, LLM width, tokens per tile) of the vision -> LLM projector."""
    vision = vision_shapes(model_config.vision_config)
    text_hidden = int(_text_config(model_config).hidden_size)
    ratio = getattr(model_config, "downsample_ratio", None)
    if ratio is not None:  # InternVL: pixel shuffle folds (1/r)² patches into one token
        fold = round(1.0 / (float(ratio) ** 2))
        return vision["hidden"] * fold, text_hidden, vision["patches"] // fold
    # LLaVA: one token per patch (class token too with strategy "full"), features of one or
    # several ViT layers concatenated.
    layers = getattr(model_config, "vision_feature_layer", -1)
    n_layers = len(layers) if isinstance(layers, (list, tuple)) else 1
    full = getattr(model_config, "vision_feature_select_strategy", "default") == "full"
    tokens = vision["tokens"] if full else vision["patches"]
    return vision["hidden"] * n_layers, text_hidden, tokens


def projector_tokens_per_tile(model_config: Any) -> int:
    """Image tokens one tile becomes in the LLM's sequence."""
    return projector_shapes(model_config)[2]


def _projector_forward_per_tile(model_config: Any) -> float:
    d_in, d_out, tokens = projector_shapes(model_config)
    return 2.0 * tokens * (d_in * d_out + d_out * d_out)  # linear_1, linear_2


def projector_flops_per_image(model_config: Any, n_tiles: int) -> float:
    """Training FLOPs of the MLP projector (Linear -> GELU -> Linear) for an image's tiles."""
    return 3.0 * _projector_forward_per_tile(model_config) * n_tiles


def _cost(forward_weights: float, forward_attention: float, trains: bool,
          grad_flows: bool) -> float:
    """Forward + backward of one module under the frozen-module approximation (see below)."""
    if trains:
        return 3.0 * (forward_weights + forward_attention)
    if grad_flows:  # activation gradients only: weights 2x fwd; attention's bwd is all input-grad
        return 2.0 * forward_weights + 3.0 * forward_attention
    return forward_weights + forward_attention  # forward only


def training_flops(model_config: Any, text_tokens: int, seq_len: int, images_tiles: int,
                   trainable: set[str] | None = None) -> float:
    """Total FLOPs of one optimizer step's worth of work (all micro batches, all GPUs).

    `text_tokens`: sequence positions the LLM processes (image placeholder tokens included,
    the LLM runs over them); `seq_len`: length of each (packed) sequence, for the attention
    term; `images_tiles`: tiles through the ViT (thumbnails included); `trainable`: module
    groups that train, of "vision", "projector", "llm" (None: all).

    Approximation for frozen modules: a trained module costs 3x its forward (fwd + grads
    w.r.t. inputs and weights). A frozen module costs 1x forward when nothing upstream of it
    trains (no gradient has to pass through it), else its weight matmuls cost 2x forward
    (fwd + input gradients, no weight gradients) — i.e. 2·P vs 4·P FLOPs per token — while its
    attention costs the full 3x, whose backward is input gradients only. We ignore that the
    first matmul of a trained module with nothing trainable upstream skips its input gradient.
    """
    groups = set(MODULE_ORDER) if trainable is None else set(trainable)
    unknown = groups - set(MODULE_ORDER)
    if unknown:
        raise ValueError(f"unknown module groups {sorted(unknown)}; known: {MODULE_ORDER}")
    text_config = _text_config(model_config)
    lm_w, lm_a = _lm_forward_parts(text_config, seq_len)
    parts: dict[str, tuple[float, float]] = {"llm": (lm_w * text_tokens, lm_a * text_tokens)}
    if images_tiles:
        vis_w, vis_a = _vision_forward_per_tile(model_config.vision_config)
        parts["vision"] = (vis_w * images_tiles, vis_a * images_tiles)
        parts["projector"] = (_projector_forward_per_tile(model_config) * images_tiles, 0.0)
    total = 0.0
    upstream_trains = False
    for group in MODULE_ORDER:
        if group in parts:
            weights, attention = parts[group]
            total += _cost(weights, attention, group in groups, upstream_trains)
            upstream_trains = upstream_trains or group in groups
    return total
