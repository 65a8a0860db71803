"""The prefix cache: chains that start with the same stages train them once, and end with the
same results as chains that trained everything themselves."""

from __future__ import annotations

import fcntl
import hashlib
import json
from pathlib import Path

import pytest

from sail_pipeline.engine import chain as chain_module
from sail_pipeline.engine import stage as stage_runner
from sail_pipeline.engine.chain import Chain, Checkpoint, Evaluation, Step, Table, prefix_identities
from sail_pipeline.engine.prefix import PrefixCache, shared_prefixes
from sail_pipeline.engine.store import PREFIXES, run_stored
from sail_pipeline.recipe_data import conversation_table
from sail_pipeline.schema import RuntimeParams, TrainParams

RUNTIME = RuntimeParams(threads=1, seed=0)


def _train(lr: float) -> TrainParams:
    return TrainParams(steps=2, lr=lr, micro_batch_size=2, max_seq_len=256, log_every=1,
                       eval_samples=4)


@pytest.fixture(scope="module")
def start(tmp_path_factory, small_world, world_tokenizer) -> tuple[Path, Path]:
    """A tiny trained checkpoint to start chains from, and a conversation table."""
    folder = tmp_path_factory.mktemp("prefix")
    table = folder / "train.parquet"
    conversation_table(small_world.scenes, small_world.conversations).head(32).to_parquet(table)
    world_tokenizer.save_pretrained(folder / "tokenizer")
    pointer = stage_runner.train("knowledge", _train(1e-3), RUNTIME, str(folder / "start"),
                                 str(table), None, tokenizer_path=str(folder / "tokenizer"))
    return Path(pointer["hf_dir"]), table


def _weights_score(hf_dir: str, evaluation: Evaluation, workdir: Path) -> dict[str, float]:
    """A stand-in evaluation that any change of the weights changes."""
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in
                                     sorted(Path(hf_dir).glob("*.safetensors")))).hexdigest()
    return {f"{evaluation.label}/average": int(digest[:8], 16) / 16**8}


def _chain(start: tuple[Path, Path], second_lr: float) -> Chain:
    checkpoint, table = start
    steps = [Step("knowledge", _train(1e-3), Table(path=str(table))),
             Step("instruction", _train(second_lr), Table(path=str(table)))]
    return Chain(Checkpoint(str(checkpoint)), steps, seed=0, evaluations=(
        Evaluation(0, "first", str(table), None), Evaluation(1, "second", str(table), None)))


@pytest.fixture()
def counted(monkeypatch):
    """The stages trained, by name; the stand-in evaluation."""
    trained: list[str] = []
    real = stage_runner.train

    def train(stage, *args, **kwargs):
        trained.append(stage)
        return real(stage, *args, **kwargs)

    monkeypatch.setattr(stage_runner, "train", train)
    monkeypatch.setattr(chain_module, "evaluate", _weights_score)
    monkeypatch.setattr(chain_module, "result_settings", lambda settings: None)
    return trained


def test_only_the_prefixes_several_chains_start_with_are_shared():
    assert shared_prefixes([["a", "ab", "abc"], ["a", "ab", "abd"], ["x", "xy"]]) == {"a", "ab"}
    # a chain's own whole identity is the point store's, never a prefix to keep
    assert shared_prefixes([["a", "ab"], ["a", "ab"]]) == {"a"}
    assert shared_prefixes([["a", "ab", "abc"]]) == frozenset()


@pytest.mark.slow
def test_a_shared_prefix_trains_once_and_the_results_equal_a_full_run(start, counted, tmp_path):
    first, second = _chain(start, 1e-3), _chain(start, 5e-4)
    ids = [prefix_identities(c, RUNTIME) for c in (first, second)]
    shared = shared_prefixes(ids)
    assert shared == {ids[0][0]} and ids[0][0] == ids[1][0] and ids[0][1] != ids[1][1]

    store = tmp_path / "store"
    run_stored(first, RUNTIME, store, "first", keep="last", shared=shared)
    assert counted == ["knowledge", "instruction"]
    cached = store / PREFIXES / ids[0][0]
    assert (cached / "hf").is_dir() and json.loads((cached / "prefix.json").read_text())[
        "scores"].keys() == {"first/average"}

    counted.clear()
    reused = run_stored(second, RUNTIME, store, "second", keep="last", shared=shared)
    assert counted == ["instruction"]  # the shared Knowledge was not trained again
    assert reused["prefix_steps_reused"] == 1 and "knowledge_seconds" not in reused["timing"]
    assert (cached / "hf").is_dir(), "keep='last' deleted the cached checkpoint"

    counted.clear()
    alone = run_stored(second, RUNTIME, tmp_path / "fresh", "second", keep="last")
    assert counted == ["knowledge", "instruction"]
    assert reused["identity"] == alone["identity"]
    assert reused["scores"] == alone["scores"]  # to the digit: the same weights


def test_a_prefix_is_locked_while_it_trains_and_a_killed_ones_work_is_removed(tmp_path):
    cache = PrefixCache(tmp_path, frozenset({"p"}))
    (tmp_path / "p.partial-4242").mkdir()  # a killed process's half-copied prefix
    with cache.claim("p"):
        assert not (tmp_path / "p.partial-4242").exists()
        with open(tmp_path / "p.lock") as other, pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert cache.load("p") is None
        checkpoint = tmp_path / "ckpt"
        checkpoint.mkdir()
        (checkpoint / "model.safetensors").write_bytes(b"w")
        cache.publish("p", str(checkpoint), [{"wall_seconds": 1.0}], {"first/average": 0.5})
    stored = cache.load("p")
    assert stored["scores"] == {"first/average": 0.5}
    assert (Path(stored["hf_dir"]) / "model.safetensors").read_bytes() == b"w"
    (tmp_path / "p" / "prefix.json").write_text("{not json")
    assert cache.load("p") is None  # damaged: trained again, not trusted
    with cache.claim("p"):  # and the one that trains it again replaces the damaged copy
        cache.publish("p", str(checkpoint), [{"wall_seconds": 2.0}], {"first/average": 0.6})
    assert cache.load("p")["scores"] == {"first/average": 0.6}
    assert not list(tmp_path.glob("p.partial-*"))
