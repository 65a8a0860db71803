"""The world's raw tables -> the tables each recipe stage trains on.

Conversation tables share one layout: `id`, `image` (PNG bytes or null), `messages` (JSON list
of role/content turns, `<image>` marking where the image goes). The stand-in backbones get
`lm_text` (`id`, `text`) and `vision_attributes` (`id`, `image`, `label_<attribute>`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import lru_cache

import numpy as np
import pandas as pd

from sail_pipeline.modeling.tokenizer import CHAT_TEMPLATE, IMAGE_PLACEHOLDER
from sail_pipeline.schema import CAPTION_PROMPT, SFT_STAGES, STAGES, StageSizeParams
from sail_pipeline.world import POSITIONS, Scene, WorldParams
from sail_pipeline.world.captions import caption_facts, fact_vocabulary

CONVERSATION_COLUMNS = ["id", "image", "messages"]
CAPTION_PROMPTS = (
    CAPTION_PROMPT,
    "Write a detailed caption for this picture.",
    "What does this image show? Describe it fully.",
)


def turns(question: str, answer: str, with_image: bool) -> list[dict]:
    prefix = f"{IMAGE_PLACEHOLDER}\n" if with_image else ""
    return [{"role": "user", "content": prefix + question},
            {"role": "assistant", "content": answer}]


def rows(ids, images, messages) -> pd.DataFrame:
    return pd.DataFrame({"id": list(ids), "image": list(images),
                         "messages": [json.dumps(m) for m in messages]},
                        columns=CONVERSATION_COLUMNS)


def _cap(table: pd.DataFrame, limit: int | None, seed: int) -> pd.DataFrame:
    if limit is None or len(table) <= limit:
        return table.reset_index(drop=True)
    return table.sample(n=limit, random_state=seed).reset_index(drop=True)


def caption_table(scenes: pd.DataFrame, caption_column: str, seed: int) -> pd.DataFrame:
    """Image -> caption pairs (Pretrain-Alignment); the caption column is the recaption."""
    rng = np.random.default_rng(seed)
    prompts = rng.integers(0, len(CAPTION_PROMPTS), len(scenes))
    return rows(
        scenes["id"] + "-caption",
        scenes["image"],
        [turns(CAPTION_PROMPTS[p], c, True) for p, c in zip(prompts, scenes[caption_column],
                                                                strict=True)],
    )


def vqa_table(scenes: pd.DataFrame, vqa: pd.DataFrame, types: list[str] | None = None
              ) -> pd.DataFrame:
    """One question, one short answer per row (SFT-Knowledge; OCR rows for Pretrain-Advance)."""
    picked = vqa if types is None else vqa[vqa["question_type"].isin(types)]
    images = scenes.set_index("id")["image"]
    return rows(picked["id"], images.loc[picked["scene_id"]].to_numpy(),
                 [turns(q, a, True) for q, a in zip(picked["question"], picked["answer"],
                                                      strict=True)])


def conversation_table(scenes: pd.DataFrame, conversations: pd.DataFrame) -> pd.DataFrame:
    images = scenes.set_index("id")["image"]
    return rows(conversations["id"], images.loc[conversations["scene_id"]].to_numpy(),
                 [json.loads(m) for m in conversations["messages"]])


def hard_table(scenes: pd.DataFrame, vqa: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Every question of a scene in one multi-turn conversation: the hardest, most complex set."""
    images = scenes.set_index("id")["image"]
    rng = np.random.default_rng(seed)
    ids, pictures, messages = [], [], []
    for scene_id, group in vqa.groupby("scene_id", sort=True):
        order = rng.permutation(len(group))
        conversation: list[dict] = []
        for k, i in enumerate(order):
            row = group.iloc[int(i)]
            conversation += turns(row["question"], row["answer"], with_image=k == 0)
        ids.append(f"{scene_id}-all")
        pictures.append(images.loc[scene_id])
        messages.append(conversation)
    return rows(ids, pictures, messages)


def _one_per_scene(table: pd.DataFrame, seed: int) -> pd.DataFrame:
    shuffled = table.sample(frac=1.0, random_state=seed)
    return shuffled.drop_duplicates("scene_id").sort_index()


def stage_tables(scenes: pd.DataFrame, vqa: pd.DataFrame, conversations: pd.DataFrame,
                 sizes: StageSizeParams, seed: int, advance_ocr: bool = True,
                 probes: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """Training tables of the five stages from one split of the world.

    The two pretraining stages caption disjoint halves of the scenes: a second pass over the
    same captions taught the projector nothing new and only raised the held-out loss.
    SFT-Knowledge, the broad stage, also gets the yes/no and lettered-choice ``probes``;
    SFT-Preference replays one probe per scene beside its conversations, as without it the
    last stage forgot the formats (MME score 0.45 after Knowledge fell to 0.25).
    """
    advance = pd.concat([
        caption_table(scenes.iloc[1::2], "reference_caption", seed + 1),
        *([vqa_table(scenes, vqa, ["ocr"])] if advance_ocr else []),
    ], ignore_index=True)
    knowledge = pd.concat([vqa_table(scenes, vqa),
                           *([vqa_table(scenes, probes)] if probes is not None else [])],
                          ignore_index=True)
    tables = {
        "alignment": caption_table(scenes.iloc[0::2], "reference_caption", seed),
        "advance": advance,
        "knowledge": knowledge,
        "instruction": conversation_table(scenes, conversations),
        "preference": pd.concat([hard_table(scenes, vqa, seed),
                                 *([vqa_table(scenes, _one_per_scene(probes, seed))]
                                   if probes is not None else [])], ignore_index=True),
    }
    # Shuffled once here so that the first rows of an eval table are a fair sample of it.
    return {name: _cap(table.sample(frac=1.0, random_state=seed), getattr(sizes, name, None),
                       seed)
            for name, table in tables.items()}


BENCHMARK_COLUMNS = ["id", "scene_id", "question_type", "category", "group_id", "question",
                     "answer", "choices", "facts", "image"]
CAPTION_BENCHMARK_PROMPT = CAPTION_PROMPTS[0]


def _caption_rows(scenes: pd.DataFrame, world: WorldParams) -> pd.DataFrame:
    vocabulary = fact_vocabulary(world.ocr_words)
    truth = [Scene.from_dict(json.loads(g)) for g in scenes["ground_truth"]]
    return pd.DataFrame({
        "id": scenes["id"] + "-caption",
        "scene_id": scenes["id"],
        "question_type": "caption",
        "category": "caption",
        "group_id": scenes["id"] + "-caption",
        "question": CAPTION_BENCHMARK_PROMPT,
        "answer": scenes["reference_caption"],
        "choices": "[]",
        "facts": [json.dumps({"facts": caption_facts(t), "vocabulary": vocabulary})
                  for t in truth],
    })


def benchmark_table(scenes: pd.DataFrame, vqa: pd.DataFrame, probes: pd.DataFrame,
                    world: WorldParams) -> pd.DataFrame:
    """The held-out scenes' questions with their images, as the evaluation tasks read them.

    Short answers (one task per question type), the POPE/MME/MMBench probes, and one
    detailed-caption request per scene whose ``facts`` hold the ground truth it is scored by.
    """
    short = vqa[["id", "scene_id", "question_type", "question", "answer", "choices"]].assign(
        category=vqa["question_type"], group_id=vqa["id"], facts="")
    formatted = probes.assign(facts="")
    table = pd.concat([short, formatted, _caption_rows(scenes, world)], ignore_index=True)
    images = scenes.set_index("id")["image"]
    table["image"] = images.loc[table["scene_id"]].to_numpy()
    return table[BENCHMARK_COLUMNS].reset_index(drop=True)


@lru_cache(maxsize=1)
def _plain_template():
    from jinja2 import Environment

    return Environment().from_string(CHAT_TEMPLATE.replace("{%- generation -%}", "")
                                     .replace("{%- endgeneration -%}", ""))


def _render_plain(messages: list[dict]) -> str:
    """ChatML text of a conversation without image tokens, for the stand-in LLM."""
    template = _plain_template()
    cleaned = [{"role": m["role"],
                "content": m["content"].replace(f"{IMAGE_PLACEHOLDER}\n", "")} for m in messages]
    return template.render(messages=cleaned, add_generation_prompt=False)


def text_corpus(scenes: pd.DataFrame, vqa: pd.DataFrame, conversations: pd.DataFrame,
                probes: pd.DataFrame | None = None) -> Iterator[str]:
    """All the world's text: what the tokenizer and the stand-in LLM learn from."""
    yield from scenes["reference_caption"]
    questions = vqa if probes is None else pd.concat([vqa, probes], ignore_index=True)
    for q, a in zip(questions["question"], questions["answer"], strict=True):
        yield _render_plain(turns(q, a, False))
    for m in conversations["messages"]:
        yield _render_plain(json.loads(m))
    for caption, prompt in zip(scenes["reference_caption"], range(len(scenes)), strict=True):
        yield _render_plain(turns(CAPTION_PROMPTS[prompt % len(CAPTION_PROMPTS)], caption, False))


def lm_text_table(scenes: pd.DataFrame, vqa: pd.DataFrame, conversations: pd.DataFrame,
                  probes: pd.DataFrame | None = None) -> pd.DataFrame:
    texts = list(text_corpus(scenes, vqa, conversations, probes))
    return pd.DataFrame({"id": [f"text-{i:07d}" for i in range(len(texts))], "text": texts})


def vision_attribute_table(scenes: pd.DataFrame, world: WorldParams) -> pd.DataFrame:
    """Integer labels of what a scene shows: what the stand-in vision tower learns to see.

    0 means "none" for the word and the position, so every scene has every label.
    """
    truth = [Scene.from_dict(json.loads(g)) for g in scenes["ground_truth"]]
    return pd.DataFrame({
        "id": scenes["id"],
        "image": scenes["image"],
        "label_count": [t.count - world.min_objects for t in truth],
        "label_colour": [world.colours.index(t.colour) for t in truth],
        "label_shape": [world.shape_kinds.index(t.kind) for t in truth],
        "label_word": [0 if t.text is None else 1 + world.ocr_words.index(t.text) for t in truth],
        "label_position": [0 if t.position is None else 1 + POSITIONS.index(t.position)
                           for t in truth],
    })


# Every stage's table but the captioner's (the captioning pipeline makes that one), in the
# stage registry's order.
TRAINING_TABLES = tuple(dict.fromkeys(spec.table for spec in STAGES.values()
                                      if spec.group != "captioning"))
# Pretrain-Alignment and -Advance train on the quality-filtered caption pool (`quality`
# pipeline); the data pipeline writes the rest, and their held-out tables, from the world.
POOL_TABLES = ("alignment_train", "advance_train")
# The SFT stages train on mixtures of candidate sets (`sft` pipeline, `sft.mixtures`), and so
# does the one-stage `all_in_one` schedule.
ALL_IN_ONE_TABLE = "all_in_one"
MIXTURE_TABLES = tuple(f"{name}_{split}"
                       for name in (*(STAGES[s].table for s in SFT_STAGES), ALL_IN_ONE_TABLE)
                       for split in ("train", "eval"))
TABLE_NAMES = tuple(f"{name}_{split}" for name in TRAINING_TABLES for split in ("train", "eval")
                    if f"{name}_{split}" not in (*POOL_TABLES, *MIXTURE_TABLES)
                    ) + ("benchmark", "advance_ocr_train")


def pool_caption_tables(pool: pd.DataFrame, ocr: pd.DataFrame, sizes: StageSizeParams,
                        seed: int) -> dict[str, pd.DataFrame]:
    """Alignment and Advance from the kept pool (`id`, `image`, `caption`), as `stage_tables`
    builds them: disjoint halves of the images, Advance with the OCR rows if any."""
    pool = pool.sort_values("id", kind="stable").reset_index(drop=True)
    tables = {
        "alignment": caption_table(pool.iloc[0::2], "caption", seed),
        "advance": pd.concat([caption_table(pool.iloc[1::2], "caption", seed + 1), ocr],
                             ignore_index=True),
    }
    return {f"{name}_train": _cap(table.sample(frac=1.0, random_state=seed),
                                  getattr(sizes, name), seed)
            for name, table in tables.items()}
