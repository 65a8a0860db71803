"""Judge scores of caption quality (VIR, ITA): strict reply parsing, the world's oracle judge,
and the API judge against a real local OpenAI-compatible server."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web
from pydantic import ValidationError

from sail_pipeline.captioning.local_server import chat_reply, prompt_of, serve_canned
from sail_pipeline.quality.judge import (
    JUDGE_VERSION,
    ApiJudge,
    Judge,
    JudgeItem,
    JudgeOutcome,
    OracleJudge,
    build_judge,
    ita_from_precision,
    judge_prompt,
    parse_score,
    vir_from_recall,
)
from sail_pipeline.schema import ApiParams
from sail_pipeline.schema.quality import JudgeParams
from sail_pipeline.world import Scene, ShapeInstance, WorldParams, detailed_caption, render
from sail_pipeline.world.render import encode_png

NOT_AN_IMAGE = b"definitely not a picture"


@pytest.mark.parametrize(("reply", "score"), [
    ("4", 4), (" 4\n", 4), ("4.", 4), ("Score: 4", 4), ("score:4", 4), ("SCORE: 2.", 2),
    ("4/5", 4), ("Score: 5/5", 5), ("1", 1), ("5", 5),
])
def test_parse_score_accepts_a_bare_integer_1_to_5(reply: str, score: int) -> None:
    assert parse_score(reply) == score


@pytest.mark.parametrize("reply", [
    "five", "6/5", "", "  ", "3.5", "0", "7", "4 or 5", "Score: 6", "4/10", "-4", "05",
    "I would give it a 4", "4\n5", "**4**", "\u0664",  # an Arabic-Indic four
])
def test_parse_score_records_anything_else_as_malformed(reply: str) -> None:
    parsed = parse_score(reply)
    assert isinstance(parsed, str) and parsed.startswith("malformed: ")
    assert repr(reply[:10]).strip("'") in parsed


def test_malformed_reason_is_short() -> None:
    reason = parse_score("The caption is quite good, I'd say " * 20)
    assert isinstance(reason, str) and len(reason) <= 60


def test_rubrics_hold_the_caption_and_ask_for_one_integer() -> None:
    for criterion in ("vir", "ita"):
        prompt = judge_prompt(criterion, "two {red} circles")
        assert '"""two {red} circles"""' in prompt
        assert "single integer from 1 to 5" in prompt
        assert all(f"{level}: " in prompt for level in range(1, 6))
    assert judge_prompt("vir", "x") != judge_prompt("ita", "x")
    assert JUDGE_VERSION and isinstance(JUDGE_VERSION, str)


def test_maps_from_recall_and_precision() -> None:
    assert [vir_from_recall(r) for r in (0, 0.25, 0.5, 0.75, 1)] == [1, 2, 3, 4, 5]
    assert ita_from_precision(1.0) == 5 and ita_from_precision(None) == 1
    assert ita_from_precision(0.0) == 1
    # one wrong statement among this world's 3-6 is a hallucination the filter drops
    assert all(ita_from_precision((n - 1) / n) < 3 for n in range(2, 7))


# --- the oracle on world scenes -------------------------------------------------------------

WORLD = WorldParams()


def _scene(scene_id: str, kind: str, colour: str, xs: list[int], text: str | None,
           background: str) -> Scene:
    shapes = tuple(ShapeInstance(x, 28, 8) for x in xs)
    return Scene(scene_id, kind, colour, shapes, text, background, WORLD.image_size)


ONE = _scene("train-000001", "circle", "red", [12], "cat", "white")  # one shape: a position
MANY = _scene("train-000002", "square", "blue", [12, 32, 52], None, "beige")


def _item(scene: Scene, caption: str, item_id: str = "x") -> JudgeItem:
    return JudgeItem(item_id, encode_png(render(scene, WORLD)), caption,
                     json.dumps(scene.to_dict()))


def _scores(scene: Scene, caption: str) -> tuple[int | None, int | None]:
    [outcome] = OracleJudge().judge([_item(scene, caption)])
    assert outcome.ok, outcome.reason
    return outcome.vir, outcome.ita


@pytest.mark.parametrize("scene", [ONE, MANY])
def test_oracle_gives_the_reference_caption_full_marks(scene: Scene) -> None:
    [outcome] = OracleJudge().judge([_item(scene, detailed_caption(scene), "ref")])
    assert outcome == JudgeOutcome("ref", 5, 5, vir_reply="5", ita_reply="5")
    assert isinstance(OracleJudge(), Judge)


def test_oracle_gives_every_generated_reference_caption_full_marks() -> None:
    from sail_pipeline.world import generate_world

    scenes = generate_world(WorldParams(n_train=24, n_benchmark=0, text_probability=0.5)).scenes
    outcomes = OracleJudge().judge([JudgeItem(r.id, r.image, r.reference_caption, r.ground_truth)
                                    for r in scenes.itertuples()])
    assert {(o.vir, o.ita) for o in outcomes} == {(5, 5)}


@pytest.mark.parametrize(("name", "scene", "caption"), [
    ("another scene's caption", ONE, detailed_caption(MANY)),
    ("another scene's caption", MANY, detailed_caption(ONE)),
    ("wrong colour", ONE, detailed_caption(ONE).replace("red", "green")),
    ("wrong colour", MANY, detailed_caption(MANY).replace("blue", "yellow")),
    ("wrong count", MANY, detailed_caption(MANY).replace("three", "four")),
    ("wrong count", ONE, detailed_caption(ONE).replace("one", "two")),
    ("empty", ONE, ""),
    ("empty", MANY, "   "),
    ("one word", ONE, "circle"),
    ("one word", MANY, "squares"),
    ("one word", MANY, "picture"),
])
def test_oracle_scores_a_bad_caption_below_the_filter(name: str, scene: Scene,
                                                      caption: str) -> None:
    vir, ita = _scores(scene, caption)
    assert vir is not None and ita is not None
    assert min(vir, ita) < 3, (name, caption, vir, ita)


def test_oracle_separates_hallucination_from_omission() -> None:
    # Leaving the written word out costs richness, not alignment.
    caption = detailed_caption(ONE).split(' The word "')[0]
    assert _scores(ONE, caption) == (4, 5)
    # Naming a word the scene does not show is a wrong statement.
    assert _scores(ONE, detailed_caption(ONE).replace('"cat"', '"sun"'))[1] < 3


def test_oracle_fails_only_the_bad_item() -> None:
    good = _item(ONE, detailed_caption(ONE), "good")
    items = [good, JudgeItem("no-image", NOT_AN_IMAGE, "a red circle", good.ground_truth),
             JudgeItem("no-truth", good.image, "a red circle"),
             JudgeItem("bad-truth", good.image, "a red circle", '{"kind": "circle"}')]
    outcomes = OracleJudge().judge(items)
    assert [o.id for o in outcomes] == ["good", "no-image", "no-truth", "bad-truth"]
    assert outcomes[0].ok and (outcomes[0].vir, outcomes[0].ita) == (5, 5)
    assert not any(o.ok for o in outcomes[1:])
    assert outcomes[1].reason.startswith("undecodable: ")
    assert outcomes[2].reason == "no ground truth"
    assert outcomes[3].reason.startswith("bad ground truth: KeyError")


# --- the API judge against a local OpenAI-compatible server ----------------------------------


async def scripted_judge(body: dict[str, Any], request: web.Request) -> web.StreamResponse:
    """Replies by the caption under judgement, so each item picks how the judge behaves."""
    prompt = prompt_of(body)
    if "say-five" in prompt:
        return chat_reply("five")
    if "say-four" in prompt:
        return chat_reply("4")
    if "http-400" in prompt:
        return web.json_response({"error": {"message": "image too small"}}, status=400)
    if "ita-broken" in prompt and "image-text alignment" in prompt:
        return web.Response(status=404, text="no such model")
    return chat_reply("Score: 3")


def test_api_judge_records_malformed_replies_and_fails_only_the_failed_item() -> None:
    png = encode_png(render(ONE, WORLD))
    items = [JudgeItem("five", png, "say-five"), JudgeItem("four", png, "say-four"),
             JudgeItem("http", png, "http-400"), JudgeItem("half", png, "ita-broken"),
             JudgeItem("no-image", NOT_AN_IMAGE, "say-four")]
    with serve_canned(scripted_judge) as server:
        params = JudgeParams(backend="api", api=ApiParams(
            base_url=server.base_url, model="judge-vlm", timeout_s=5.0, max_retries=1,
            backoff_s=0.01, max_backoff_s=0.05, concurrency=4))
        judge = build_judge(params, credentials={"api_key": "sk-test"})
        assert isinstance(judge, ApiJudge) and isinstance(judge, Judge)
        five, four, http, half, no_image = judge.judge(items)
        received = list(server.received)

    assert five.vir is None and five.ita is None and not five.ok
    assert five.vir_reason == five.ita_reason == "malformed: 'five'"
    assert five.vir_reply == "five" and five.reason == "malformed: 'five'"

    assert (four.vir, four.ita) == (4, 4) and four.ok and four.reason is None

    assert not http.ok and http.vir_reply is None
    assert http.vir_reason.startswith("http 400") and http.ita_reason.startswith("http 400")

    assert half.vir == 3 and half.ita is None and half.ita_reason.startswith("http 404")
    assert half.reason.startswith("ita: http 404")

    assert no_image.reason.startswith("undecodable: ")
    # Two requests (one per rubric) per decodable item; none for the undecodable one.
    assert len(received) == 8
    assert received[0]["headers"]["Authorization"] == "Bearer sk-test"
    prompts = [prompt_of(r["body"]) for r in received]
    assert sum("visual-information richness" in p for p in prompts) == 4
    assert all(p.endswith("Reply with a single integer from 1 to 5 and nothing else.")
               for p in prompts)
    assert judge.metrics()["api/failed"] == 3.0


def test_judge_params() -> None:
    params = JudgeParams()
    assert params.enabled and params.backend == "oracle" and params.api is None
    assert isinstance(build_judge(params), OracleJudge)
    with pytest.raises(ValidationError, match="needs `api` settings"):
        JudgeParams(backend="api")
    with pytest.raises(ValidationError, match="extra"):
        JudgeParams(min_scroe=3)
    with pytest.raises(ValidationError):
        JudgeParams(batch_size=0)
