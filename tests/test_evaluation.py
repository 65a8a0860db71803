"""lmms-eval integration: task writing, the sail_vl backend and the in-process runner.

A fake generator replaces the checkpoint loader, so these runs exercise lmms-eval's real
task loading, request building, scoring and aggregation without a trained model.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from sail_pipeline.evaluation import lmms_model, runner
from sail_pipeline.evaluation.tasks import GROUP_NAME, write_world_tasks
from sail_pipeline.evaluation.world_metrics import is_correct, process_results

ROWS = [
    ("count", "How many shapes are in scene {s}? Answer with one word.", ["one", "two", "three"]),
    ("colour", "What colour are the shapes in scene {s}? Answer with one word.", ["red", "blue"]),
    ("shape", "Which shape is in scene {s}? Answer with one word.", ["circle", "square"]),
]
TASKS = ["world_count", "world_colour", "world_shape"]


def _png(colour: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def benchmark(tmp_path: Path) -> Path:
    records = []
    for question_type, template, choices in ROWS:
        for scene in range(2):
            records.append(
                {
                    "id": f"{question_type}-{scene}",
                    "scene_id": f"s{scene}",
                    "question_type": question_type,
                    "question": template.format(s=f"{question_type}{scene}"),
                    "answer": choices[scene % len(choices)],
                    "choices": json.dumps(choices),
                    "image": _png("red" if scene == 0 else "blue"),
                }
            )
    path = tmp_path / "benchmark.parquet"
    pd.DataFrame(records).to_parquet(path, index=False)
    return path


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    path = tmp_path / "checkpoint"
    path.mkdir()
    return path


class FakeGenerator:
    def __init__(self, reply) -> None:
        self.reply = reply

    def generate(self, images, prompts, max_new_tokens=16):
        assert all(isinstance(image, Image.Image) and image.mode == "RGB" for image in images)
        return [self.reply(prompt) for prompt in prompts]

    def loglikelihood(self, images, contexts, continuations):
        return [(-float(len(text)), True) for text in continuations]


def _use_generator(monkeypatch: pytest.MonkeyPatch, reply, benchmark: Path) -> None:
    answers = dict(pd.read_parquet(benchmark, columns=["question", "answer"]).values.tolist())
    generator = FakeGenerator(lambda prompt: reply(prompt, answers))
    monkeypatch.setattr(lmms_model, "load_generator", lambda *args, **kwargs: generator)


def test_oracle_scores_every_task_perfectly(monkeypatch, benchmark, model_dir, tmp_path):
    # A trailing sentence after a newline checks that the task's "\n" stop string is honoured.
    _use_generator(monkeypatch, lambda prompt, answers: f"{answers[prompt]}.\nDone", benchmark)
    report = runner.run_world_suite(model_dir, benchmark, tmp_path / "eval", batch_size=4)

    assert report.scores == {task: 1.0 for task in TASKS}
    assert report.average == pytest.approx(100.0)
    assert report.n_samples == {task: 2 for task in TASKS}
    assert report.chance == pytest.approx(
        {"world_count": 1 / 3, "world_colour": 0.5, "world_shape": 0.5}
    )
    rows = [json.loads(line) for line in report.samples_path.read_text().splitlines()]
    assert len(rows) == 6 and all(row["correct"] for row in rows)
    assert {row["prediction"] for row in rows} >= {"one.", "red."}
    assert json.loads(report.results_path.read_text())["average"] == pytest.approx(100.0)


def test_an_evaluation_lets_go_of_its_model_without_walking_the_heap(monkeypatch, benchmark,
                                                                     model_dir, tmp_path):
    """lmms-eval's `clean()` called `gc.collect()` twice per evaluation (0.8 s of a sweep
    point's 1.3 s evaluation); ours drops the generator and collects nothing on a CPU."""
    import gc

    _use_generator(monkeypatch, lambda prompt, answers: answers[prompt], benchmark)
    collected = []
    monkeypatch.setattr(gc, "collect", lambda *args: collected.append(args) or 0)
    original_init = lmms_model.SailVL.__init__
    instances = []
    monkeypatch.setattr(lmms_model.SailVL, "__init__",
                        lambda self, *a, **k: instances.append(self) or original_init(self, *a, **k))
    report = runner.run_world_suite(model_dir, benchmark, tmp_path / "eval", batch_size=4)
    assert report.average == pytest.approx(100.0)
    assert collected == []
    assert [model.generator for model in instances] == [None]


def test_constant_wrong_answer_scores_zero(monkeypatch, benchmark, model_dir, tmp_path):
    _use_generator(monkeypatch, lambda prompt, answers: "zebra", benchmark)
    report = runner.run_world_suite(
        model_dir, benchmark, tmp_path / "eval", question_types=["count", "colour"]
    )
    assert report.scores == {"world_count": 0.0, "world_colour": 0.0}
    assert report.average == 0.0


def test_failing_task_raises_naming_it(monkeypatch, benchmark, model_dir, tmp_path):
    def reply(prompt, answers):
        if "colour" in prompt:
            raise RuntimeError("decoder exploded")
        return answers[prompt]

    _use_generator(monkeypatch, reply, benchmark)
    with pytest.raises(runner.EvaluationError, match="world_colour") as caught:
        runner.run_world_suite(model_dir, benchmark, tmp_path / "eval")
    assert caught.value.tasks == ["world_colour"]


def test_missing_result_is_an_error(monkeypatch, benchmark, model_dir, tmp_path):
    import lmms_eval.evaluator

    # lmms-eval can log a task failure and still return: the runner must not trust that.
    partial = {"results": {"world_count": {"score,none": 1.0}}, "samples": {"world_count": [{}]}}
    monkeypatch.setattr(lmms_eval.evaluator, "simple_evaluate", lambda **kwargs: partial)
    with pytest.raises(runner.EvaluationError) as caught:
        runner.run_world_suite(model_dir, benchmark, tmp_path / "eval", ["count", "shape"])
    assert caught.value.tasks == ["world_shape"]


def test_entry_point_resolves_sail_vl():
    from lmms_eval.models import get_model, get_model_manifest

    assert get_model("sail_vl") is lmms_model.SailVL
    assert get_model_manifest("sail_vl") == lmms_model.MANIFEST


def test_model_args_override_cli_defaults(monkeypatch):
    monkeypatch.setattr(lmms_model, "load_generator", lambda *args, **kwargs: FakeGenerator(str))
    model = lmms_model.SailVL.create_from_arg_string(
        "pretrained=/ckpt,batch_size=4,max_new_tokens=5", {"batch_size": "1", "device": "cpu"}
    )
    assert (model.batch_size, model.max_new_tokens, model.device) == (4, 5, "cpu")
    with pytest.raises(ValueError, match="unsupported"):
        lmms_model.SailVL(pretrained="/ckpt", temperature=1.0)


def test_loglikelihood_batches_per_task(monkeypatch):
    from lmms_eval.api.instance import Instance

    monkeypatch.setattr(lmms_model, "load_generator", lambda *args, **kwargs: FakeGenerator(str))
    model = lmms_model.SailVL(pretrained="/ckpt", batch_size=2)
    image = Image.new("RGB", (4, 4))
    model.task_dict = {"t": {"test": [{"q": "x"}]}}
    requests = [
        Instance(
            request_type="loglikelihood",
            arguments=("Q?", f" {choice}", lambda doc: [image], 0, "t", "test"),
            idx=index,
            metadata={"task": "t", "doc_id": 0, "repeats": 1},
        )
        for index, choice in enumerate(["red", "green", "blue"])
    ]
    assert model.loglikelihood(requests) == [(-4.0, True), (-6.0, True), (-5.0, True)]


def test_written_tasks_form_a_group(benchmark, tmp_path):
    from lmms_eval.tasks import TaskManager

    names = write_world_tasks(benchmark, tmp_path / "tasks")
    assert names == TASKS
    manager = TaskManager("WARNING", include_path=str(tmp_path / "tasks"), include_defaults=False)
    assert manager.all_groups == [GROUP_NAME]
    assert sorted(manager.all_subtasks) == sorted(TASKS)
    with pytest.raises(ValueError, match="ocr"):
        write_world_tasks(benchmark, tmp_path / "tasks", ["ocr"])


@pytest.mark.parametrize(
    ("prediction", "answer", "choices", "expected"),
    [
        ("Red.", "red", ["red", "blue"], True),
        ("  RED  ", "red", ["red", "blue"], True),
        ("There are two shapes.", "two", ["one", "two", "three"], True),
        ("blue", "red", ["red", "blue"], False),
        ("red or blue", "red", ["red", "blue"], True),
        ("It is blue or red", "red", ["red", "blue"], False),
        ("", "red", ["red"], False),
        ("reddish", "red", ["red"], False),
        ("well " * 10 + "red", "red", ["red"], False),
    ],
)
def test_answer_normalisation(prediction, answer, choices, expected):
    assert is_correct(prediction, answer, choices) is expected


def test_process_results_reads_choices_json():
    doc = {"answer": "two", "choices": json.dumps(["one", "two", "three"])}
    assert process_results(doc, ["There are two shapes."]) == {"score": 1.0}
    assert process_results(doc, ["one or two"]) == {"score": 0.0}


def test_real_suite_puts_every_model_card_benchmark_on_0_to_100():
    from sail_pipeline.evaluation.real_suite import REAL_SUITE, card_scores, select

    assert len(REAL_SUITE) == 15
    chosen = select(["MME", "OCRBench", "HallusionBench", "MMStar"])
    results = {"results": {
        "mme": {"mme_perception_score,none": 1400.0, "mme_cognition_score,none": 400.0},
        "ocrbench": {"ocrbench_accuracy,none": 0.8},  # lmms-eval divides the 1000 by 1000
        "hallusion_bench_image": {"aAcc,none": 45.0},  # already a percentage
        "mmstar": {"average,none": 0.5}}}
    scores = card_scores(results, chosen)
    assert scores == pytest.approx({"MME": 1800 / 28, "OCRBench": 80.0,
                                    "HallusionBench": 45.0, "MMStar": 50.0})
    with pytest.raises(ValueError, match="unknown real benchmarks \\['MMBench'\\]"):
        select(["MMBench"])
    with pytest.raises(RuntimeError, match="POPE: lmms-eval task pope returned no"):
        card_scores({"results": {}}, select(["POPE"]))


def test_real_suite_offline_fails_before_loading_naming_what_is_missing(tmp_path, monkeypatch):
    from sail_pipeline.evaluation.real_suite import RealSuiteUnavailable
    from sail_pipeline.evaluation.runner import run_real_suite

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))  # an empty cache
    (tmp_path / "model").mkdir()  # never loaded: the check comes first
    with pytest.raises(RealSuiteUnavailable) as failure:
        run_real_suite(tmp_path / "model", tmp_path / "work",
                       benchmarks=["MME", "POPE", "MMVet"], device="cpu")
    message = str(failure.value)
    assert "dataset lmms-lab-encoder/MME (for MME)" in message
    assert "lmms-lab-encoder/POPE" in message
    assert "MMVet are scored by an LLM judge: set OPENAI_API_KEY" in message
