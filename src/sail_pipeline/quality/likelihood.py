"""Image-conditioned likelihood: how much seeing the image helps a reference VLM predict a caption.

The signal is a caption's mean log-likelihood per token given its image, minus the same given a
blank (uniform grey) image of the same size. A caption that describes its image gains from
seeing it; one that ignores the image, or describes another one, gains nothing or loses.
The language prior (fluent but generic text) cancels out in the difference.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sail_pipeline.modeling.inference import load_generator
from sail_pipeline.schema.captioning import CAPTION_PROMPT

LIKELIHOOD_VERSION = "icl-1"
BLANK_GREY = 128


class CaptionLikelihood:
    """Batched log-likelihoods of captions under a VLM checkpoint of this project."""

    def __init__(self, model_dir: str | Path, prompt: str = CAPTION_PROMPT,
                 batch_size: int = 64, max_caption_tokens: int = 96, device: str = "cpu"
                 ) -> None:
        generator = load_generator(model_dir, device=device, batch_size=batch_size)
        self.model, self.processor = generator.model, generator.processor
        self.tokenizer = generator.tokenizer
        self.prompt, self.batch_size, self.device = prompt, batch_size, device
        self.max_caption_tokens = max_caption_tokens

    @torch.no_grad()
    def mean_loglikelihood(self, images: list[Image.Image], captions: list[str]) -> np.ndarray:
        """Mean log-probability per caption token after the caption prompt and its image."""
        out = np.empty(len(captions))
        for start in range(0, len(captions), self.batch_size):
            stop = start + self.batch_size
            out[start:stop] = self._batch(images[start:stop], captions[start:stop])
        return out

    def _batch(self, images: list[Image.Image], captions: list[str]) -> np.ndarray:
        rows, spans, pixels = [], [], []
        for image, caption in zip(images, captions, strict=True):
            prompt, pixel_values = self.processor.prompt_ids(self.prompt, image)
            target = self.tokenizer.encode(caption)[:self.max_caption_tokens]
            rows.append(prompt + target)
            spans.append((len(prompt), len(prompt) + len(target)))
            pixels.append(pixel_values)
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=self.device)
        attention = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows],
                                 device=self.device)
        logits = self.model(input_ids=input_ids, attention_mask=attention,
                            pixel_values=torch.cat(pixels).to(self.device, self.model.dtype)
                            ).logits.float()
        # Position t predicts token t + 1: the caption's tokens are predicted from start - 1.
        logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
        chosen = logprobs.gather(2, input_ids[:, 1:, None])[..., 0]
        positions = torch.arange(width - 1, device=self.device)[None, :]
        starts = torch.tensor([s for s, _ in spans], device=self.device)[:, None]
        stops = torch.tensor([e for _, e in spans], device=self.device)[:, None]
        inside = (positions >= starts - 1) & (positions < stops - 1)
        counts = inside.sum(1).clamp(min=1)
        return ((chosen * inside).sum(1) / counts).cpu().numpy()

    def image_gain(self, images: list[Image.Image], captions: list[str]
                   ) -> tuple[np.ndarray, np.ndarray]:
        """(log-likelihood with the image, gain over a blank image) per caption."""
        blanks = [Image.new("RGB", im.size, (BLANK_GREY,) * 3) for im in images]
        with_image = self.mean_loglikelihood(images, captions)
        blank = self.mean_loglikelihood(blanks, captions)
        return with_image, with_image - blank
