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

# icl-2: caption positions only, length-sorted batches (same values to float precision)
LIKELIHOOD_VERSION = "icl-2"
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
        """Mean log-probability per caption token after the caption prompt and its image.

        Batches take captions of similar length (sorted by tile count and caption tokens):
        alt-texts of a few words and recaptions of a hundred tokens no longer share a batch
        padded to the longest. Values do not depend on the batching.
        """
        # Truncated by the tokenizer: the caption is cut at max_caption_tokens anyway, and a
        # 10,000-character caption tokenized whole only to be cut warned of "indexing errors".
        targets = [ids[:self.max_caption_tokens] for ids in self.tokenizer(
            list(captions), truncation=True, max_length=self.max_caption_tokens)["input_ids"]]
        tiles = [self.processor.num_tiles(*image.size) for image in images]
        order = sorted(range(len(captions)), key=lambda i: (tiles[i], len(targets[i])))
        out = np.empty(len(captions))
        for start in range(0, len(order), self.batch_size):
            picked = order[start:start + self.batch_size]
            out[picked] = self._batch([images[i] for i in picked], [targets[i] for i in picked])
        return out

    def _batch(self, images: list[Image.Image], targets: list[list[int]]) -> np.ndarray:
        rows, starts, pixels = [], [], []
        for image, target in zip(images, targets, strict=True):
            prompt, pixel_values = self.processor.prompt_ids(self.prompt, image)
            rows.append(prompt + target)
            starts.append(len(prompt))
            pixels.append(pixel_values)
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=self.device)
        attention = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows],
                                 device=self.device)
        hidden = self.model.model(input_ids=input_ids, attention_mask=attention,
                                  pixel_values=torch.cat(pixels).to(self.device,
                                                                    self.model.dtype)
                                  ).last_hidden_state
        # Position t predicts token t + 1: the caption's tokens are predicted from its start
        # - 1 on. Only those positions are projected onto the vocabulary.
        positions = torch.arange(width - 1, device=self.device)[None, :]
        first = torch.tensor(starts, device=self.device)[:, None] - 1
        last = torch.tensor([len(r) - 1 for r in rows], device=self.device)[:, None]
        inside = (positions >= first) & (positions < last)
        logprobs = torch.log_softmax(self.model.lm_head(hidden[:, :-1][inside]).float(), dim=-1)
        chosen = logprobs.gather(1, input_ids[:, 1:][inside][:, None])[:, 0]
        row_of = torch.arange(len(rows), device=self.device)[:, None].expand_as(inside)[inside]
        sums = torch.zeros(len(rows), device=self.device).index_add_(0, row_of, chosen)
        return (sums / inside.sum(1).clamp(min=1)).cpu().numpy()

    def image_gain(self, images: list[Image.Image], captions: list[str]
                   ) -> tuple[np.ndarray, np.ndarray]:
        """(log-likelihood with the image, gain over a blank image) per caption."""
        blanks = [Image.new("RGB", im.size, (BLANK_GREY,) * 3) for im in images]
        with_image = self.mean_loglikelihood(images, captions)
        blank = self.mean_loglikelihood(blanks, captions)
        return with_image, with_image - blank
