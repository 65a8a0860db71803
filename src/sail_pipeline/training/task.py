"""What one stage trains: its model, its training and evaluation data, and how its weights
are saved, for each kind of run (`vlm`, `lm`, `vision`)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from sail_pipeline.modeling.presets import (
    Preset,
    build_text_lm,
    build_vision_tower,
    build_vlm,
    get_preset,
    load_vlm,
)
from sail_pipeline.modeling.processor import VLProcessor
from sail_pipeline.modeling.tokenizer import load_tokenizer
from sail_pipeline.training.config import RunConfig
from sail_pipeline.training.data import AttributeData, ConversationData, TextData
from sail_pipeline.training.telemetry import PhaseClock


class VisionClassifier(nn.Module):
    """Vision tower + one linear head per attribute, on mean-pooled patch features."""

    def __init__(self, tower: nn.Module, hidden: int, num_classes: dict[str, int]) -> None:
        super().__init__()
        self.vision_tower = tower
        self.heads = nn.ModuleDict({n: nn.Linear(hidden, k) for n, k in num_classes.items()})

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None
                ) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        features = self.vision_tower(pixel_values=pixel_values).last_hidden_state[:, 1:].mean(1)
        logits = {name: head(features) for name, head in self.heads.items()}
        loss = None
        if labels is not None:
            loss = sum(nn.functional.cross_entropy(logits[n], labels[:, i])
                       for i, n in enumerate(self.heads))
        return loss, logits


class SupervisedLM(nn.Module):
    """A causal LM (or VLM) whose loss reads the final hidden states at supervised positions.

    The vocabulary projection is computed only where a target exists, never for image,
    prompt or padding tokens, and each token's cross-entropy is weighted by the batch's
    `loss_weights` (per token, per sample or square-root normalisation, as InternVL).
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def token_losses(self, input_ids: torch.Tensor, targets: torch.Tensor,
                     loss_weights: torch.Tensor, **inputs: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # With a cache, transformers ignores packed position ids and lets samples see each
        # other: training never needs one.
        hidden = self.net.model(input_ids=input_ids, use_cache=False, **inputs).last_hidden_state
        keep = loss_weights > 0
        logits = self.net.lm_head(hidden[keep]).float()
        losses = nn.functional.cross_entropy(logits, targets[keep], reduction="none")
        return losses, loss_weights[keep], hidden

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor,
                loss_weights: torch.Tensor, **inputs: torch.Tensor) -> torch.Tensor:
        losses, weights, hidden = self.token_losses(input_ids, targets, loss_weights, **inputs)
        if weights.numel() == 0:
            # Nothing to supervise: a zero that keeps the graph connected for backward.
            # (Added only here: a full-size zero gradient every step cost ~2% of a step.)
            return hidden.sum() * 0.0
        return (losses * weights).sum() / weights.sum()


# Saves the Hugging Face model to a directory, from the full state dict when ZeRO-3 sharded it.
Saver = Callable[[nn.Module, Path, dict | None], None]


@dataclass
class Task:
    """A stage's model, its data (evaluation data optional) and how its weights are saved."""

    model: nn.Module  # the Hugging Face model that is saved
    train: Any
    eval: Any | None
    pad_id: int
    save: Saver
    freeze_keys: list[str] | None

    @property
    def is_token_task(self) -> bool:
        return not isinstance(self.model, VisionClassifier)


def _read_table(path: str) -> pd.DataFrame:
    if not Path(path).exists():
        raise FileNotFoundError(f"training data {path} does not exist")
    return pd.read_parquet(path)


def choose_attention(requested: str) -> str:
    """flash-attention on a GPU when installed, SDPA otherwise (both honour packed rows)."""
    if requested != "auto":
        if requested == "flash_attention_2" and not torch.cuda.is_available():
            raise ValueError("attn_implementation flash_attention_2 needs a CUDA GPU")
        return requested
    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def choose_precision(requested: str) -> torch.dtype:
    """bf16 on a GPU (asked for, or `auto`), fp32 otherwise; bf16 asked for on a CPU fails."""
    if requested == "bf16" and not torch.cuda.is_available():
        raise ValueError("precision bf16 needs a GPU; use auto or fp32 on CPU")
    if requested == "bf16" or (requested == "auto" and torch.cuda.is_available()):
        return torch.bfloat16
    return torch.float32


def build_task(cfg: RunConfig, clock: PhaseClock | None = None) -> Task:
    """The stage's model, data and saver; `clock` is charged for model build and data load."""
    clock = clock or PhaseClock()
    eval_table = _read_table(cfg.eval_data).head(cfg.train.eval_samples) if cfg.eval_data else None
    attention = choose_attention(cfg.train.attn_implementation)
    if cfg.kind == "vlm":
        return _vlm_task(cfg, clock, eval_table, attention)
    preset = get_preset(cfg.preset)
    if cfg.kind == "lm":
        return _lm_task(cfg, clock, eval_table, attention, preset)
    return _vision_task(cfg, clock, eval_table, preset)


def _vlm_task(cfg: RunConfig, clock: PhaseClock, eval_table: pd.DataFrame | None,
              attention: str) -> Task:
    """The VLM of a recipe stage: a previous stage's checkpoint, or a preset's fresh one."""
    if cfg.init_from:
        processor = VLProcessor.from_pretrained(cfg.init_from)
        model = load_vlm(cfg.init_from)
    else:
        preset = get_preset(cfg.preset)
        tokenizer = load_tokenizer(cfg.tokenizer_path)
        processor = VLProcessor(tokenizer, preset.image_settings())
        model = build_vlm(preset, tokenizer, cfg.llm_path, cfg.vision_path, seed=cfg.runtime.seed)
    model.set_attn_implementation(attention)
    clock.mark("model")
    train = ConversationData(_read_table(cfg.train_data), processor, cfg.train.max_seq_len)
    evald = (ConversationData(eval_table, processor, cfg.train.max_seq_len)
             if eval_table is not None else None)
    clock.mark("data")

    def save(m: nn.Module, directory: Path, state: dict | None) -> None:
        m.save_pretrained(directory, state_dict=state, safe_serialization=True)
        processor.save_pretrained(directory)

    return Task(model, train, evald, processor.tokenizer.pad_token_id, save, cfg.trainable_modules)


def _lm_task(cfg: RunConfig, clock: PhaseClock, eval_table: pd.DataFrame | None,
             attention: str, preset: Preset) -> Task:
    """The stand-in LLM on the world's text."""
    tokenizer = load_tokenizer(cfg.tokenizer_path)
    torch.manual_seed(cfg.runtime.seed)
    model = build_text_lm(preset, tokenizer)
    model.set_attn_implementation(attention)
    clock.mark("model")
    train = TextData(_read_table(cfg.train_data), tokenizer, cfg.train.max_seq_len)
    evald = TextData(eval_table, tokenizer, cfg.train.max_seq_len) if eval_table is not None else None
    clock.mark("data")

    def save(m: nn.Module, directory: Path, state: dict | None) -> None:
        m.save_pretrained(directory, state_dict=state, safe_serialization=True)
        tokenizer.save_pretrained(directory)

    return Task(model, train, evald, tokenizer.pad_token_id, save, None)


def _vision_task(cfg: RunConfig, clock: PhaseClock, eval_table: pd.DataFrame | None,
                 preset: Preset) -> Task:
    """The stand-in vision tower on attribute classification; only the tower is saved."""
    settings = preset.image_settings()
    train_table = _read_table(cfg.train_data)
    # Heads sized by both tables, so a class seen only in the eval rows still has a logit.
    both = pd.concat([train_table, eval_table]) if eval_table is not None else train_table
    classes = {c.removeprefix("label_"): int(both[c].max()) + 1
               for c in both.columns if c.startswith("label_")}
    train = AttributeData(train_table, settings, classes)
    evald = AttributeData(eval_table, settings, classes) if eval_table is not None else None
    clock.mark("data")
    torch.manual_seed(cfg.runtime.seed)
    tower, hidden = build_vision_tower(preset)
    model = VisionClassifier(tower, hidden, train.num_classes)
    clock.mark("model")

    def save(m: nn.Module, directory: Path, state: dict | None) -> None:
        tower_state = None if state is None else {
            k.removeprefix("vision_tower."): v for k, v in state.items()
            if k.startswith("vision_tower.")}
        m.vision_tower.save_pretrained(directory, state_dict=tower_state, safe_serialization=True)

    return Task(model, train, evald, 0, save, None)
