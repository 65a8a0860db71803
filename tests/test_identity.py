"""A point's identity: every edit that can change its result recomputes it, and no other.

The edits are made to a copy of the package's source, of the DeepSpeed configs and of the
lock file, never to the real ones (other tests run beside this one).
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from sail_pipeline import identity
from sail_pipeline.engine.chain import (
    Backbones,
    Chain,
    Checkpoint,
    Evaluation,
    Step,
    Table,
    chain_identity,
)
from sail_pipeline.schema import EvaluationSettings, RuntimeParams, TrainParams
from sail_pipeline.schema import stages as stage_registry

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def sandbox(tmp_path, monkeypatch) -> Path:
    """The package's source, the DeepSpeed configs and the lock, copied; identity reads them."""
    shutil.copytree(identity.SOURCE_ROOT / "sail_pipeline", tmp_path / "src" / "sail_pipeline",
                    ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(identity, "SOURCE_ROOT", tmp_path / "src")
    shutil.copytree(ROOT / "conf/base/deepspeed", tmp_path / "conf/base/deepspeed")
    monkeypatch.chdir(tmp_path)  # the trainer's config reads conf/base/deepspeed from here
    lock = tmp_path / "lock.txt"
    shutil.copy(ROOT / "requirements/lock-cpu.txt", lock)
    monkeypatch.setenv("SAIL_LOCK_FILE", str(lock))
    for name in ("weights", "llm", "vision", "tokenizer"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.safetensors").write_bytes(name.encode())
    for name in ("benchmark.parquet", "eval.parquet"):
        pd.DataFrame({"id": ["a", "b"]}).to_parquet(tmp_path / name)
    return tmp_path


def _chain(root: Path, **train) -> Chain:
    rows = pd.DataFrame({"id": ["r1", "r2"], "messages": ["[]", "[]"]})
    settings = TrainParams(**({"steps": 2, "lr": 1e-3} | train))
    return Chain(Checkpoint(str(root / "weights")),
                 [Step("knowledge", settings, Table(rows=rows), Table(path=str(root / "eval.parquet")))],
                 seed=0, evaluations=[Evaluation(0, "sft", str(root / "benchmark.parquet"),
                                                 EvaluationSettings())])


def _identity(root: Path, **train) -> str:
    return chain_identity(_chain(root, **train), RuntimeParams())


def _append(path: Path, line: str = "# an edit\n") -> None:
    path.write_text(path.read_text() + line)


@pytest.mark.parametrize("edit", [
    "engine/stage.py",         # the trainer-config builder
    "schema/stages.py",        # the stage registry: default trainable modules
    "training/train.py",       # the trainer, which runs as a subprocess
    "evaluation/lmms_model.py",  # loaded by lmms-eval through its entry point
    "modeling/freezing.py",
])
def test_an_edit_to_code_the_chain_runs_recomputes_the_point(sandbox, edit):
    before = _identity(sandbox)
    assert _identity(sandbox) == before
    _append(sandbox / "src/sail_pipeline" / edit)
    assert _identity(sandbox) != before


@pytest.mark.parametrize("edit", ["curation/dedup.py", "experiments/scaling/plots.py",
                                  "pipelines/curation/nodes.py"])
def test_an_edit_outside_the_closure_reuses_the_point(sandbox, edit):
    before = _identity(sandbox)
    _append(sandbox / "src/sail_pipeline" / edit)
    assert _identity(sandbox) == before


def test_a_deepspeed_json_edit_recomputes_the_point(sandbox):
    before = _identity(sandbox)
    zero0 = sandbox / "conf/base/deepspeed/zero0.json"
    zero0.write_text(zero0.read_text().replace("{", '{"gradient_clipping": 0.5, ', 1))
    assert _identity(sandbox) != before


def test_a_lock_edit_recomputes_the_point(sandbox):
    before = _identity(sandbox)
    _append(sandbox / "lock.txt", "some-package==1.0\n")
    assert _identity(sandbox) != before


def test_settings_data_seed_and_start_each_recompute_and_log_interval_does_not(sandbox):
    first = _identity(sandbox)
    assert _identity(sandbox, log_every=99) == first  # how often it logs changes no result
    changed = {_identity(sandbox, lr=5e-4), _identity(sandbox, steps=3)}
    chain = _chain(sandbox)
    step = chain.steps[0]
    other_rows = dataclasses.replace(step, train=Table(rows=step.train.rows.iloc[:1]))
    changed.add(chain_identity(dataclasses.replace(chain, steps=[other_rows]), RuntimeParams()))
    changed.add(chain_identity(dataclasses.replace(chain, seed=1), RuntimeParams()))
    changed.add(chain_identity(dataclasses.replace(chain, evaluations=[Evaluation(
        0, "sft", chain.evaluations[0].benchmark, EvaluationSettings(limit=5))]),
        RuntimeParams()))
    (sandbox / "weights" / "model.safetensors").write_bytes(b"other weights")
    changed.add(_identity(sandbox))
    assert first not in changed and len(changed) == 6


def test_the_stage_registry_default_modules_are_what_the_trainer_receives(sandbox, monkeypatch):
    """The edit the issue measured: Alignment's default modules, projector -> projector + LLM,
    reused all six points of a sweep; the resolved trainer settings now differ."""
    start = Backbones("tiny", *(str(sandbox / n) for n in ("tokenizer", "llm", "vision")))
    rows = pd.DataFrame({"id": ["r1"], "caption": ["x"]})

    def alignment_identity() -> str:
        chain = Chain(start, [Step("alignment", TrainParams(steps=2, lr=1e-3), Table(rows=rows))],
                      seed=0)
        return chain_identity(chain, RuntimeParams())

    before = alignment_identity()
    spec = stage_registry.STAGES["alignment"]
    monkeypatch.setitem(stage_registry.STAGES, "alignment",
                        dataclasses.replace(spec, trainable=(*spec.trainable, "llm")))
    assert alignment_identity() != before


def test_no_digest_is_made_outside_the_identity_module():
    found = subprocess.run(["grep", "-rln", "--include=*.py", r"hashlib\|_CODE\b",
                            str(ROOT / "src")], capture_output=True, text=True).stdout.split()
    assert [Path(f).relative_to(ROOT).as_posix() for f in found] == [
        "src/sail_pipeline/identity.py"]
