"""Every text is capped before it reaches a model (issue #25): each path where user text meets a
tokenizer and a model truncates the context part of a prompt, or rejects the row, and counts it.

A 100 KB alt-text in a recaption prompt once grew a run to 20 GB (attention memory grows with
the square of the prompt's length) until the kernel killed it.
"""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from PIL import Image

from sail_pipeline.captioning.backends import CaptionItem, CaptionOutcome, LocalBackend
from sail_pipeline.captioning.recaptioning import build_prompt, recaption
from sail_pipeline.curation import FolderSource, run_curation
from sail_pipeline.evaluation import lmms_model, runner
from sail_pipeline.modeling.inference import PromptRejected
from sail_pipeline.schema import CurationFilterParams, RecaptionParams
from sail_pipeline.sft_data.validate import Rejection, validate_conversations
from sail_pipeline.text_limits import (
    ALT_TEXT_TRUNCATED,
    PROMPT_TOO_LONG,
    cannot_fit,
    cap_chars,
    longest_token_chars,
)

LONG_ALT_TEXT = ("a photo of a beach at sunset with people walking along the shore " * 1600)
assert len(LONG_ALT_TEXT) > 100_000


def _png(size: tuple[int, int] = (64, 64), colour: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_cap_chars_cuts_at_a_word_boundary_and_says_how_long_it_was():
    capped = cap_chars("word " * 30, 52)  # a space at 49, inside the last tenth (47-51)
    assert capped.text == " ".join(["word"] * 10) and capped.truncated
    assert capped.original_chars == 150
    assert cap_chars("short", 13).text == "short" and not cap_chars("short", 13).truncated
    unbroken = cap_chars("x" * 50, 10)  # no space in the last tenth: a hard cut
    assert unbroken.text == "x" * 10 and unbroken.truncated
    with pytest.raises(ValueError, match="positive"):
        cap_chars("x", 0)


def test_cannot_fit_never_rejects_a_text_that_could_fit(world_tokenizer):
    longest = longest_token_chars(world_tokenizer.get_vocab())
    # The worst case for the bound: every token as long as the longest one.
    token = max(world_tokenizer.get_vocab(), key=len)
    text = world_tokenizer.convert_tokens_to_string([token]) * 10
    assert len(world_tokenizer(text)["input_ids"]) <= 10 or cannot_fit(len(text), 10, longest)
    assert not cannot_fit(10 * longest, 10, longest) and cannot_fit(10 * longest + 1, 10, longest)


# --- the captioner's prompt ------------------------------------------------------------------


class RecordingBackend:
    """Captions every item with the length of its prompt, and keeps the prompts it got."""

    name = "local"

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def caption(self, items: list[CaptionItem]) -> list[CaptionOutcome]:
        self.prompts += [item.prompt for item in items]
        return [CaptionOutcome(item.id, f"{len(item.prompt)} characters") for item in items]


def test_a_100kb_alt_text_is_cut_in_the_recaption_prompt_and_counted(tmp_path):
    settings = RecaptionParams(backend="local", max_alt_text_chars=300)
    prompt, kind, truncated = build_prompt(LONG_ALT_TEXT, settings)
    assert kind == "recaption" and truncated
    assert len(prompt) <= len(settings.recaption_prompt) + 300
    manifest = pd.DataFrame({"id": ["long", "short", "none"], "image": [_png()] * 3,
                             "alt_text": [LONG_ALT_TEXT, "a red square", None]})
    backend = RecordingBackend()
    summary = recaption(manifest, backend, tmp_path / "shards", settings, progress=False)
    assert summary.captioned == 3 and summary.failed == 0
    assert summary.noted == {ALT_TEXT_TRUNCATED: 1}
    assert summary.metrics()[f"recaption/noted/{ALT_TEXT_TRUNCATED}"] == 1.0
    assert max(len(p) for p in backend.prompts) <= len(settings.recaption_prompt) + 300


def test_a_prompt_longer_than_the_model_reads_is_rejected_and_its_batch_runs(tiny_generator):
    image = Image.new("RGB", (64, 64), "blue")
    budget = tiny_generator.prompt_budget(8)
    over_by_tokens = "red " * (budget + 10)  # a few characters a token: tokenized, then too long
    over_by_chars = "y" * (budget * tiny_generator._longest_token + 1)  # never tokenized
    alone = tiny_generator.generate([image], ["What colour?"], 8)
    answers = tiny_generator.generate([image] * 3, ["What colour?", over_by_tokens,
                                                    over_by_chars], 8)
    assert answers[0] == alone[0]  # the rejected prompts do not change the others' answers
    assert isinstance(answers[1], PromptRejected) and "tokens" in answers[1].reason
    assert isinstance(answers[2], PromptRejected) and "characters" in answers[2].reason
    assert all(a.reason.startswith(PROMPT_TOO_LONG) for a in answers[1:])
    scored = tiny_generator.loglikelihood([image, image], ["What colour?", over_by_chars],
                                          ["blue", "blue"])
    assert isinstance(scored[0], tuple) and isinstance(scored[1], PromptRejected)


def test_the_local_captioner_records_a_too_long_prompt_as_that_items_failure(tiny_generator):
    backend = LocalBackend(tiny_generator, max_new_tokens=8)
    items = [CaptionItem("ok", _png(), "Describe the image in detail."),
             CaptionItem("long", _png(), "Describe: " + "word " * 3000)]
    outcomes = backend.caption(items)
    assert [o.id for o in outcomes] == ["ok", "long"]
    assert outcomes[0].ok and outcomes[1].caption is None
    assert outcomes[1].error.startswith(PROMPT_TOO_LONG)


# --- evaluation prompts ----------------------------------------------------------------------


class RejectingGenerator:
    """Rejects the prompts that mention 'colour', answers the others right."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers

    def generate(self, images, prompts, max_new_tokens=16):
        return [PromptRejected(f"{PROMPT_TOO_LONG}: 9999 tokens") if "colour" in p
                else self.answers[p] for p in prompts]

    def loglikelihood(self, images, contexts, continuations):
        return [(-1.0, True) for _ in continuations]


def test_evaluation_scores_a_rejected_prompt_wrong_and_counts_it(monkeypatch, tmp_path):
    image = _png((8, 8))
    rows = [{"id": f"{kind}-{i}", "scene_id": f"s{i}", "question_type": kind,
             "question": f"Which {kind} in scene {i}? Answer with one word.",
             "answer": answer, "choices": json.dumps(choices), "image": image}
            for kind, answer, choices in (("count", "two", ["one", "two"]),
                                          ("colour", "red", ["red", "blue"]))
            for i in range(2)]
    benchmark = tmp_path / "benchmark.parquet"
    pd.DataFrame(rows).to_parquet(benchmark, index=False)
    answers = {row["question"]: row["answer"] for row in rows}
    monkeypatch.setattr(lmms_model, "load_generator",
                        lambda *args, **kwargs: RejectingGenerator(answers))
    (tmp_path / "checkpoint").mkdir()
    report = runner.run_world_suite(tmp_path / "checkpoint", benchmark, tmp_path / "eval")
    assert report.scores == {"world_count": 1.0, "world_colour": 0.0}
    assert report.rejected == {"world_colour": 2}
    # A second run starts its count afresh.
    again = runner.run_world_suite(tmp_path / "checkpoint", benchmark, tmp_path / "eval")
    assert again.rejected == {"world_colour": 2}


# --- SFT rows --------------------------------------------------------------------------------


def test_an_sft_row_too_long_for_any_stage_is_rejected_without_encoding_it():
    encoded: list[str] = []

    def encode(messages, n_tiles):
        encoded.append(messages[-1]["content"][:10])
        return sum(len(m["content"].split()) for m in messages), False

    def conversation(answer: str) -> str:
        return json.dumps([{"role": "user", "content": "Describe it."},
                           {"role": "assistant", "content": answer}])

    table = pd.DataFrame({"id": ["short", "huge"], "image": [None, None],
                          "messages": [conversation("a red square"),
                                       conversation("word " * 200_000)]})
    kept, rejected = validate_conversations(table, encode, lambda w, h: 1, max_seq_len=256,
                                            longest_token=16)
    assert list(kept["id"]) == ["short"]
    assert rejected.values.tolist() == [["huge", Rejection.LONGER_THAN_MAX_SEQ_LEN.value]]
    assert encoded == ["a red squa"]  # the huge row was never encoded


def test_the_trainer_rejects_a_runaway_conversation_without_encoding_it(world_tokenizer,
                                                                       monkeypatch):
    from sail_pipeline.modeling.presets import get_preset
    from sail_pipeline.modeling.processor import VLProcessor
    from sail_pipeline.training.data import ConversationData

    processor = VLProcessor(world_tokenizer, get_preset("tiny").image_settings())
    lengths: list[int] = []
    encode = processor.encode
    monkeypatch.setattr(processor, "encode", lambda messages, n_tiles: (
        lengths.append(sum(len(m["content"]) for m in messages)) or encode(messages, n_tiles)))
    table = pd.DataFrame({"id": ["ok", "runaway"], "image": [None, None], "messages": [
        json.dumps([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "red"}]),
        json.dumps([{"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "red " * 500_000}])]})
    data = ConversationData(table, processor, max_seq_len=128)
    assert len(data) == 1 and data.rejections.counts() == {"longer_than_max_seq_len": 1}
    assert max(lengths) < 100


# --- curation --------------------------------------------------------------------------------


def test_curation_cuts_a_runaway_sidecar_alt_text_and_counts_it(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.png").write_bytes(_png((64, 64), "red"))
    (folder / "a.txt").write_text(LONG_ALT_TEXT)
    (folder / "b.png").write_bytes(_png((64, 48), "blue"))
    (folder / "b.txt").write_text("a blue square")
    result = run_curation([FolderSource(kind="folder", name="photos", path=str(folder))],
                          CurationFilterParams(max_alt_text_chars=2000), progress=False)
    manifest = result.manifest.set_index("source_id")
    assert len(manifest.loc["a.png", "alt_text"]) <= 2000
    assert ALT_TEXT_TRUNCATED in manifest.loc["a.png", "normalised"]
    assert manifest.loc["b.png", "alt_text"] == "a blue square"
    assert result.count(ALT_TEXT_TRUNCATED) == 1


def test_the_memory_benchmark_runs_its_quick_grid(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks/memory_scaling.py"
    spec = importlib.util.spec_from_file_location("memory_scaling", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--quick"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    rows = [line for line in lines if line.startswith("| 8 |")]
    assert len(rows) == 2 and all(row.split("|")[7].strip() == "8" for row in rows)  # captioned
    assert lines[-1].startswith("uncapped/capped peak memory")
