"""Batched greedy generation and log-likelihoods from a saved checkpoint (evaluation, demos)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from transformers import PreTrainedModel

from sail_pipeline.modeling.presets import load_vlm
from sail_pipeline.modeling.processor import VLProcessor
from sail_pipeline.text_limits import cannot_fit, longest_token_chars, too_long_reason


@dataclass(frozen=True)
class PromptRejected:
    """A prompt that was not run: it does not fit in the model's context (`reason` says why)."""

    reason: str


def context_length(model: PreTrainedModel, tokenizer) -> int:
    """The most tokens the model reads: its position table, or the tokenizer's limit if
    smaller (the LLM of a VLM keeps its own config under `text_config`)."""
    config = getattr(model.config, "text_config", None) or model.config
    positions = int(getattr(config, "max_position_embeddings", 0) or 0)
    limits = [n for n in (positions, getattr(tokenizer, "model_max_length", None))
              if isinstance(n, int) and 0 < n < 10**9]
    return min(limits) if limits else 2048


class VLMGenerator:
    def __init__(self, model: PreTrainedModel, processor: VLProcessor,
                 device: str = "cpu", batch_size: int = 16) -> None:
        self.model = model.to(device).eval()
        self.processor = processor
        self.device = device
        self.batch_size = batch_size
        self.tokenizer = processor.tokenizer
        self.context_length = context_length(self.model, self.tokenizer)
        self._longest_token = longest_token_chars(self.tokenizer.get_vocab())

    def _encode_prompts(self, images: list[Image.Image | None], prompts: list[str],
                        budget: int):
        """(ids per prompt, or its rejection; the pixels of the prompts that fit)."""
        encoded: list[list[int] | PromptRejected] = []
        pixels = []
        for prompt, image in zip(prompts, images, strict=True):
            if cannot_fit(len(prompt), budget, self._longest_token):
                # Tokenizing a runaway text would itself cost memory; it cannot fit anyway.
                encoded.append(PromptRejected(too_long_reason(None, budget, chars=len(prompt))))
                continue
            ids, pixel_values = self.processor.prompt_ids(prompt, image)
            if len(ids) > budget:
                encoded.append(PromptRejected(too_long_reason(len(ids), budget)))
                continue
            encoded.append(ids)
            if pixel_values is not None:
                pixels.append(pixel_values)
        return encoded, (torch.cat(pixels) if pixels else None)

    def prompt_budget(self, max_new_tokens: int) -> int:
        """Prompt tokens that leave room for `max_new_tokens` in the context."""
        return max(1, self.context_length - max_new_tokens)

    @torch.no_grad()
    def generate(self, images: list[Image.Image | None], prompts: list[str],
                 max_new_tokens: int = 16) -> list[str | PromptRejected]:
        """Greedy answers, batch by batch; left padding keeps every prompt's end aligned.

        A prompt longer than the context (less `max_new_tokens`) is not run: its answer is a
        `PromptRejected` with the reason, and the rest of its batch runs as usual.
        """
        answers: list[str | PromptRejected] = []
        budget = self.prompt_budget(max_new_tokens)
        for start in range(0, len(prompts), self.batch_size):
            encoded, pixels = self._encode_prompts(images[start:start + self.batch_size],
                                                   prompts[start:start + self.batch_size],
                                                   budget)
            ids = [x for x in encoded if not isinstance(x, PromptRejected)]
            if not ids:
                answers.extend(encoded)  # type: ignore[arg-type]
                continue
            width = max(len(x) for x in ids)
            pad = self.tokenizer.pad_token_id
            input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids])
            attention = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids])
            kwargs = {}
            if pixels is not None:
                kwargs["pixel_values"] = pixels.to(self.device, self.model.dtype)
            output = self.model.generate(
                input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device),
                max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad,
                eos_token_id=self.tokenizer.eos_token_id, **kwargs,
            )
            texts = iter(self.tokenizer.decode(row, skip_special_tokens=True).strip()
                         for row in output[:, width:])
            answers.extend(x if isinstance(x, PromptRejected) else next(texts) for x in encoded)
        return answers

    @torch.no_grad()
    def loglikelihood(self, images: list[Image.Image | None], contexts: list[str],
                      continuations: list[str]) -> list[tuple[float, bool] | PromptRejected]:
        """Sum of log-probabilities of each continuation after its prompt, and greediness.

        A context and continuation longer than the context length together are not scored:
        a `PromptRejected` takes their place.
        """
        results: list[tuple[float, bool] | PromptRejected] = []
        budget = self.context_length
        for image, context, continuation in zip(images, contexts, continuations, strict=True):
            text = context + continuation
            if cannot_fit(len(text), budget, self._longest_token):
                results.append(PromptRejected(too_long_reason(None, budget, chars=len(text))))
                continue
            prompt, pixels = self.processor.prompt_ids(context, image)
            target = self.tokenizer.encode(continuation)
            if len(prompt) + len(target) > budget:
                results.append(PromptRejected(too_long_reason(len(prompt) + len(target),
                                                              budget)))
                continue
            input_ids = torch.tensor([prompt + target], device=self.device)
            kwargs = {}
            if pixels is not None:
                kwargs["pixel_values"] = pixels.to(self.device, self.model.dtype)
            logits = self.model(input_ids=input_ids, **kwargs).logits[0, len(prompt) - 1:-1]
            logprobs = torch.log_softmax(logits.float(), dim=-1)
            wanted = torch.tensor(target, device=self.device)
            total = float(logprobs.gather(1, wanted[:, None]).sum())
            greedy = bool((logprobs.argmax(-1) == wanted).all())
            results.append((total, greedy))
        return results


def load_generator(model_dir: str | os.PathLike, device: str = "cpu",
                   batch_size: int = 16) -> VLMGenerator:
    path = Path(model_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint directory {path} does not exist")
    processor = VLProcessor.from_pretrained(path)
    model = load_vlm(path, dtype=torch.float32)
    return VLMGenerator(model, processor, device=device, batch_size=batch_size)
