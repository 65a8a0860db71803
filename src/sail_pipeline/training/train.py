"""DeepSpeed training entry point: `deepspeed -m sail_pipeline.training.train --config run.json`.

Runs in DeepSpeed's processes, never in Kedro's. One code path for the three kinds of run:
`vlm` (the five recipe stages), `lm` (the stand-in LLM on the world's text) and `vision`
(the stand-in vision tower on attribute classification).
"""

from __future__ import annotations

import argparse
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

from sail_pipeline.modeling.freezing import freeze, module_group
from sail_pipeline.modeling.presets import build_vlm, get_preset, text_config, vision_config
from sail_pipeline.modeling.processor import VLProcessor
from sail_pipeline.modeling.tokenizer import load_tokenizer
from sail_pipeline.training.config import RunConfig
from sail_pipeline.training.data import AttributeData, ConversationData, StepBatches, TextData
from sail_pipeline.training.schedule import warmup_cosine
from sail_pipeline.training.tracking import MetricLogger

log = logging.getLogger("sail_pipeline.train")
SUMMARY_FILE = "summary.json"
HF_DIR = "hf"


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


@dataclass
class Task:
    model: nn.Module
    train: Any
    eval: Any | None
    pad_id: int
    save: Any  # callable(model, directory, full state dict or None)
    freeze_keys: list[str] | None


def _read_table(path: str) -> pd.DataFrame:
    if not Path(path).exists():
        raise FileNotFoundError(f"training data {path} does not exist")
    return pd.read_parquet(path)


def build_task(cfg: RunConfig) -> Task:
    from transformers import (
        InternVLForConditionalGeneration,
        InternVLVisionModel,
        Qwen2ForCausalLM,
    )

    eval_table = _read_table(cfg.eval_data).head(cfg.eval_samples) if cfg.eval_data else None
    if cfg.kind == "vlm":
        if cfg.init_from:
            processor = VLProcessor.from_pretrained(cfg.init_from)
            model = InternVLForConditionalGeneration.from_pretrained(cfg.init_from,
                                                                     dtype=torch.float32)
        else:
            preset = get_preset(cfg.preset)
            tokenizer = load_tokenizer(cfg.tokenizer_path)
            processor = VLProcessor(tokenizer, preset.image_settings())
            model = build_vlm(preset, tokenizer, cfg.llm_path, cfg.vision_path, seed=cfg.seed)
        train = ConversationData(_read_table(cfg.train_data), processor, cfg.max_seq_len)
        evald = (ConversationData(eval_table, processor, cfg.max_seq_len)
                 if eval_table is not None else None)

        def save(m: nn.Module, directory: Path, state: dict | None) -> None:
            m.save_pretrained(directory, state_dict=state, safe_serialization=True)
            processor.save_pretrained(directory)

        return Task(model, train, evald, processor.tokenizer.pad_token_id, save, cfg.trainable)

    preset = get_preset(cfg.preset)
    if cfg.kind == "lm":
        tokenizer = load_tokenizer(cfg.tokenizer_path)
        model = Qwen2ForCausalLM(text_config(preset, tokenizer))
        train = TextData(_read_table(cfg.train_data), tokenizer, cfg.max_seq_len)
        evald = TextData(eval_table, tokenizer, cfg.max_seq_len) if eval_table is not None else None

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
    vconf = vision_config(preset)
    model = VisionClassifier(InternVLVisionModel(vconf), vconf.hidden_size, train.num_classes)

    def save(m: nn.Module, directory: Path, state: dict | None) -> None:
        tower_state = None if state is None else {
            k.removeprefix("vision_tower."): v for k, v in state.items()
            if k.startswith("vision_tower.")}
        m.vision_tower.save_pretrained(directory, state_dict=tower_state, safe_serialization=True)

    return Task(model, train, evald, 0, save, None)


def _forward(cfg: RunConfig, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    if cfg.kind == "vision":
        return model(batch["pixel_values"], batch["labels"])[0]
    return model(**batch).loss


def _to_device(batch: dict[str, torch.Tensor], device: torch.device, dtype: torch.dtype):
    moved = {k: v.to(device) for k, v in batch.items()}
    if "pixel_values" in moved:
        moved["pixel_values"] = moved["pixel_values"].to(dtype)
    return moved


@torch.no_grad()
def evaluate(cfg: RunConfig, task: Task, model: nn.Module, device, dtype) -> dict[str, float]:
    """Mean loss per supervised token (and accuracy per attribute for the vision tower)."""
    if task.eval is None or len(task.eval) == 0:
        return {}
    was_training = model.training
    model.eval()
    total_loss, total_weight = 0.0, 0
    correct: dict[str, int] = {}
    size = cfg.micro_batch_size
    for start in range(0, len(task.eval), size):
        idx = list(range(start, min(start + size, len(task.eval))))
        batch = _to_device(task.eval.batch(idx, task.pad_id), device, dtype)
        if cfg.kind == "vision":
            loss, logits = model(batch["pixel_values"], batch["labels"])
            weight = len(idx)
            for i, name in enumerate(logits):
                hits = (logits[name].argmax(-1) == batch["labels"][:, i]).sum().item()
                correct[name] = correct.get(name, 0) + int(hits)
        else:
            loss = model(**batch).loss
            weight = int((batch["labels"][:, 1:] != -100).sum())
        total_loss += float(loss) * weight
        total_weight += weight
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


def deepspeed_config(cfg: RunConfig, world_size: int) -> dict[str, Any]:
    return {
        "train_batch_size": cfg.micro_batch_size * cfg.grad_accum * world_size,
        "train_micro_batch_size_per_gpu": cfg.micro_batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "gradient_clipping": cfg.optim.grad_clip,
        "zero_optimization": {"stage": cfg.zero_stage},
        "bf16": {"enabled": cfg.bf16},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def _optimizer(cfg: RunConfig, model: nn.Module) -> torch.optim.Optimizer:
    """AdamW with one group per (module group, decay or not), each at its own learning rate."""
    groups: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            decays = param.ndim >= 2 and "embed" not in name
            groups.setdefault((module_group(name), decays), []).append(param)
    param_groups = [
        {"params": params, "weight_decay": cfg.optim.weight_decay if decays else 0.0,
         "lr": cfg.optim.lr * cfg.optim.lr_scale.get(group, 1.0), "name": f"{group}"}
        for (group, decays), params in sorted(groups.items())
    ]
    return torch.optim.AdamW(param_groups, lr=cfg.optim.lr,
                             betas=(cfg.optim.beta1, cfg.optim.beta2))


def _consolidated_state(engine, cfg: RunConfig) -> dict[str, torch.Tensor] | None:
    """ZeRO-3 shards parameters across ranks; gather them (a collective) before saving."""
    if cfg.zero_stage == 3:
        return engine._zero3_consolidated_16bit_state_dict()
    return None


def run(cfg: RunConfig) -> dict[str, Any]:
    import deepspeed
    import torch.distributed as dist

    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    _seed_everything(cfg.seed + rank)

    started = time.perf_counter()
    task = build_task(cfg)
    rejected = task.train.rejections.counts()
    if rank == 0:
        task.train.rejections.save(out / "rejected.parquet")
        log.info("%s: %d training samples kept, rejected %s", cfg.stage, len(task.train), rejected)
    freeze_report = freeze(task.model, task.freeze_keys) if task.freeze_keys else None
    if freeze_report and rank == 0:
        log.info("%s: %s", cfg.stage, freeze_report.summary())

    optimizer = _optimizer(cfg, task.model)
    scheduler = warmup_cosine(optimizer, cfg.steps, cfg.optim.warmup_ratio, cfg.optim.min_lr_ratio)
    engine, _, _, _ = deepspeed.initialize(
        model=task.model, optimizer=optimizer, lr_scheduler=scheduler,
        config=deepspeed_config(cfg, world),
    )
    device = engine.device
    dtype = torch.bfloat16 if cfg.bf16 else torch.float32

    start_step = 0
    ckpt_dir = out / "checkpoints"
    fingerprint = cfg.model_dump(exclude={"tracking", "steps", "save_every", "log_every"})
    if (ckpt_dir / "latest").exists():
        _, client = engine.load_checkpoint(str(ckpt_dir))
        if client.get("fingerprint") != fingerprint:
            raise RuntimeError(f"{ckpt_dir} holds checkpoints of a run with another config; "
                               f"delete it to start {cfg.stage} afresh")
        start_step = int(client["step"])
        _set_rng_state(client["rng"])
        log.info("%s: resumed from %s at step %d", cfg.stage, ckpt_dir, start_step)

    params = {"stage": cfg.stage, "kind": cfg.kind, "steps": cfg.steps, "lr": cfg.optim.lr,
              "micro_batch_size": cfg.micro_batch_size, "grad_accum": cfg.grad_accum,
              "world_size": world, "trainable": ",".join(task.freeze_keys or ["all"]),
              "train_samples": len(task.train)}
    logger = MetricLogger(cfg.tracking, out, params, enabled=rank == 0,
                          resumed=start_step > 0)
    before = evaluate(cfg, task, engine.module, device, dtype) if start_step == 0 else {}
    if rank == 0 and before:
        logger.log({f"{k}_before": v for k, v in before.items()}, step=start_step)
        log.info("%s: before training %s", cfg.stage, _fmt(before))

    batches = StepBatches(len(task.train), cfg.micro_batch_size * world, cfg.seed)
    engine.train()
    window = {"loss": 0.0, "n": 0, "tokens": 0, "samples": 0, "wait": 0.0, "t0": time.perf_counter()}
    losses: list[float] = []
    final_loss = float("nan")
    total_tokens, train_started = 0, time.perf_counter()
    for step in range(start_step, cfg.steps):
        for micro in range(cfg.grad_accum):
            t_wait = time.perf_counter()
            indices = batches.indices(step * cfg.grad_accum + micro)
            mine = indices[rank * cfg.micro_batch_size:(rank + 1) * cfg.micro_batch_size]
            batch = _to_device(task.train.batch(mine, task.pad_id), device, dtype)
            window["wait"] += time.perf_counter() - t_wait
            loss = _forward(cfg, engine, batch)
            engine.backward(loss)
            engine.step()
            window["loss"] += float(loss)
            window["n"] += 1
            window["samples"] += len(mine)
            if "attention_mask" in batch:
                tokens = int(batch["attention_mask"].sum())
                window["tokens"] += tokens
                total_tokens += tokens
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            elapsed = time.perf_counter() - window["t0"]
            final_loss = window["loss"] / window["n"]
            losses.append(final_loss)
            metrics = {"train_loss": final_loss, "lr": scheduler.get_last_lr()[0],
                       "samples_per_s": window["samples"] * world / elapsed,
                       "data_wait_fraction": window["wait"] / elapsed}
            if window["tokens"]:
                metrics["tokens_per_s"] = window["tokens"] * world / elapsed
            if rank == 0:
                logger.log(metrics, step=step + 1)
                print(f"[{cfg.stage}] step {step + 1}/{cfg.steps} {_fmt(metrics)}", flush=True)
            window = {"loss": 0.0, "n": 0, "tokens": 0, "samples": 0, "wait": 0.0,
                      "t0": time.perf_counter()}
        if cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < cfg.steps:
            engine.save_checkpoint(str(ckpt_dir), tag=f"step{step + 1}",
                                   client_state={"step": step + 1, "rng": _rng_state(),
                                                 "fingerprint": fingerprint})

    after = evaluate(cfg, task, engine.module, device, dtype)
    summary: dict[str, Any] = {
        "stage": cfg.stage, "kind": cfg.kind, "steps": cfg.steps, "final_train_loss": final_loss,
        "train_samples": len(task.train), "rejected": rejected,
        "mask_mismatches": getattr(task.train, "mask_mismatches", 0),
        "wall_seconds": time.perf_counter() - started,
        "mean_tokens_per_s": total_tokens * world / (time.perf_counter() - train_started),
        "trainable_params": freeze_report.trainable_params if freeze_report else None,
        "logged_train_losses": losses,
        **{f"{k}_before": v for k, v in before.items()},
        **{f"{k}_after": v for k, v in after.items()},
    }
    state = _consolidated_state(engine, cfg)
    if rank == 0:
        hf_dir = out / HF_DIR
        task.save(engine.module, hf_dir, state)
        logger.log({f"{k}_after": v for k, v in after.items()}
                   | {"mask_mismatches": float(summary["mask_mismatches"])}, step=cfg.steps)
        logger.close()
        (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
        # The stage is done and `hf/` is its product; stale optimizer states would make the
        # next run of this stage resume a finished one.
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        log.info("%s: done in %.0fs, %s", cfg.stage, summary["wall_seconds"], _fmt(after))
    dist.barrier()
    return summary


def _fmt(metrics: dict[str, float]) -> str:
    return " ".join(f"{k} {v:.4g}" for k, v in metrics.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="run config JSON written by a node")
    parser.add_argument("--local_rank", type=int, default=int(os.environ.get("LOCAL_RANK", 0)),
                        help="set by the deepspeed launcher")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("DeepSpeed", "deepspeed", "torch.distributed"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    run(RunConfig.load(args.config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
