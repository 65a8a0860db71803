"""How a world-benchmark row is shown to an lmms-eval model and how its reply is scored.

The generated task folder's ``utils.py`` re-exports these functions so the task YAML can
reference them with lmms-eval's ``!function utils.<name>`` convention. Every task reports a
``score`` in [0, 1] (the suite averages it) beside metrics of its own:

- short answers: ``score`` = accuracy;
- ``caption``: ``score`` = F1 of fact recall and precision, with object (kind, count) and
  attribute (colour, position, background, word) recall and precision beside it;
- ``pope``: ``score`` = F1 with "yes" as the positive class, as POPE reports it, beside
  accuracy, precision, recall and the yes-ratio;
- ``mme``: ``score`` = MME's per-category ``acc + acc+`` (out of 200) averaged over
  categories and divided by 200; ``total`` is MME's own sum over categories;
- ``mmbench``: ``score`` = CircularEval accuracy (every rotation of a question right),
  beside the plain per-rotation accuracy.
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


def _reply(results: Sequence[str]) -> str:
    return results[0] if results else ""


def process_results(doc: Mapping[str, Any], results: Sequence[str]) -> dict[str, float]:
    """Short answers: ``score`` is 1.0 when the first reply gives the answer."""
    correct = is_correct(_reply(results), doc_to_target(doc), parse_choices(doc.get("choices")))
    return {"score": 1.0 if correct else 0.0}


# --- yes/no: POPE and MME ------------------------------------------------------------------


def parse_yes_no(prediction: str) -> str:
    """``yes`` or ``no`` when the reply starts with it, or is short and names only it.

    Anything else, a hedge ("yes or no") included, is "other": wrong for either answer and
    never a silent "no".
    """
    words = normalise_answer(prediction).split()
    named = {w for w in words if w in ("yes", "no")}
    if len(named) != 1:
        return "other"
    if words[0] in named or len(words) <= MAX_SHORT_REPLY_WORDS:
        return named.pop()
    return "other"


POPE_METRICS: tuple[str, ...] = ("score", "accuracy", "precision", "recall", "yes_ratio")


def process_pope(doc: Mapping[str, Any], results: Sequence[str]) -> dict[str, dict[str, str]]:
    record = {"answer": doc_to_target(doc), "prediction": parse_yes_no(_reply(results))}
    return dict.fromkeys(POPE_METRICS, record)


def pope_confusion(items: Sequence[Mapping[str, str]]) -> dict[str, float]:
    """Accuracy, precision, recall, F1 ("yes" positive) and the share of "yes" replies."""
    pairs = [(item["answer"], item["prediction"]) for item in items]
    tp = sum(a == "yes" and p == "yes" for a, p in pairs)
    fp = sum(a == "no" and p == "yes" for a, p in pairs)
    fn = sum(a == "yes" and p != "yes" for a, p in pairs)
    correct = sum(a == p for a, p in pairs)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    n = max(len(pairs), 1)
    return {"score": f1, "accuracy": correct / n, "precision": precision, "recall": recall,
            "yes_ratio": (tp + fp) / n}


def pope_f1(items: Sequence[Mapping[str, str]]) -> float:
    return pope_confusion(items)["score"]


def pope_accuracy(items: Sequence[Mapping[str, str]]) -> float:
    return pope_confusion(items)["accuracy"]


def pope_precision(items: Sequence[Mapping[str, str]]) -> float:
    return pope_confusion(items)["precision"]


def pope_recall(items: Sequence[Mapping[str, str]]) -> float:
    return pope_confusion(items)["recall"]


def pope_yes_ratio(items: Sequence[Mapping[str, str]]) -> float:
    return pope_confusion(items)["yes_ratio"]


MME_METRICS: tuple[str, ...] = ("score", "total", "acc", "acc_plus")


def process_mme(doc: Mapping[str, Any], results: Sequence[str]) -> dict[str, dict[str, Any]]:
    record = {"category": str(doc["category"]), "group": str(doc["group_id"]),
              "correct": parse_yes_no(_reply(results)) == doc_to_target(doc)}
    return dict.fromkeys(MME_METRICS, record)


def mme_categories(items: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """MME per category: ``acc`` per question, ``acc_plus`` per image (both answers right)."""
    by_category: dict[str, dict[str, list[bool]]] = {}
    for item in items:
        groups = by_category.setdefault(item["category"], {})
        groups.setdefault(item["group"], []).append(bool(item["correct"]))
    table = {}
    for category, groups in sorted(by_category.items()):
        answers = [c for group in groups.values() for c in group]
        table[category] = {"acc": sum(answers) / len(answers),
                           "acc_plus": sum(all(g) for g in groups.values()) / len(groups)}
    return table


def mme_score(items: Sequence[Mapping[str, Any]]) -> float:
    table = mme_categories(items)
    return sum((c["acc"] + c["acc_plus"]) / 2 for c in table.values()) / max(len(table), 1)


def mme_total(items: Sequence[Mapping[str, Any]]) -> float:
    """MME's own number: the sum over categories of (acc + acc+) x 100, 200 per category."""
    return sum(100 * (c["acc"] + c["acc_plus"]) for c in mme_categories(items).values())


def item_accuracy(items: Sequence[Mapping[str, Any]]) -> float:
    """Share of rows answered right."""
    return sum(bool(item["correct"]) for item in items) / max(len(items), 1)


def group_accuracy(items: Sequence[Mapping[str, Any]]) -> float:
    """Share of groups (an MME pair, an MMBench question's rotations) answered right in full."""
    groups: dict[str, list[bool]] = {}
    for item in items:
        groups.setdefault(item["group"], []).append(bool(item["correct"]))
    return sum(all(g) for g in groups.values()) / max(len(groups), 1)


mme_acc = item_accuracy
mme_acc_plus = group_accuracy


# --- lettered multiple choice: MMBench ------------------------------------------------------

_LEADING_LETTER = re.compile(r"^\(?([A-Z])(?:[).:,\s]|$)")
_STANDALONE_CAPITAL = re.compile(r"\b([A-Z])\b")


def parse_letter(prediction: str, options: Sequence[str]) -> str | None:
    """The option a reply picks, or None when it picks none or several.

    A leading letter ("B", "B.", "(B) red") counts unless the reply names another option
    letter too ("A or B"); otherwise, as MMBench also accepts, exactly one option's text.
    """
    letters = [chr(ord("A") + i) for i in range(len(options))]
    stripped = prediction.strip()
    match = _LEADING_LETTER.match(stripped)
    if match and match.group(1) in letters:
        named_letters = set(_STANDALONE_CAPITAL.findall(stripped)) & set(letters)
        return match.group(1) if named_letters == {match.group(1)} else None
    words = normalise_answer(stripped).split()
    if not words or len(words) > MAX_SHORT_REPLY_WORDS:
        return None
    named = [letter for letter, option in zip(letters, options, strict=True)
             if _contains_phrase(words, normalise_answer(option).split())]
    return named[0] if len(named) == 1 else None


MMBENCH_METRICS: tuple[str, ...] = ("score", "accuracy")


def process_mmbench(doc: Mapping[str, Any], results: Sequence[str]) -> dict[str, dict[str, Any]]:
    options = json.loads(doc["choices"]) if isinstance(doc["choices"], str) else doc["choices"]
    picked = parse_letter(_reply(results), [str(o) for o in options])
    record = {"group": str(doc["group_id"]), "correct": picked == doc_to_target(doc)}
    return dict.fromkeys(MMBENCH_METRICS, record)


# MMBench CircularEval: a question counts only if every rotation of it is right.
circular_accuracy = group_accuracy
plain_accuracy = item_accuracy


# --- detailed caption -----------------------------------------------------------------------

OBJECT_FACTS: tuple[str, ...] = ("kind", "count")
CAPTION_METRICS: tuple[str, ...] = ("score", "object_recall", "object_precision",
                                    "attribute_recall", "attribute_precision")


def _forms(fact: str, value: str) -> list[list[str]]:
    forms = [normalise_answer(value).split()]
    if fact == "kind":
        forms.append(normalise_answer(value + "s").split())
    return forms


def caption_mentions(caption: str, vocabulary: Mapping[str, Sequence[str]]
                     ) -> dict[str, set[str]]:
    """Which value of each fact a caption names, as whole words (plural kinds included)."""
    words = normalise_answer(caption).split()
    return {fact: {value for value in values
                   if any(_contains_phrase(words, form) for form in _forms(fact, value))}
            for fact, values in vocabulary.items()}


def caption_counts(caption: str, facts: Mapping[str, str],
                   vocabulary: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Recall and precision counts, for objects and attributes.

    ``*_facts``: ground-truth facts; ``*_hits``: those the caption names right;
    ``*_mentions``: values it names; ``*_correct``: mentions that are true. Naming a
    position for a scene of several shapes, or a word for a scene without one, is a
    mention that is wrong.
    """
    counts = {f"{group}_{key}": 0 for group in ("object", "attribute")
              for key in ("facts", "hits", "mentions", "correct")}
    for fact, named in caption_mentions(caption, vocabulary).items():
        group = "object" if fact in OBJECT_FACTS else "attribute"
        truth = facts.get(fact)
        counts[f"{group}_mentions"] += len(named)
        counts[f"{group}_correct"] += int(truth in named)
        if truth is not None:
            counts[f"{group}_facts"] += 1
            counts[f"{group}_hits"] += int(truth in named)
    return counts


def process_caption(doc: Mapping[str, Any], results: Sequence[str]) -> dict[str, dict[str, int]]:
    ground = json.loads(doc["facts"])
    counts = caption_counts(_reply(results), ground["facts"], ground["vocabulary"])
    return dict.fromkeys(CAPTION_METRICS, counts)


def _ratio(items: Sequence[Mapping[str, int]], groups: Sequence[str], num: str, den: str
           ) -> float:
    total = sum(item[f"{g}_{den}"] for item in items for g in groups)
    return sum(item[f"{g}_{num}"] for item in items for g in groups) / total if total else 0.0


def caption_f1(items: Sequence[Mapping[str, int]]) -> float:
    """F1 of recall and precision pooled over every fact of every caption."""
    both = ("object", "attribute")
    recall = _ratio(items, both, "hits", "facts")
    precision = _ratio(items, both, "correct", "mentions")
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def object_recall(items: Sequence[Mapping[str, int]]) -> float:
    return _ratio(items, ("object",), "hits", "facts")


def object_precision(items: Sequence[Mapping[str, int]]) -> float:
    return _ratio(items, ("object",), "correct", "mentions")


def attribute_recall(items: Sequence[Mapping[str, int]]) -> float:
    return _ratio(items, ("attribute",), "hits", "facts")


def attribute_precision(items: Sequence[Mapping[str, int]]) -> float:
    return _ratio(items, ("attribute",), "correct", "mentions")
