"""DeepSpeed training entry point: `deepspeed -m sail_pipeline.training.train --config run.json`.

Runs in DeepSpeed's processes, never in Kedro's. One code path for the three kinds of run:
`vlm` (the five recipe stages), `lm` (the stand-in LLM on the world's text) and `vision`
(the stand-in vision tower on attribute classification).
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import logging
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from sail_pipeline.errors import TRACEBACK_VARIABLE, UserError
from sail_pipeline.lineage import flatten
from sail_pipeline.modeling.freezing import freeze, module_group
from sail_pipeline.modeling.presets import (
    build_text_lm,
    build_vision_tower,
    build_vlm,
    get_preset,
    load_vlm,
)
from sail_pipeline.modeling.processor import VLProcessor
from sail_pipeline.modeling.tokenizer import load_tokenizer
from sail_pipeline.run_timing import peak_rss_mb, reset_peak_rss
from sail_pipeline.storage import replace_text, written_whole_or_not_at_all
from sail_pipeline.training.config import RunConfig
from sail_pipeline.training.data import AttributeData, ConversationData, StepBatches, TextData
from sail_pipeline.training.flops import peak_tflops, training_flops
from sail_pipeline.training.packing import BatchStats, TokenBatches
from sail_pipeline.training.rendezvous import init_process_group
from sail_pipeline.training.safe_checkpoint import UnreadableCheckpoint, use_safe_loading
from sail_pipeline.training.schedule import warmup_cosine
from sail_pipeline.training.telemetry import PhaseClock, ThroughputWindow
from sail_pipeline.training.tracking import MetricLogger

log = logging.getLogger("sail_pipeline.train")
SUMMARY_FILE = "summary.json"
HF_DIR = "hf"
# A stage that stops on something the user fixes (a full disk, a damaged checkpoint) prints
# one line starting with this mark and exits with this code; the launcher shows that line.
USER_ERROR_MARK = "[stage stopped] "
USER_ERROR_EXIT = 3


class CheckpointsOfAnotherRun(UserError, RuntimeError):
    """The stage's checkpoint folder was written by a run with another config."""


class VisionClassifier(nn.Module):
    """Vision tower + one linear head per attribute, on mean-pooled patch features."""

    def __init__(self, tower: nn.Module, hidden: int, num_classes: dict[str, int]) -> None:
        super().__init__()
        self.vision_tower = tower
        self.heads = nn.ModuleDict({n: nn.Linear(hidden, k) for n, k in num_classes.items()})

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None):
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


@dataclass
class Task:
    model: nn.Module  # the Hugging Face model that is saved
    train: Any
    eval: Any | None
    pad_id: int
    save: Any  # callable(model, directory, full state dict or None)
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

    preset = get_preset(cfg.preset)
    if cfg.kind == "lm":
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


def _to_device(batch: dict[str, torch.Tensor], device: torch.device, dtype: torch.dtype):
    moved = {k: v.to(device) for k, v in batch.items()}
    if "pixel_values" in moved:
        moved["pixel_values"] = moved["pixel_values"].to(dtype)
    return moved


@torch.no_grad()
def evaluate(cfg: RunConfig, task: Task, model: nn.Module, device, dtype) -> dict[str, float]:
    """Mean loss per supervised token (and accuracy per attribute for the vision tower).

    Padded batches, per-token mean, whatever the training normalisation: numbers stay
    comparable across stages and runs.
    """
    if task.eval is None or len(task.eval) == 0:
        return {}
    was_training = model.training
    model.eval()
    total_loss, total_weight = 0.0, 0
    correct: dict[str, int] = {}
    size = cfg.train.micro_batch_size
    if cfg.train.pack and task.is_token_task:  # as many tokens as a packed micro batch holds
        longest = max(len(sample) for sample in task.eval.samples)
        size = max(1, cfg.train.micro_batch_size * cfg.train.max_seq_len // longest)
    for start in range(0, len(task.eval), size):
        idx = list(range(start, min(start + size, len(task.eval))))
        batch = _to_device(task.eval.batch(idx, task.pad_id), device, dtype)
        if cfg.kind == "vision":
            loss, logits = model(batch["pixel_values"], batch["labels"])
            total_loss += float(loss) * len(idx)
            total_weight += len(idx)
            for i, name in enumerate(logits):
                hits = (logits[name].argmax(-1) == batch["labels"][:, i]).sum().item()
                correct[name] = correct.get(name, 0) + int(hits)
        else:
            losses, _, _ = model.token_losses(**batch)
            total_loss += float(losses.sum())
            total_weight += losses.numel()
    model.train(was_training)
    metrics = {"eval_loss": total_loss / max(total_weight, 1)}
    metrics.update({f"eval_acc_{n}": c / len(task.eval) for n, c in correct.items()})
    return metrics


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(),
            "torch": torch.get_rng_state()}


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def deepspeed_config(cfg: RunConfig, world_size: int, dtype: torch.dtype) -> dict[str, Any]:
    """The run's DeepSpeed config: the stage's file, with what this run config decides."""
    config = copy.deepcopy(cfg.deepspeed_config)
    config.update({
        "train_batch_size": cfg.train.micro_batch_size * cfg.train.grad_accum * world_size,
        "train_micro_batch_size_per_gpu": cfg.train.micro_batch_size,
        "gradient_accumulation_steps": cfg.train.grad_accum,
        "gradient_clipping": cfg.train.grad_clip,
        "bf16": {"enabled": dtype == torch.bfloat16},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    })
    config.setdefault("zero_optimization", {"stage": 0})
    if config["zero_optimization"].get("offload_optimizer"):
        # Our AdamW (per-group learning rates) runs on the offloaded states as is.
        config.setdefault("zero_force_ds_cpu_optimizer", False)
    return config


def _optimizer(cfg: RunConfig, model: nn.Module) -> torch.optim.Optimizer:
    """AdamW with one group per (module group, decay or not), each at its own learning rate."""
    groups: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            decays = param.ndim >= 2 and "embed" not in name
            groups.setdefault((module_group(name), decays), []).append(param)
    param_groups = [
        {"params": params, "weight_decay": cfg.train.weight_decay if decays else 0.0,
         "lr": cfg.train.lr * cfg.train.lr_scale.get(group, 1.0), "name": f"{group}"}
        for (group, decays), params in sorted(groups.items())
    ]
    # fused: one kernel per step for all parameters instead of ~10 small ops per tensor
    # (CPU and CUDA, fp32 and bf16; benchmarks/profile_train_step.py).
    return torch.optim.AdamW(param_groups, lr=cfg.train.lr,
                             betas=(cfg.train.beta1, cfg.train.beta2), fused=True)


def _consolidated_state(engine, cfg: RunConfig, wrapped: bool) -> dict[str, torch.Tensor] | None:
    """ZeRO-3 shards parameters across ranks; gather them (a collective) before saving."""
    if cfg.zero_stage != 3:
        return None
    state = engine._zero3_consolidated_16bit_state_dict()
    if state is None or not wrapped:
        return state
    return {k.removeprefix("net."): v for k, v in state.items()}


def _flops_counter(cfg: RunConfig, task: Task, trainable: set[str]):
    """FLOPs of one micro batch from the model's shapes (None for the vision classifier)."""
    if not task.is_token_task:
        return None
    model_config = task.model.config
    groups = None if cfg.kind == "lm" else trainable & {"vision", "projector", "llm"}

    def count(stats: BatchStats, row_width: int, tiles: int) -> float:
        return training_flops(model_config, text_tokens=stats.real_tokens, seq_len=row_width,
                              images_tiles=tiles, trainable=groups)

    return count


class _Batches:
    """One interface over token batches (packed or padded) and image batches."""

    def __init__(self, cfg: RunConfig, task: Task, world: int) -> None:
        self.task, self.cfg = task, cfg
        if task.is_token_task:
            self.tokens = TokenBatches(task.train.samples, cfg.train.micro_batch_size, world,
                                       cfg.runtime.seed, cfg.train.pack, cfg.train.max_seq_len, cfg.train.loss_norm)
        else:
            self.images = StepBatches(len(task.train), cfg.train.micro_batch_size * world, cfg.runtime.seed)

    def steps(self) -> int:
        train = self.cfg.train
        if train.steps is not None:
            return train.steps
        if train.epochs is not None:
            if not self.task.is_token_task:
                raise ValueError(f"{self.cfg.stage}: an `epochs` budget needs a token task; "
                                 f"give `steps`")
            return self.tokens.steps_for_epochs(train.epochs, train.grad_accum)
        return self.tokens.steps_for_tokens(train.tokens, train.grad_accum)

    def get(self, micro_batch: int, rank: int
            ) -> tuple[dict[str, torch.Tensor], BatchStats | None, int, int]:
        """(batch, token stats, samples, tiles) of micro batch k on this rank."""
        if self.task.is_token_task:
            pixels = getattr(self.task.train, "pixels", None)
            batch, stats = self.tokens.batch(micro_batch, rank, self.task.pad_id, pixels)
            tiles = int(batch["pixel_values"].shape[0]) if "pixel_values" in batch else 0
            return batch, stats, stats.samples, tiles
        size = self.cfg.train.micro_batch_size
        indices = self.images.indices(micro_batch)[rank * size:(rank + 1) * size]
        return self.task.train.batch(indices), None, len(indices), len(indices)


def run(cfg: RunConfig, clock: PhaseClock | None = None) -> dict[str, Any]:
    """Train one stage. `clock` (started when the process was) splits its wall time into
    phases, which the summary reports next to `seconds_to_first_step`."""
    clock = clock or PhaseClock(started=time.time())
    # A warm trainer forks each stage from a parent that may have held more: count this
    # stage's peak from its current size.
    reset_peak_rss()
    import deepspeed
    import torch.distributed as dist

    clock.mark("imports")
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.runtime.threads:
        torch.set_num_threads(cfg.runtime.threads)
    init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    _seed_everything(cfg.runtime.seed + rank)
    dtype = choose_precision(cfg.train.precision)
    clock.mark("rendezvous")

    started = time.perf_counter()
    task = build_task(cfg, clock)
    rejected = task.train.rejections.counts()
    if rank == 0:
        task.train.rejections.save(out / "rejected.parquet")
        log.info("%s: %d training samples kept, rejected %s", cfg.stage, len(task.train), rejected)
    freeze_report = freeze(task.model, task.freeze_keys) if task.freeze_keys else None
    if freeze_report and rank == 0:
        log.info("%s: %s", cfg.stage, freeze_report.summary())
    if cfg.train.gradient_checkpointing:
        if not hasattr(task.model, "activation_checkpointing_enable"):
            raise ValueError(f"{cfg.stage}: this model has no gradient checkpointing")
        task.model.activation_checkpointing_enable({"use_reentrant": False})

    batches = _Batches(cfg, task, world)
    total_steps = batches.steps()
    trainable = {module_group(n) for n, p in task.model.named_parameters() if p.requires_grad}
    optimizer = _optimizer(cfg, task.model)
    scheduler = warmup_cosine(optimizer, total_steps, cfg.train.warmup_ratio,
                              cfg.train.min_lr_ratio)
    network = SupervisedLM(task.model) if task.is_token_task else task.model
    engine, _, _, _ = deepspeed.initialize(
        model=network, optimizer=optimizer, lr_scheduler=scheduler,
        config=deepspeed_config(cfg, world, dtype),
    )
    device = engine.device
    if rank == 0:
        plan = (f"{total_steps} steps" + (f" for a budget of {cfg.train.tokens:,} tokens"
                                          if cfg.train.tokens else "")
                + (f" for {cfg.train.epochs:g} epochs" if cfg.train.epochs else ""))
        if task.is_token_task:
            plan += (f", {'packed' if cfg.train.pack else 'padded'} rows of up to {cfg.train.max_seq_len} "
                     f"tokens, {batches.tokens.rows_per_epoch} rows per epoch, "
                     f"{cfg.train.loss_norm} loss normalisation")
        log.info("%s: %s; ZeRO stage %d, %s, attention %s", cfg.stage, plan, cfg.zero_stage,
                 str(dtype).removeprefix("torch."), choose_attention(cfg.train.attn_implementation))

    start_step, carried = 0, {}
    ckpt_dir = out / "checkpoints"
    fingerprint = cfg.fingerprint()
    fingerprint_file = ckpt_dir / "fingerprint.json"
    if (ckpt_dir / "latest").exists():
        # Compared before loading: another model's shapes would fail inside DeepSpeed with a
        # message that does not say why.
        saved = json.loads(fingerprint_file.read_text()) if fingerprint_file.exists() else None
        if saved != fingerprint:
            raise CheckpointsOfAnotherRun(f"{ckpt_dir} holds checkpoints of a run with another config; "
                               f"delete it to start {cfg.stage} afresh")
        use_safe_loading(engine)
        _, client = engine.load_checkpoint(str(ckpt_dir))
        if client is None:  # DeepSpeed returns (None, None) when the tag's files are missing
            raise UnreadableCheckpoint(
                f"{ckpt_dir} names the checkpoint {(ckpt_dir / 'latest').read_text().strip()!r}, "
                f"whose files are missing or incomplete; delete {ckpt_dir} to start "
                f"{cfg.stage} afresh")
        start_step = int(client["step"])
        _set_rng_state(client["rng"])
        # What the killed process measured before its checkpoint: the summary and the MLflow
        # run report the whole stage, as an uninterrupted run would.
        carried = {"before": client.get("before", {}), "seconds": client.get("seconds", 0.0)}
        log.info("%s: resumed from %s at step %d", cfg.stage, ckpt_dir, start_step)
    elif rank == 0 and cfg.train.save_every:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        replace_text(fingerprint_file, json.dumps(fingerprint))
    clock.mark("engine")

    # Every setting the run was given (train.*, runtime.seed, ...), and what followed from them.
    params = {**flatten(cfg.model_dump(mode="json", include={"train", "runtime"})),
              "stage": cfg.stage, "kind": cfg.kind, "preset": cfg.preset, "steps": total_steps,
              "world_size": world, "trainable": ",".join(task.freeze_keys or ["all"]),
              "train_samples": len(task.train), "zero_stage": cfg.zero_stage,
              "resolved_precision": str(dtype).removeprefix("torch."),
              "rows_per_epoch": batches.tokens.rows_per_epoch if task.is_token_task else None}
    logger = MetricLogger(cfg.tracking, out, params, enabled=rank == 0,
                          resumed_at=start_step if start_step else None,
                          inputs={"training": cfg.train_data, "evaluation": cfg.eval_data})
    inner = engine.module.net if task.is_token_task else engine.module
    clock.mark("tracking")
    before = evaluate(cfg, task, engine.module, device, dtype) if start_step == 0 \
        else carried["before"]
    if rank == 0 and before and start_step == 0:
        logger.log({f"{k}_before": v for k, v in before.items()}, step=start_step)
        log.info("%s: before training %s", cfg.stage, _fmt(before))
    clock.mark("eval")

    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    window = ThroughputWindow(world, device, peak_tflops(device_name, cfg.runtime.peak_tflops),
                              _flops_counter(cfg, task, trainable))
    totals = ThroughputWindow(world, device)
    losses: list[float] = []
    final_loss = float("nan")
    engine.train()
    progress = _progress(rank == 0, total_steps, start_step, cfg.stage)
    for step in range(start_step, total_steps):
        for micro in range(cfg.train.grad_accum):
            t_wait = time.perf_counter()
            batch, stats, samples, tiles = batches.get(step * cfg.train.grad_accum + micro, rank)
            batch = _to_device(batch, device, dtype)
            wait = time.perf_counter() - t_wait
            loss = engine(**batch) if task.is_token_task else engine(
                batch["pixel_values"], batch["labels"])[0]
            engine.backward(loss)
            engine.step()
            clock.first_step_done()
            width = int(batch["input_ids"].shape[1]) if "input_ids" in batch else 0
            for acc in (window, totals):
                acc.add(loss.item(), stats, samples, wait, width, tiles)
        progress.update(1)
        if (step + 1) % cfg.train.log_every == 0 or step + 1 == total_steps:
            metrics = window.metrics() | {"lr": scheduler.get_last_lr()[0]}
            final_loss = metrics["train_loss"]
            losses.append(final_loss)
            if rank == 0:
                logger.log(metrics, step=step + 1)
                progress.write(f"[{cfg.stage}] step {step + 1}/{total_steps} {_fmt(metrics)}")
        if cfg.train.save_every and (step + 1) % cfg.train.save_every == 0 and step + 1 < total_steps:
            # A save cut short (a full disk) leaves no tag folder: `latest` still names the
            # previous, whole checkpoint, which a re-run resumes from.
            clock.mark("train")
            tag = f"step{step + 1}"
            with written_whole_or_not_at_all(ckpt_dir / tag, partial=ckpt_dir / tag):
                engine.save_checkpoint(str(ckpt_dir), tag=tag, save_latest=False, client_state={
                    "step": step + 1, "rng": _rng_state(), "before": before,
                    "seconds": carried.get("seconds", 0.0) + time.perf_counter() - started})
                # DeepSpeed rewrites `latest` in place: a full disk there left it empty, naming
                # no checkpoint at all. Published whole, after every rank's files are written.
                if rank == 0:
                    replace_text(ckpt_dir / "latest", tag)
            clock.mark("checkpoint")
    progress.close()
    clock.mark("train")

    run_totals = totals.metrics()
    after = evaluate(cfg, task, engine.module, device, dtype)
    clock.mark("eval")
    summary: dict[str, Any] = {
        "stage": cfg.stage, "kind": cfg.kind, "steps": total_steps, "token_budget": cfg.train.tokens,
        "epoch_budget": cfg.train.epochs,
        "epoch_tokens": batches.tokens.epoch_tokens() if task.is_token_task else None,
        "final_train_loss": final_loss, "train_samples": len(task.train), "rejected": rejected,
        "mask_mismatches": getattr(task.train, "mask_mismatches", 0),
        # Up to the checkpoint it resumed from, plus this process: the work the stage kept.
        "wall_seconds": carried.get("seconds", 0.0) + time.perf_counter() - started,
        "resumed_at_step": start_step or None,
        "mean_tokens_per_s": run_totals.get("tokens_per_s", 0.0),
        "padding_fraction": run_totals.get("padding_fraction"),
        "peak_memory_gib": run_totals["peak_memory_gib"],
        "trainable_params": freeze_report.trainable_params if freeze_report else None,
        "logged_train_losses": losses,
        **{f"{k}_before": v for k, v in before.items()},
        **{f"{k}_after": v for k, v in after.items()},
    }
    state = _consolidated_state(engine, cfg, wrapped=task.is_token_task)
    if rank == 0:
        hf_dir = out / HF_DIR
        with written_whole_or_not_at_all(hf_dir, partial=hf_dir):
            task.save(inner, hf_dir, state)
        clock.mark("save")
        logger.log({f"{k}_after": v for k, v in after.items()}
                   | {"mask_mismatches": float(summary["mask_mismatches"])}
                   | {f"seconds_{k}": v for k, v in clock.report().items()}
                   | {"seconds_to_first_step": clock.first_step or float("nan")},
                   step=total_steps)
        logger.close()
        clock.mark("tracking")
        # This process's phases (a resumed stage's killed process is not in them).
        summary["phases"] = clock.report()
        summary["seconds_to_first_step"] = clock.first_step
        # The trainer's own peak: a training node's memory is mostly here, not in Kedro's.
        summary["peak_rss_mb"] = peak_rss_mb()
        replace_text(out / SUMMARY_FILE, json.dumps(summary, indent=2))
        # The stage is done and `hf/` is its product; stale optimizer states would make the
        # next run of this stage resume a finished one.
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        log.info("%s: done in %.0fs, %s", cfg.stage, summary["wall_seconds"], _fmt(after))
    dist.barrier()
    return summary


def _progress(enabled: bool, total: int, initial: int, stage: str):
    """A progress bar on a terminal; plain log lines (through `write`) in a pipe."""
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=stage, unit="step", file=sys.stdout,
                disable=not enabled or not sys.stdout.isatty(), dynamic_ncols=True)


def _fmt(metrics: dict[str, float]) -> str:
    return " ".join(f"{k} {v:.4g}" for k, v in metrics.items())


def main(argv: list[str] | None = None) -> int:
    clock = PhaseClock()
    clock.mark("imports")  # the interpreter and this module's imports
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="run config JSON written by a node")
    parser.add_argument("--local_rank", type=int, default=int(os.environ.get("LOCAL_RANK", 0)),
                        help="set by the deepspeed launcher")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("DeepSpeed", "deepspeed", "torch.distributed"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        run(RunConfig.load(args.config), clock)
    except BaseException as error:
        _end_tracking("KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")
        if not isinstance(error, UserError) or os.environ.get(TRACEBACK_VARIABLE):
            raise
        print(f"{USER_ERROR_MARK}{type(error).__name__}: {error}", flush=True)
        return USER_ERROR_EXIT
    return 0


def _end_tracking(status: str) -> None:
    """Close the stage's MLflow run as what happened: MLflow's own exit hook would close it
    FINISHED."""
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None and mlflow.active_run() is not None:
        mlflow.end_run(status=status)


if __name__ == "__main__":
    sys.exit(main())
