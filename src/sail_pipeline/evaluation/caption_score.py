"""Score any caption column of the world's scenes against their ground truth.

The same fact recall / precision as the ``world_caption`` task, without a model: how good
the alt-text, the reference captions or a recaptioner's output are as captions.

    sail-caption-score --column alt_text   (sail_pipeline.cli.caption_score)
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pandas as pd

from sail_pipeline.evaluation import world_metrics as wm
from sail_pipeline.evaluation.tasks import task_kind
from sail_pipeline.world import Scene, WorldParams
from sail_pipeline.world.captions import caption_facts, fact_vocabulary


def score_captions(scenes: pd.DataFrame, captions: Sequence[str],
                   ocr_words: Sequence[str] | None = None) -> dict[str, float]:
    """F1 (``score``) and object / attribute recall and precision of ``captions``.

    ``scenes`` needs the ``ground_truth`` column; ``captions`` are in the same order.
    """
    if len(captions) != len(scenes):
        raise ValueError(f"{len(captions)} captions for {len(scenes)} scenes")
    truths = [Scene.from_dict(json.loads(raw)) for raw in scenes["ground_truth"]]
    if ocr_words is None:
        # The words these scenes show, and the default ones: a world generated with other
        # words still has every written word it can show counted.
        ocr_words = sorted({t.text for t in truths if t.text} | set(WorldParams().ocr_words))
    vocabulary = fact_vocabulary(list(ocr_words))
    counts = [wm.caption_counts(str(caption), caption_facts(truth), vocabulary)
              for caption, truth in zip(captions, truths, strict=True)]
    # The world_caption task's own metrics and aggregations, so the two can never disagree.
    return {metric: getattr(wm, aggregation)(counts)
            for metric, aggregation in task_kind("caption").metrics.items()}
