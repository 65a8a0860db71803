"""The captioner's fine-tuning table: (image, prompt) -> reference caption, two prompts per image.

SAIL-Captioner learns two tasks from the same reference captions: describe the image from
scratch (the caption prompt), and describe it given its web alt-text, which may be wrong
(the recaption prompt). Both prompts come from `build_prompt`, the function recaptioning
uses, so the captioner is trained on exactly the text it is later asked with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sail_pipeline.captioning.recaptioning import build_prompt
from sail_pipeline.schema import RecaptionParams

IMAGE_PLACEHOLDER = "<image>"  # sail_pipeline.modeling.tokenizer's; not imported: that pulls torch
CONVERSATION_COLUMNS = ["id", "image", "messages"]


@dataclass(frozen=True)
class CaptionerTables:
    train: pd.DataFrame
    eval: pd.DataFrame
    # Reference ids that gave no row, by reason: counted, never silently dropped.
    skipped: dict[str, int]


def _conversation(prompt: str, caption: str) -> str:
    return json.dumps([{"role": "user", "content": f"{IMAGE_PLACEHOLDER}\n{prompt}"},
                       {"role": "assistant", "content": caption}])


def captioner_tables(reference: pd.DataFrame, manifest: pd.DataFrame,
                     prompts: RecaptionParams, eval_fraction: float,
                     seed: int) -> CaptionerTables:
    """Training and held-out rows for the captioner from the reference captions.

    ``reference`` has ``id`` and ``caption``; ``manifest`` has ``id``, ``image`` and
    ``alt_text``. Every id gives a caption-prompt row, and a recaption-prompt row when it has
    alt-text. An id's rows stay in one split, so the eval loss is on unseen images.
    """
    missing = {"id", "caption"} - set(reference.columns)
    if missing:
        raise ValueError(f"reference captions lack columns {sorted(missing)}")
    pool = manifest.set_index("id")
    known = reference["id"].isin(pool.index)
    skipped = {"not in the curation manifest": int((~known).sum())}
    reference = reference[known]
    caption_prompt, _, _ = build_prompt(None,
                                        prompts.model_copy(update={"use_alt_text": False}))
    rows: list[dict[str, object]] = []
    for ref_id, caption in zip(reference["id"], reference["caption"], strict=True):
        image, alt_text = pool.at[ref_id, "image"], pool.at[ref_id, "alt_text"]
        rows.append({"id": f"{ref_id}-caption", "ref_id": ref_id, "image": image,
                     "messages": _conversation(caption_prompt, caption)})
        recaption_prompt, kind, _ = build_prompt(alt_text, prompts)
        if kind == "recaption":
            rows.append({"id": f"{ref_id}-recaption", "ref_id": ref_id, "image": image,
                         "messages": _conversation(recaption_prompt, caption)})
    table = pd.DataFrame(rows, columns=[*CONVERSATION_COLUMNS, "ref_id"])
    ids = np.sort(reference["id"].unique())
    rng = np.random.default_rng(seed)
    n_eval = min(len(ids) - 1, max(1, round(eval_fraction * len(ids)))) if len(ids) > 1 else 0
    held_out = set(rng.choice(ids, size=n_eval, replace=False)) if n_eval else set()
    in_eval = table["ref_id"].isin(held_out)
    # Shuffled so that the first rows of the eval table (the trainer's eval sample) are fair.
    train = table[~in_eval].sample(frac=1.0, random_state=seed)
    evaluation = table[in_eval].sample(frac=1.0, random_state=seed)
    return CaptionerTables(train[CONVERSATION_COLUMNS].reset_index(drop=True),
                           evaluation[CONVERSATION_COLUMNS].reset_index(drop=True), skipped)
