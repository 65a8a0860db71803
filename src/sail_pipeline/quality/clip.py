"""CLIP score of (image, caption) pairs, as DataComp filters by it, and a small stand-in CLIP.

The score is CLIPScore's: ``max(100 · cos(image, text), 0)``. Any local Hugging Face
``CLIPModel`` directory with its tokenizer and image processor works (`quality.clip:
{source: path, path: …}`); on the embedded default a tiny one is trained contrastively on the
reference pairs and saved the same way, so both load through one path.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import (
    AutoImageProcessor,
    AutoTokenizer,
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
)

from sail_pipeline.captioning.backends import decode_image
from sail_pipeline.errors import UserError
from sail_pipeline.schema.quality import MIN_CLIP_PAIRS, ClipParams

log = logging.getLogger(__name__)

# Bumped when the score's definition changes, so cached scores are recomputed.
CLIP_VERSION = "clipscore-1"


class NotAClipDirectory(UserError, FileNotFoundError):
    """`quality.clip.path` (or a stand-in's output) is not a Hugging Face CLIPModel directory."""


class TooFewClipPairs(UserError, ValueError):
    """The stand-in CLIP was given fewer usable (image, caption) pairs than it trains on."""


class ClipScorer:
    """Batched CLIP scores; one bad image or caption fails only its own pair."""

    def __init__(self, model: CLIPModel, tokenizer: Any, image_processor: Any,
                 batch_size: int = 256, device: str = "cpu") -> None:
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.batch_size = batch_size
        self.device = device
        self.max_tokens = int(model.config.text_config.max_position_embeddings)
        self.eos = model.config.text_config.eos_token_id

    @classmethod
    def load(cls, path: str | Path, batch_size: int = 256, device: str = "cpu") -> ClipScorer:
        path = Path(path)
        if not (path / "config.json").exists():
            raise NotAClipDirectory(f"{path} is not a CLIP directory (no config.json): give "
                                    f"quality.clip.path a local Hugging Face CLIPModel directory "
                                    f"with its tokenizer and image processor, or set "
                                    f"quality.clip.source: train")
        return cls(CLIPModel.from_pretrained(path), AutoTokenizer.from_pretrained(path),
                   AutoImageProcessor.from_pretrained(path), batch_size, device)

    def _text_ids(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        # Truncated by the tokenizer too: `_fit` keeps max_tokens of it anyway.
        rows = self.tokenizer(captions, add_special_tokens=True, truncation=True,
                              max_length=self.max_tokens)["input_ids"]
        # CLIP pools the text at its end-of-text token; a tokenizer that does not append it
        # (our stand-in's) gets it here, and a long caption keeps it after truncation.
        rows = [self._fit(ids) for ids in rows]
        width = max(len(ids) for ids in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids in rows])
        mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in rows])
        return ids, mask

    def _fit(self, ids: list[int]) -> list[int]:
        if not ids or ids[-1] != self.eos:
            ids = [*ids, self.eos]
        return ids if len(ids) <= self.max_tokens else [*ids[:self.max_tokens - 1], self.eos]

    def _pixels(self, images: list[Image.Image]) -> torch.Tensor:
        return self.image_processor(images=images, return_tensors="pt")["pixel_values"]

    @torch.no_grad()
    def embed(self, images: list[Image.Image], captions: list[str]
              ) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = self._text_ids(captions)
        image_features = self.model.get_image_features(
            pixel_values=self._pixels(images).to(self.device))
        text_features = self.model.get_text_features(input_ids=ids.to(self.device),
                                                     attention_mask=mask.to(self.device))
        return (torch.nn.functional.normalize(_tensor(image_features), dim=-1),
                torch.nn.functional.normalize(_tensor(text_features), dim=-1))

    def score(self, images: list[bytes], captions: list[str | None]
              ) -> tuple[np.ndarray, list[str | None]]:
        """CLIPScore per pair (NaN where it cannot be computed) and the reason where not."""
        scores = np.full(len(images), np.nan)
        reasons: list[str | None] = [None] * len(images)
        good: list[int] = []
        decoded: dict[int, Image.Image] = {}
        for i, (data, caption) in enumerate(zip(images, captions, strict=True)):
            image = decode_image(data) if isinstance(data, bytes | bytearray) else "missing_image"
            if isinstance(image, str):
                reasons[i] = image
            elif not isinstance(caption, str) or not caption.strip():
                reasons[i] = "missing_caption"
            else:
                decoded[i] = image
                good.append(i)
        for start in range(0, len(good), self.batch_size):
            chunk = good[start:start + self.batch_size]
            image_emb, text_emb = self.embed([decoded[i] for i in chunk],
                                             [str(captions[i]) for i in chunk])
            cosine = (image_emb * text_emb).sum(-1).cpu().numpy()
            scores[chunk] = np.maximum(100.0 * cosine, 0.0)
        return scores, reasons


def _tensor(features: Any) -> torch.Tensor:
    # transformers >= 4.5x may return a model output instead of a tensor here.
    return features if isinstance(features, torch.Tensor) else features.pooler_output


def standin_config(tokenizer: Any, spec: ClipParams) -> CLIPConfig:
    text = {"vocab_size": len(tokenizer), "hidden_size": spec.hidden_size,
            "intermediate_size": 2 * spec.hidden_size, "num_hidden_layers": spec.layers,
            "num_attention_heads": spec.heads, "max_position_embeddings": spec.max_text_tokens,
            "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.eos_token_id}
    vision = {"hidden_size": spec.hidden_size, "intermediate_size": 2 * spec.hidden_size,
              "num_hidden_layers": spec.layers, "num_attention_heads": spec.heads,
              "image_size": spec.image_size, "patch_size": spec.patch_size}
    return CLIPConfig(text_config=text, vision_config=vision,
                      projection_dim=spec.projection_dim)


def train_standin_clip(images: list[bytes], captions: list[str], tokenizer_dir: str | Path,
                       out_dir: str | Path, spec: ClipParams, seed: int = 0
                       ) -> dict[str, Any]:
    """Train a tiny CLIP contrastively on (image, caption) pairs and save it as an HF directory.

    Returns a summary: steps, seconds, the in-batch retrieval accuracy before and after on a
    held-out tenth of the pairs (image → its own caption among the held-out captions).
    """
    decoded = [decode_image(b) for b in images]
    pairs = [(im, c) for im, c in zip(decoded, captions, strict=True)
             if not isinstance(im, str) and isinstance(c, str) and c.strip()]
    # Counted after decoding: an unreadable image or an empty caption teaches nothing, and
    # too few left would fail later inside torch (an empty batch), not with this message.
    if len(pairs) < MIN_CLIP_PAIRS:
        raise TooFewClipPairs(
            f"the stand-in CLIP needs at least {MIN_CLIP_PAIRS} (image, caption) pairs and got "
            f"{len(pairs)} usable of {len(images)} (the reference captions of kept images, "
            f"without empty captions or unreadable images); raise captioning.reference.size, "
            f"or give your own CLIP: quality.clip: {{source: path, path: <a CLIPModel "
            f"directory>}}")
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    processor = CLIPImageProcessor(size={"shortest_edge": spec.image_size},
                                   crop_size={"height": spec.image_size,
                                              "width": spec.image_size})
    model = CLIPModel(standin_config(tokenizer, spec))
    scorer = ClipScorer(model, tokenizer, processor, batch_size=spec.score_batch_size)
    order = np.random.default_rng(seed).permutation(len(pairs))
    held = [pairs[i] for i in order[:max(10, len(pairs) // 10)]]
    train = [pairs[i] for i in order[len(held):]]
    pixels = scorer._pixels([im for im, _ in train])
    ids, mask = scorer._text_ids([c for _, c in train])
    before = retrieval_accuracy(scorer, held)
    optimiser = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=0.1)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=spec.lr,
                                                   total_steps=spec.steps, pct_start=0.1)
    rng = np.random.default_rng(seed + 1)
    started, losses = time.perf_counter(), []
    model.train()
    for step in range(spec.steps):
        batch = torch.from_numpy(rng.choice(len(train), min(spec.batch_size, len(train)),
                                            replace=False))
        out = model(input_ids=ids[batch], attention_mask=mask[batch],
                    pixel_values=pixels[batch], return_loss=True)
        optimiser.zero_grad()
        out.loss.backward()
        optimiser.step()
        schedule.step()
        losses.append(out.loss.item())
        if (step + 1) % 50 == 0:
            log.info("stand-in CLIP step %d/%d: contrastive loss %.3f", step + 1, spec.steps,
                     float(np.mean(losses[-50:])))
    model.eval()
    after = retrieval_accuracy(scorer, held)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    processor.save_pretrained(out)
    summary = {"pairs": len(train), "held_out": len(held), "steps": spec.steps,
               "seconds": round(time.perf_counter() - started, 1),
               "loss_first": losses[0], "loss_last": float(np.mean(losses[-20:])),
               "retrieval_before": before, "retrieval_after": after}
    log.info("stand-in CLIP: %s", summary)
    return summary


def retrieval_accuracy(scorer: ClipScorer, pairs: list[tuple[Image.Image, str]]) -> float:
    """Fraction of images whose own caption is the most similar of all the pairs' captions."""
    image_emb, text_emb = scorer.embed([im for im, _ in pairs], [c for _, c in pairs])
    best = (image_emb @ text_emb.T).argmax(-1)
    return float((best == torch.arange(len(pairs))).float().mean())
