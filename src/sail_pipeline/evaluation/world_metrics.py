"""How a world-benchmark row is shown to an lmms-eval model and how its reply is scored.

The generated task folder's ``utils.py`` re-exports these functions so the task YAML can
reference them with lmms-eval's ``!function utils.<name>`` convention.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from PIL import Image

# Replies longer than this are treated as rambling: only their first word counts, so a
# model cannot score by reciting a sentence that happens to contain the answer.
MAX_SHORT_REPLY_WORDS = 8

_NON_WORD = re.compile(r"[^\w\s]+")


def normalise_answer(text: str) -> str:
    """Lowercase, turn punctuation into spaces and collapse whitespace."""
    return " ".join(_NON_WORD.sub(" ", text.lower()).split())


def parse_choices(raw: str | Sequence[str] | None) -> list[str]:
    """Decode the benchmark's ``choices`` column (a JSON list) into normalised answers."""
    if raw is None:
        return []
    values = json.loads(raw) if isinstance(raw, str) else list(raw)
    return [normalise_answer(str(value)) for value in values]


def _contains_phrase(words: Sequence[str], phrase: Sequence[str]) -> bool:
    width = len(phrase)
    return any(list(words[i : i + width]) == list(phrase) for i in range(len(words) - width + 1))


def is_correct(prediction: str, answer: str, choices: Sequence[str] = ()) -> bool:
    """Whether ``prediction`` gives ``answer``.

    Exact match of the first word after normalisation, or, for a short reply, the answer
    appearing as a whole word. In the second case a reply that also names another
    choice ("red or blue") is a hedge and scores as wrong.
    """
    words = normalise_answer(prediction).split()
    target = normalise_answer(answer).split()
    if not words or not target:
        return False
    if words[: len(target)] == target:
        return True
    if len(words) > MAX_SHORT_REPLY_WORDS or not _contains_phrase(words, target):
        return False
    rivals = {normalise_answer(choice) for choice in choices} - {" ".join(target), ""}
    return not any(_contains_phrase(words, rival.split()) for rival in rivals)


def doc_to_visual(doc: Mapping[str, Any]) -> list[Image.Image]:
    """Decode the row's PNG bytes into the single RGB image lmms-eval hands the model."""
    raw = doc["image"]
    # datasets may surface a binary column as {"bytes": ...} when it carries image metadata.
    data = raw["bytes"] if isinstance(raw, Mapping) else raw
    with Image.open(io.BytesIO(data)) as image:
        return [image.convert("RGB")]


def doc_to_text(
    doc: Mapping[str, Any], lmms_eval_specific_kwargs: Mapping[str, str] | None = None
) -> str:
    """The question, wrapped in any per-model pre/post prompt lmms-eval configured."""
    kwargs = lmms_eval_specific_kwargs or {}
    return f"{kwargs.get('pre_prompt', '')}{doc['question']}{kwargs.get('post_prompt', '')}"


def doc_to_target(doc: Mapping[str, Any]) -> str:
    return str(doc["answer"])


def process_results(doc: Mapping[str, Any], results: Sequence[str]) -> dict[str, float]:
    """lmms-eval per-document hook: ``accuracy`` is 1.0 when the first reply is right."""
    prediction = results[0] if results else ""
    correct = is_correct(prediction, doc_to_target(doc), parse_choices(doc.get("choices")))
    return {"accuracy": 1.0 if correct else 0.0}
