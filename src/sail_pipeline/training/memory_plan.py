"""What fits where: per-GPU memory of a preset under DeepSpeed ZeRO, for the README table.

Why: picking ZeRO stage, offload, micro batch, sequence length and gradient checkpointing by
trial and error costs GPU hours; this estimates them from the preset's config in a second,
without a GPU. The numbers are estimates (no allocator fragmentation, communication buckets,
CUDA context or kernel workspaces — that is what the headroom is for), not measurements.

Model states (mixed precision bf16 + fp32 Adam, the ZeRO paper's accounting, bytes per param):
2 for bf16 weights, 2 for bf16 gradients, 12 for the optimizer (fp32 master weights, Adam
momentum and variance), plus 4 for the fp32 gradient partition DeepSpeed's optimizer steps on
(its own estimators count it: their "18" = 2 + 4 + 4 + 8). ZeRO-1 partitions the optimizer
states over the GPUs, ZeRO-2 also the gradients, ZeRO-3 also the weights (and reduces straight
into the fp32 partition, no bf16 gradient partition; plus a gathered-layer buffer of 4 bytes
per parameter of the largest layer). CPU offload moves the optimizer states and fp32 gradients
— for ZeRO-3 the weights too — to host memory. Frozen parameters only cost their bf16 weights.

Activations: Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer
Models": s·b·h·(34 + 5·a·s/h) bytes per layer in 16-bit, generalised to the config (GQA k/v
width, SwiGLU MLP of `intermediate` width, dropout masks only where the config has dropout);
flash-attention drops the a·s² score term; full gradient checkpointing keeps 2·s·b·h per layer
(the layer inputs) plus one layer's full activations for the recompute. The LLM's logits add
s·b·vocab·4 bytes (the fp32 upcast for the loss).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sail_pipeline.training.flops import (
    MODULE_ORDER,
    lm_shapes,
    projector_shapes,
    vision_shapes,
)

GIB = 2**30
HEADROOM_FRACTION = 0.10  # of GPU memory kept free for fragmentation, CUDA context, buffers
LOGITS_BYTES = 4  # per logit: the fp32 upcast of the logits for the loss

# Model-state bytes per parameter (see the module docstring).
WEIGHT_16 = 2
GRAD_16 = 2
GRAD_32 = 4
OPTIMIZER = 12  # fp32 master weights + Adam momentum + Adam variance
GATHER_BUFFER = 4  # ZeRO-3: bytes per parameter of the largest layer (DeepSpeed's estimator)

# (ZeRO stage, CPU offload) rows of the printed grid; offload is meaningless without ZeRO.
GRID_ZERO = ((0, False), (1, False), (2, False), (2, True), (3, False), (3, True))


# ---------------------------------------------------------------------------------------------
# model states


def model_state_bytes(params: int, gpus: int = 1, zero_stage: int = 2, offload: bool = False,
                      largest_layer_params: int = 0,
                      trainable_params: int | None = None) -> dict[str, float]:
    """Model-state bytes per GPU (`gpu`) and offloaded to host per GPU rank (`cpu`)."""
    if zero_stage not in (0, 1, 2, 3):
        raise ValueError(f"ZeRO stage must be 0-3, got {zero_stage}")
    if offload and zero_stage == 0:
        raise ValueError("CPU offload needs ZeRO stage 1-3")
    if gpus < 1:
        raise ValueError(f"gpus must be >= 1, got {gpus}")
    total = float(params)
    train = total if trainable_params is None else float(trainable_params)
    n = float(gpus)
    optimizer = (GRAD_32 + OPTIMIZER) * train  # what ZeRO-1 partitions and offload moves
    cpu = 0.0
    if zero_stage == 0:
        gpu = WEIGHT_16 * total + GRAD_16 * train + optimizer
    elif zero_stage == 1:
        gpu = WEIGHT_16 * total + GRAD_16 * train
        if offload:
            cpu = optimizer / n
        else:
            gpu += optimizer / n
    elif zero_stage == 2:
        gpu = WEIGHT_16 * total
        if offload:  # reduced gradients go straight to the host's fp32 partition
            cpu = optimizer / n
        else:
            gpu += (GRAD_16 * train + optimizer) / n
    else:
        gpu = GATHER_BUFFER * float(largest_layer_params)
        if offload:
            cpu = (WEIGHT_16 * total + optimizer) / n
        else:
            gpu += (WEIGHT_16 * total + optimizer) / n
    return {"gpu": gpu, "cpu": cpu}


# ---------------------------------------------------------------------------------------------
# activations


def layer_activation_bytes(seq: int, batch: int, hidden: int, heads: int, q_dim: int,
                           kv_dim: int, intermediate: int, gated: bool, dropout: bool = False,
                           flash: bool = True) -> float:
    """16-bit activations one transformer layer keeps for backward (Korthikanti et al. 2022).

    For a GPT layer (q = k = v = h, GELU MLP of 4h, dropout) this is exactly
    s·b·h·(34 + 5·a·s/h): attention 11·sbh, MLP 19·sbh, two norms 4·sbh, scores 5·a·s²·b.
    """
    attention = 2 * hidden + 2 * q_dim + 4 * kv_dim + 2 * q_dim  # input, Q, K, V, o_proj input
    # input + (gate, up, act(gate), product) for SwiGLU, or (fc1 out, act out) for GELU
    mlp = 2 * hidden + (8 if gated else 4) * intermediate
    norms = 4 * hidden
    masks = 2 * hidden if dropout else 0  # 1-byte dropout masks after attention and MLP
    scores = 0 if flash else (5 if dropout else 2) * heads * seq * seq * batch
    return float(seq * batch * (attention + mlp + norms + masks) + scores)


def stack_activation_bytes(layers: int, seq: int, batch: int, hidden: int,
                           grad_ckpt: bool, **layer: Any) -> float:
    """A stack of identical layers; with full checkpointing only layer inputs + one layer."""
    one = layer_activation_bytes(seq, batch, hidden, **layer)
    if grad_ckpt:
        return layers * 2.0 * seq * batch * hidden + one
    return layers * one


def _has_dropout(config: Any) -> bool:
    names = ("attention_dropout", "hidden_dropout", "hidden_dropout_prob", "resid_pdrop",
             "attn_pdrop", "attention_probs_dropout_prob", "dropout")
    return any(float(getattr(config, name, 0.0) or 0.0) > 0 for name in names)


def _stores_activations(trainable: set[str]) -> dict[str, bool]:
    """A module keeps activations for backward when it trains or something upstream does."""
    stores, upstream = {}, False
    for group in MODULE_ORDER:
        stores[group] = group in trainable or upstream
        upstream = upstream or group in trainable
    return stores


def activation_bytes(model_config: Any, micro_batch: int, seq_len: int, tiles: int,
                     grad_ckpt: bool = True, flash: bool = True,
                     trainable: set[str] | None = None) -> dict[str, float]:
    """Activation bytes per GPU by part: llm, logits, vision, projector (ZeRO does not shard)."""
    groups = set(MODULE_ORDER) if trainable is None else set(trainable)
    stores = _stores_activations(groups)
    text_config = getattr(model_config, "text_config", None) or model_config
    lm = lm_shapes(text_config)
    out = {"llm": 0.0, "logits": 0.0, "vision": 0.0, "projector": 0.0}
    if stores["llm"]:
        out["llm"] = stack_activation_bytes(
            lm["layers"], seq_len, micro_batch, lm["hidden"], grad_ckpt,
            heads=lm["heads"], q_dim=lm["q_dim"], kv_dim=lm["kv_dim"],
            intermediate=lm["intermediate"], gated=lm["gated"],
            dropout=_has_dropout(text_config), flash=flash,
        ) + 4.0 * seq_len * micro_batch * lm["hidden"]  # final norm input + lm_head input
        out["logits"] = float(LOGITS_BYTES * seq_len * micro_batch * lm["vocab"])
    vision_config = getattr(model_config, "vision_config", None)
    if tiles and vision_config is not None:
        vis = vision_shapes(vision_config)
        images = micro_batch * tiles
        if stores["vision"]:
            out["vision"] = stack_activation_bytes(
                vis["layers"], vis["tokens"], images, vis["hidden"], grad_ckpt,
                heads=vis["heads"], q_dim=vis["hidden"], kv_dim=vis["hidden"],
                intermediate=vis["intermediate"], gated=False,
                dropout=_has_dropout(vision_config), flash=flash,
            )
        if stores["projector"]:
            d_in, d_out, tokens = projector_shapes(model_config)
            # norm input, linear_1 input, GELU input, linear_2 input
            out["projector"] = float(images * tokens * (4 * d_in + 4 * d_out))
    return out


# ---------------------------------------------------------------------------------------------
# the preset's shapes


class _StandInTokenizer:
    """Just enough of a tokenizer for `vlm_config`: a vocabulary size and some token ids."""

    pad_token_id = 0
    eos_token_id = 1
    bos_token_id = None
    unk_token_id = None

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = vocab_size

    def __len__(self) -> int:
        return self.vocab_size

    def convert_tokens_to_ids(self, tokens: Any) -> Any:
        return [1] * len(tokens) if isinstance(tokens, (list, tuple)) else 1


@dataclass(frozen=True)
class ModelShapes:
    config: Any  # InternVLConfig or LlavaConfig
    params_by_group: dict[str, int]  # vision, projector, llm (embeddings + lm_head), other
    largest_layer_params: int  # as DeepSpeed's `model_to_params` counts it

    @property
    def params(self) -> int:
        return sum(self.params_by_group.values())

    def trainable_params(self, trainable: set[str] | None) -> int:
        if trainable is None:
            return self.params
        return sum(n for group, n in self.params_by_group.items() if group in trainable)


@lru_cache(maxsize=16)
def model_shapes(preset_name: str, vocab_size: int | None = None) -> ModelShapes:
    """Parameter counts of the preset, from a weightless (meta-device) instance of its model.

    `vocab_size`: None takes the preset's own (its real model's embedding rows)."""
    import torch
    from transformers import AutoModelForImageTextToText

    from sail_pipeline.modeling.freezing import module_group
    from sail_pipeline.modeling.presets import get_preset, vlm_config

    preset = get_preset(preset_name)
    config = vlm_config(preset, _StandInTokenizer(vocab_size or preset.vocab_size))  # type: ignore[arg-type]
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    groups: dict[str, int] = {}
    for name, param in model.named_parameters():  # a tied lm_head is listed once
        group = module_group(name)
        groups[group] = groups.get(group, 0) + param.numel()
    largest = max(sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules())
    return ModelShapes(config, groups, largest)


def default_tiles(preset_name: str, seq_len: int) -> int:
    """One full-resolution image per sequence: `max_tiles` (+ thumbnail) that fit seq_len."""
    from sail_pipeline.modeling.presets import get_preset

    preset = get_preset(preset_name)
    tiles = preset.max_tiles + (1 if preset.max_tiles > 1 else 0)
    return max(0, min(tiles, seq_len // max(preset.tokens_per_tile, 1)))


# ---------------------------------------------------------------------------------------------
# the plan


def plan(preset_name: str, gpus: int = 1, gpu_gib: float = 80, zero_stage: int = 2,
         offload: bool = False, micro_batch: int = 1, seq_len: int = 4096,
         grad_ckpt: bool = True, flash: bool = True, tiles: int | None = None,
         trainable: set[str] | None = None, vocab_size: int | None = None) -> dict[str, Any]:
    """Per-GPU memory (GiB) of one setting and whether it fits in `gpu_gib` less the headroom.

    `tiles`: ViT tiles per sequence (default: one full image, see `default_tiles`);
    `trainable`: groups of "vision", "projector", "llm" that train (default: all, as in SFT).
    """
    shapes = model_shapes(preset_name, vocab_size)
    if tiles is None:
        tiles = default_tiles(preset_name, seq_len)
    trainable_params = shapes.trainable_params(trainable)
    states = model_state_bytes(shapes.params, gpus, zero_stage, offload,
                               shapes.largest_layer_params, trainable_params)
    acts = activation_bytes(shapes.config, micro_batch, seq_len, tiles, grad_ckpt, flash,
                            trainable)
    activations = sum(acts.values())
    total = states["gpu"] + activations
    usable = gpu_gib * (1.0 - HEADROOM_FRACTION)
    return {
        "preset": preset_name, "gpus": gpus, "gpu_gib": gpu_gib, "zero_stage": zero_stage,
        "offload": offload, "micro_batch": micro_batch, "seq_len": seq_len,
        "grad_ckpt": grad_ckpt, "flash": flash, "tiles": tiles,
        "params": shapes.params, "trainable_params": trainable_params,
        "model_states_gib": states["gpu"] / GIB,
        "cpu_offload_gib": states["cpu"] / GIB,
        "activations_llm_gib": acts["llm"] / GIB,
        "logits_gib": acts["logits"] / GIB,
        "activations_vision_gib": acts["vision"] / GIB,
        "activations_projector_gib": acts["projector"] / GIB,
        "activations_gib": activations / GIB,
        "total_gib": total / GIB,
        "usable_gib": usable,
        "fits": total / GIB <= usable,
    }


def max_micro_batch(preset_name: str, limit: int = 1024, **settings: Any) -> int:
    """The largest micro batch that fits (0 when even 1 does not); memory grows with it."""
    settings.pop("micro_batch", None)
    if not plan(preset_name, micro_batch=1, **settings)["fits"]:
        return 0
    low, high = 1, 2
    while high <= limit and plan(preset_name, micro_batch=high, **settings)["fits"]:
        low, high = high, high * 2
    high = min(high, limit + 1)
    while high - low > 1:  # low fits, high does not (or is past the limit)
        mid = (low + high) // 2
        if plan(preset_name, micro_batch=mid, **settings)["fits"]:
            low = mid
        else:
            high = mid
    return low


def recommend(preset_name: str, gpus: int = 1, gpu_gib: float = 80, seq_len: int = 4096,
              **settings: Any) -> dict[str, Any] | None:
    """The ZeRO stage that allows the largest micro batch (the lowest stage on a tie, so one
    GPU gets no partitioning it cannot use; CPU offload only when nothing else fits), with
    checkpointing only when it buys a larger batch. None when nothing fits."""
    for offload in (False, True):
        best: dict[str, Any] | None = None
        for stage in sorted({z for z, o in GRID_ZERO if o == offload}):
            common = dict(settings, gpus=gpus, gpu_gib=gpu_gib, seq_len=seq_len,
                          zero_stage=stage, offload=offload)
            without = max_micro_batch(preset_name, grad_ckpt=False, **common)
            with_ckpt = max_micro_batch(preset_name, grad_ckpt=True, **common)
            if max(without, with_ckpt) > (best["micro_batch"] if best else 0):
                best = plan(preset_name, micro_batch=max(without, with_ckpt),
                            grad_ckpt=with_ckpt > without, **common)
                best["max_micro_batch_without_ckpt"] = without
                best["max_micro_batch_with_ckpt"] = with_ckpt
        if best is not None:
            return best
    return None


def grid(preset_name: str, gpus: int = 1, gpu_gib: float = 80, micro_batch: int = 1,
         seq_lens: tuple[int, ...] = (4096, 8192), **settings: Any) -> list[dict[str, Any]]:
    """Plans over ZeRO 0-3 (+ offload for 2, 3) x sequence lengths x checkpointing off/on."""
    return [
        plan(preset_name, gpus=gpus, gpu_gib=gpu_gib, zero_stage=stage, offload=offload,
             micro_batch=micro_batch, seq_len=seq_len, grad_ckpt=ckpt, **settings)
        for stage, offload in GRID_ZERO for seq_len in seq_lens for ckpt in (False, True)
    ]


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The README table: one line per plan."""
    lines = [
        "| ZeRO | offload | seq len | micro batch | grad ckpt | model states GiB "
        "| activations GiB | total GiB | host GiB/GPU | fits |",
        "|---:|:---:|---:|---:|:---:|---:|---:|---:|---:|:---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['zero_stage']} | {'yes' if r['offload'] else 'no'} | {r['seq_len']} "
            f"| {r['micro_batch']} | {'on' if r['grad_ckpt'] else 'off'} "
            f"| {r['model_states_gib']:.1f} | {r['activations_gib']:.1f} "
            f"| {r['total_gib']:.1f} | {r['cpu_offload_gib']:.1f} "
            f"| {'yes' if r['fits'] else 'no'} |")
    return "\n".join(lines)


def describe_recommendation(best: dict[str, Any] | None, gpus: int, gpu_gib: float, seq_len: int) -> str:
    where = f"{gpus} x {gpu_gib:g} GiB GPU{'s' if gpus > 1 else ''}"
    if best is None:
        return f"Recommended for {where}: nothing fits at seq len {seq_len}, even micro batch 1."
    offload = " with CPU offload" if best["offload"] else ""
    ckpt = "on" if best["grad_ckpt"] else "off"
    text = (f"Recommended for {where} at seq len {seq_len}: ZeRO-{best['zero_stage']}{offload}, "
            f"gradient checkpointing {ckpt}, micro batch {best['micro_batch']} "
            f"({best['total_gib']:.1f} of {best['usable_gib']:.1f} usable GiB)")
    if best["grad_ckpt"]:
        without = best["max_micro_batch_without_ckpt"]
        text += (f"; without checkpointing the largest micro batch is {without}"
                 if without else "; without checkpointing not even micro batch 1 fits")
    return text + "."


def where_table(preset_name: str, setups: list[str], seq_len: int, **settings: Any) -> str:
    """One line per GPU setup ("8x80": 8 GPUs of 80 GiB): the recommended setting."""
    lines = [f"| GPUs | ZeRO | grad ckpt | max micro batch (rows of {seq_len}) | GiB per GPU "
             "| host GiB per GPU |", "|---|---|---|---:|---:|---:|"]
    for setup in setups:
        try:
            gpus, gib = setup.lower().split("x")
            gpus_n, gib_f = int(gpus), float(gib)
        except ValueError:
            raise ValueError(f"setup {setup!r} is not GPUSxGIB, e.g. 8x80") from None
        best = recommend(preset_name, gpus_n, gib_f, seq_len, **settings)
        if best is None:
            lines.append(f"| {gpus_n} × {gib_f:g} GiB | — | — | nothing fits | — | — |")
            continue
        zero = f"{best['zero_stage']}" + (" + CPU offload" if best["offload"] else "")
        lines.append(f"| {gpus_n} × {gib_f:g} GiB | {zero} | "
                     f"{'on' if best['grad_ckpt'] else 'off'} | {best['micro_batch']} | "
                     f"{best['total_gib']:.1f} | {best['cpu_offload_gib']:.1f} |")
    return "\n".join(lines)
