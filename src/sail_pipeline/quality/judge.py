"""A judge model's 1-5 scores of a caption: visual-information richness and image-text alignment.

SAIL-Caption2 asks a judge model to score every recaption on two scales and drops those that
score below 3 on either:

- VIR (visual-information richness): how much of the image's visual content the caption
  describes;
- ITA (image-text alignment): how accurately it matches the image, without hallucination.

Judges, behind one `Judge` protocol (one `JudgeOutcome` per item, in order; one item's
failure is that item's reason, never an exception):

- `ApiJudge`: any OpenAI-compatible chat endpoint, asked once per criterion with its rubric;
- `OracleJudge`: the embedded world's ground truth, scoring the facts a caption states.

Every reply, a real judge's or the oracle's, goes through `parse_score`, so a reply such as
"five" or "6/5" is recorded as malformed, never as a score. `JUDGE_VERSION` changes with the
rubrics and the parsing, so stored scores can be cached by it.

    judge = build_judge(JudgeParams(), credentials=None)
    outcomes = judge.judge([JudgeItem(id, png, caption, ground_truth_json)])
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from sail_pipeline import identity
from sail_pipeline.captioning.api_client import ApiCaptioner, CaptionRequest, resolve_api_key
from sail_pipeline.captioning.backends import decode_image
from sail_pipeline.evaluation.world_metrics import caption_counts
from sail_pipeline.schema import WorldParams
from sail_pipeline.schema.quality import JudgeParams
from sail_pipeline.world.captions import caption_facts, fact_vocabulary
from sail_pipeline.world.scene import Scene

CRITERIA: tuple[str, ...] = ("vir", "ita")

_REPLY_RULE = "Reply with a single integer from 1 to 5 and nothing else."

VIR_PROMPT = (
    "You are judging an image caption for visual-information richness: how much of the "
    "visual content of the image it describes. Count only content that is really in the "
    "image; accuracy is judged separately.\n"
    "1: it describes almost nothing in the image (empty, one generic word, or off-topic).\n"
    "2: it names the main subject but hardly anything about it.\n"
    "3: it describes the main objects and some of their attributes, but leaves out "
    "notable content.\n"
    "4: it describes most objects, their number, colour and position, the setting and any "
    "text, missing only minor details.\n"
    "5: it describes all the visible content: every object with its number, colour and "
    "position, the background and any written text.\n"
    'Caption: """{caption}"""\n' + _REPLY_RULE)

ITA_PROMPT = (
    "You are judging an image caption for image-text alignment: how accurately it matches "
    "the image. Judge only whether what it says is true, not how much it says.\n"
    "1: it is unrelated to the image, mostly wrong, or says nothing about the image.\n"
    "2: it has major errors: wrong objects, counts or colours, or invented content.\n"
    "3: it is broadly right but has several inaccuracies.\n"
    "4: it is accurate apart from one minor slip.\n"
    "5: every statement is true of the image; nothing is hallucinated.\n"
    'Caption: """{caption}"""\n' + _REPLY_RULE)

RUBRICS: dict[str, str] = {"vir": VIR_PROMPT, "ita": ITA_PROMPT}

# Bump when what the rubric text does not show changes: `parse_score`'s accepted forms or the
# oracle's maps. The digest follows the rubrics themselves, so an edited prompt cannot be
# forgotten.
_REVISION = 1
_RUBRIC_DIGEST = identity.text_digest("\0".join(RUBRICS[c] for c in CRITERIA), None)
JUDGE_VERSION = f"{_REVISION}-{_RUBRIC_DIGEST[:10]}"

# What a judge told to reply with one integer may still wrap it in: "4", "4.", "Score: 4",
# "4/5" (any case, any whitespace around). Only the digits 1-5; anything else ("five", "6/5",
# "3.5", "4 or 5", "") would be a guess at what the judge meant.
_SCORE = re.compile(r"(?:score\s*:\s*)?([1-5])(?:\s*/\s*5)?\.?", re.IGNORECASE)
_EXCERPT_CHARS = 40


def parse_score(reply: str) -> int | str:
    """The score 1-5 a reply gives, or a "malformed: '<reply>'" reason (at most ~60 chars).

    Accepted, after stripping whitespace and ignoring case: `N`, `N.`, `N/5`, `Score: N`
    and `Score: N/5`, with N one of the digits 1-5.
    """
    match = _SCORE.fullmatch(reply.strip())
    if match:
        return int(match.group(1))
    excerpt = reply if len(reply) <= _EXCERPT_CHARS else reply[:_EXCERPT_CHARS] + "..."
    return f"malformed: {excerpt!r}"


def judge_prompt(criterion: str, caption: str) -> str:
    """The rubric of `criterion` ("vir" or "ita") with the caption under judgement."""
    return RUBRICS[criterion].format(caption=caption)


@dataclass(frozen=True)
class JudgeItem:
    id: str
    image: bytes = field(repr=False)
    caption: str
    ground_truth: str | None = field(default=None, repr=False)  # the scene's JSON (oracle)


@dataclass(frozen=True)
class JudgeOutcome:
    """Per criterion: a score 1-5, or None with the reason (a failure, or a malformed reply).

    `*_reply` keeps what the judge said, None when it was never asked or did not answer.
    """

    id: str
    vir: int | None
    ita: int | None
    vir_reason: str | None = None
    ita_reason: str | None = None
    vir_reply: str | None = None
    ita_reply: str | None = None

    @property
    def ok(self) -> bool:
        return self.vir is not None and self.ita is not None

    @property
    def reason(self) -> str | None:
        """Why the item has no full score (what a quarantine stores); None when it has one.

        The shared reason when both criteria failed alike (an undecodable image, the same
        malformed reply), else the first failed criterion's, as "vir: ..." / "ita: ...".
        """
        if self.vir_reason is not None and self.vir_reason == self.ita_reason:
            return self.vir_reason
        for criterion in CRITERIA:
            reason = getattr(self, f"{criterion}_reason")
            if reason is not None:
                return f"{criterion}: {reason}"
        return None


def scored(item_id: str, replies: Mapping[str, str | None],
           errors: Mapping[str, str | None] | None = None) -> JudgeOutcome:
    """The outcome of one item from the judge's reply per criterion (None: see `errors`)."""
    values: dict[str, Any] = {}
    for criterion in CRITERIA:
        reply = replies.get(criterion)
        if reply is None:
            parsed: int | str = (errors or {}).get(criterion) or "no reply"
        else:
            parsed = parse_score(reply)
        values[criterion] = parsed if isinstance(parsed, int) else None
        values[f"{criterion}_reason"] = None if isinstance(parsed, int) else parsed
        values[f"{criterion}_reply"] = reply
    return JudgeOutcome(item_id, **values)


def failed(item_id: str, reason: str) -> JudgeOutcome:
    """An item no criterion could be judged on."""
    return JudgeOutcome(item_id, None, None, reason, reason)


def _undecodable(image: bytes) -> str | None:
    # Checked by every judge, so the same ids fail whichever judge runs; a server would
    # otherwise answer a 400 per criterion for them.
    decoded = decode_image(image)
    return decoded if isinstance(decoded, str) else None


@runtime_checkable
class Judge(Protocol):
    def judge(self, items: list[JudgeItem]) -> list[JudgeOutcome]:
        """One outcome per item, in the items' order; failures as outcomes, not exceptions."""
        ...


# --- the oracle: the world's ground truth -------------------------------------------------


def vir_from_recall(recall: float) -> int:
    """1 + 4 x recall rounded half up: all facts stated 5, none 1, half of them 3."""
    return 1 + math.floor(4 * recall + 0.5)


def ita_from_precision(precision: float | None) -> int:
    """1 + floor(4 x precision^4); a caption that states no fact says nothing of the image: 1.

    The fourth power because one hallucination is worse than one omission: one wrong
    statement among this world's 3-6 (a wrong colour or count) scores 2, below the filter's
    3; only a caption without a wrong statement scores 5.
    """
    if precision is None:
        return 1
    return 1 + math.floor(4 * precision**4)


class OracleJudge:
    """The world's stand-in for a judge model: scores the facts a caption states.

    VIR maps the share of the scene's facts the caption states right (recall), ITA the share
    of the facts it states that are true (precision), both counted by the `world_caption`
    benchmark's own fact extractor. The scores are replied as text and parsed like any
    judge's reply. `ocr_words`: the world's written words (default: the default world's); a
    caption naming one the scene does not show is a wrong statement.
    """

    name = "oracle"

    def __init__(self, ocr_words: Sequence[str] | None = None) -> None:
        self.ocr_words = list(WorldParams().ocr_words if ocr_words is None else ocr_words)

    def replies(self, caption: str, scene: Scene) -> dict[str, str]:
        """What the oracle replies per criterion: "1" .. "5"."""
        words = set(self.ocr_words) | ({scene.text} if scene.text else set())
        counts = caption_counts(caption, caption_facts(scene), fact_vocabulary(sorted(words)))
        facts = counts["object_facts"] + counts["attribute_facts"]
        hits = counts["object_hits"] + counts["attribute_hits"]
        mentions = counts["object_mentions"] + counts["attribute_mentions"]
        correct = counts["object_correct"] + counts["attribute_correct"]
        recall = hits / facts if facts else 1.0  # every scene has facts; no division by zero
        precision = correct / mentions if mentions else None
        return {"vir": str(vir_from_recall(recall)), "ita": str(ita_from_precision(precision))}

    def judge(self, items: list[JudgeItem]) -> list[JudgeOutcome]:
        outcomes = []
        for item in items:
            scene = _undecodable(item.image) or _scene(item.ground_truth)
            outcomes.append(failed(item.id, scene) if isinstance(scene, str)
                            else scored(item.id, self.replies(item.caption, scene)))
        return outcomes


def _scene(ground_truth: str | None) -> Scene | str:
    """The scene of a ground-truth JSON string, or why there is none."""
    if ground_truth is None:
        return "no ground truth"
    try:
        return Scene.from_dict(json.loads(ground_truth))
    except (ValueError, KeyError, TypeError) as error:
        return f"bad ground truth: {type(error).__name__}: {error}"[:200]


# --- a judge model behind an OpenAI-compatible endpoint -----------------------------------


class ApiJudge:
    """Asks the endpoint each rubric about each item; the reply is the judge's score.

    The item's two requests travel with the whole batch through `ApiCaptioner`
    (concurrency, retries of overloaded servers, failures as reasons). A malformed reply is
    not retried: at temperature 0 the judge would say it again.
    """

    name = "api"

    def __init__(self, captioner: ApiCaptioner) -> None:
        self.captioner = captioner

    def metrics(self) -> dict[str, float]:
        """Request counts, retries and failures, for MLflow."""
        return self.captioner.metrics()

    def judge(self, items: list[JudgeItem]) -> list[JudgeOutcome]:
        problems = {i: _undecodable(item.image) for i, item in enumerate(items)}
        requests = [CaptionRequest(f"{item.id}#{criterion}", item.image,
                                   judge_prompt(criterion, item.caption))
                    for i, item in enumerate(items) if problems[i] is None
                    for criterion in CRITERIA]
        results = iter(self.captioner.run(requests, progress=False))
        outcomes = []
        for i, item in enumerate(items):
            problem = problems[i]
            if problem is not None:
                outcomes.append(failed(item.id, problem))
                continue
            answers = {criterion: next(results) for criterion in CRITERIA}
            outcomes.append(scored(item.id, {c: r.caption for c, r in answers.items()},
                                   {c: r.error for c, r in answers.items()}))
        return outcomes


def build_judge(params: JudgeParams, credentials: Mapping[str, Any] | None = None,
                ocr_words: Sequence[str] | None = None) -> Judge:
    """The judge `params.backend` names.

    `credentials`: the `params.credentials` entry of conf/local/credentials.yml
    (`{"api_key": ...}`; None: the key from `api.api_key_env`, or no key for a local
    server). `ocr_words`: the world's written words, for the oracle.
    """
    if params.backend == "api":
        if params.api is None:  # JudgeParams validates this; a hand-built one may not be
            raise ValueError("the api judge needs `api` settings (base_url, model, ...)")
        return ApiJudge(ApiCaptioner(params.api, resolve_api_key(params.api, credentials)))
    return OracleJudge(ocr_words)
