"""Batched greedy generation and log-likelihoods from a saved checkpoint (evaluation, demos)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from PIL import Image
from transformers import PreTrainedModel

from sail_pipeline.modeling.presets import load_vlm
from sail_pipeline.modeling.processor import VLProcessor


class VLMGenerator:
    def __init__(self, model: PreTrainedModel, processor: VLProcessor,
                 device: str = "cpu", batch_size: int = 16) -> None:
        self.model = model.to(device).eval()
        self.processor = processor
        self.device = device
        self.batch_size = batch_size
        self.tokenizer = processor.tokenizer

    def _encode_prompts(self, images: list[Image.Image | None], prompts: list[str]):
        encoded = [self.processor.prompt_ids(p, im) for p, im in zip(prompts, images, strict=True)]
        pixels = [pv for _, pv in encoded if pv is not None]
        return [ids for ids, _ in encoded], (torch.cat(pixels) if pixels else None)

    @torch.no_grad()
    def generate(self, images: list[Image.Image | None], prompts: list[str],
                 max_new_tokens: int = 16) -> list[str]:
        """Greedy answers, batch by batch; left padding keeps every prompt's end aligned."""
        answers: list[str] = []
        for start in range(0, len(prompts), self.batch_size):
            ids, pixels = self._encode_prompts(images[start:start + self.batch_size],
                                               prompts[start:start + self.batch_size])
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
            for row in output[:, width:]:
                answers.append(self.tokenizer.decode(row, skip_special_tokens=True).strip())
        return answers

    @torch.no_grad()
    def loglikelihood(self, images: list[Image.Image | None], contexts: list[str],
                      continuations: list[str]) -> list[tuple[float, bool]]:
        """Sum of log-probabilities of each continuation after its prompt, and greediness."""
        results = []
        for image, context, continuation in zip(images, contexts, continuations, strict=True):
            prompt, pixels = self.processor.prompt_ids(context, image)
            target = self.tokenizer.encode(continuation)
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
