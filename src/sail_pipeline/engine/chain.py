"""One chain runner: a start, stages in order, the evaluations asked for, one seed.

Every experiment point (a sweep point, a selection point, a schedule point) is a `Chain`,
and the recipe's Kedro nodes run one-stage chains, so every stage of the project trains the
same way (`engine.stage.train`) and every identity is made the same way (`chain_identity`):
- each stage's settings as the trainer receives them, resolved (`engine.stage.run_config`:
  the trainable modules from the stage registry, the DeepSpeed JSON loaded);
- the digests of its tables and of the weights the chain starts from;
- the seed, and each evaluation's settings and benchmark;
- the code: every module of the package this one imports or runs as a subprocess
  (`identity.code_digest`), and the lock file the environment was installed from.

No Kedro here.
"""

from __future__ import annotations

import bisect
import contextlib
import io
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from sail_pipeline import identity
from sail_pipeline.engine import stage as stage_runner
from sail_pipeline.engine.prefix import PrefixCache
from sail_pipeline.schema import RuntimeParams, TrainParams, result_settings

log = logging.getLogger(__name__)
# The module whose import closure is the code of every chain.
CHAIN_MODULE = __name__


@dataclass(frozen=True, eq=False)
class Table:
    """A stage's rows: a Parquet file already on disk, or rows the chain writes itself."""

    path: str | None = None
    rows: pd.DataFrame | None = None

    def __post_init__(self) -> None:
        if (self.path is None) == (self.rows is None):
            raise ValueError("a Table is a path or rows, not both or neither")

    def encoded(self) -> bytes | None:
        """The Parquet bytes of `rows` (None for a path), made once."""
        if self.rows is None:
            return None
        cached = self.__dict__.get("_bytes")
        if cached is None:
            buffer = io.BytesIO()
            self.rows.to_parquet(buffer, index=False)
            cached = buffer.getvalue()
            object.__setattr__(self, "_bytes", cached)
        return cached

    def digest(self) -> str:
        encoded = self.encoded()
        return identity.path_digest(self.path) if encoded is None else \
            identity.sha256_hex(encoded)

    def place(self, target: Path) -> str:
        """The table's path: its own, or `target` after writing the rows there."""
        encoded = self.encoded()
        if encoded is None:
            return str(self.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(encoded)
        return str(target)


@dataclass(frozen=True)
class Backbones:
    """A chain that starts from pretrained parts: a new VLM of `preset` built around them."""

    preset: str
    tokenizer: str
    llm: str
    vision: str

    def weights(self) -> dict[str, str]:
        return {"preset": self.preset, "tokenizer_path": self.tokenizer,
                "llm_path": self.llm, "vision_path": self.vision}

    def digests(self) -> dict[str, str]:
        return {"preset": self.preset, "tokenizer": identity.path_digest(self.tokenizer),
                "llm": identity.path_digest(self.llm),
                "vision": identity.path_digest(self.vision)}


@dataclass(frozen=True)
class Checkpoint:
    """A chain that continues a trained checkpoint (a Hugging Face directory)."""

    path: str

    def weights(self) -> dict[str, str]:
        return {"init_from": self.path}

    def digests(self) -> dict[str, str]:
        return {"checkpoint": identity.path_digest(self.path)}


@dataclass(frozen=True, eq=False)
class Step:
    """One stage of a chain: the registry stage it trains as, its settings, its tables;
    `name` is its folder in the chain's work folder (default: the stage)."""

    stage: str
    settings: TrainParams
    train: Table
    eval: Table | None = None
    name: str | None = None

    @property
    def folder(self) -> str:
        return self.name or self.stage


class EvaluationSettings(Protocol):
    question_types: list[str] | None
    batch_size: int
    max_new_tokens: int
    limit: int | None


@dataclass(frozen=True)
class Evaluation:
    """Score the checkpoint of step `after` (its index) on `benchmark`; the scores are named
    `<label>/<task>` and `<label>/average`."""

    after: int
    label: str
    benchmark: str
    settings: Any  # EvaluationSettings (a pydantic model: its result settings are digested)


@dataclass(frozen=True, eq=False)
class Chain:
    start: Backbones | Checkpoint
    steps: Sequence[Step]
    seed: int
    evaluations: Sequence[Evaluation] = ()

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError("a chain needs at least one step")
        for evaluation in self.evaluations:
            if not 0 <= evaluation.after < len(self.steps):
                raise ValueError(f"evaluation {evaluation.label!r} follows step "
                                 f"{evaluation.after}; the chain has {len(self.steps)}")


@dataclass
class ChainResult:
    """Each step's pointer (`hf_dir`, `run_dir`, `summary`), the scores, the time, and how
    many steps came from the prefix cache."""

    pointers: list[dict[str, Any]]
    scores: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    reused_steps: int = 0  # the first steps taken from the prefix cache, not trained

    @property
    def last(self) -> dict[str, Any]:
        return self.pointers[-1]

    @property
    def summaries(self) -> list[dict[str, Any]]:
        return [pointer["summary"] for pointer in self.pointers]


def seeded(runtime: RuntimeParams, seed: int) -> RuntimeParams:
    return runtime if runtime.seed == seed else runtime.model_copy(update={"seed": seed})


def step_settings(chain: Chain, runtime: RuntimeParams) -> list[dict[str, Any]]:
    """Each step's trainer settings as resolved, paths left out (what the identity digests)."""
    runtime = seeded(runtime, chain.seed)
    out = []
    for k, step in enumerate(chain.steps):
        weights = chain.start.weights() if k == 0 else {"init_from": "-"}
        cfg = stage_runner.run_config(step.stage, step.settings, runtime, "-", "-",
                                      "-" if step.eval is not None else None, tracked=False,
                                      **weights)
        out.append(stage_runner.trainer_settings(cfg))
    return out


def prefix_identities(chain: Chain, runtime: RuntimeParams) -> list[str]:
    """The identity of each prefix of the chain (its first k+1 steps and the evaluations
    that follow them), the last being the whole chain's: the digest of everything that
    decides the prefix's result (see the module's doc)."""
    steps = [{"trainer": settings, "train": step.train.digest(),
              "eval": step.eval.digest() if step.eval is not None else None}
             for step, settings in zip(chain.steps, step_settings(chain, runtime), strict=True)]
    evaluations = [({"after": e.after, "label": e.label,
                     "benchmark": identity.path_digest(e.benchmark),
                     "settings": result_settings(e.settings)}) for e in chain.evaluations]
    common = {"start": chain.start.digests(), "seed": chain.seed,
              "code": identity.code_digest([CHAIN_MODULE]),
              "environment": identity.environment_digest()}
    return [identity.payload_digest({
        **common, "steps": steps[:k + 1],
        "evaluations": [e for e in evaluations if e["after"] <= k]})
        for k in range(len(steps))]


def chain_identity(chain: Chain, runtime: RuntimeParams) -> str:
    """The digest of everything that decides the chain's result (see the module's doc)."""
    return prefix_identities(chain, runtime)[-1]


def evaluate(hf_dir: str, evaluation: Evaluation, workdir: Path) -> dict[str, float]:
    """The world suite on one checkpoint, scores named `<label>/<task>`."""
    from sail_pipeline.evaluation.runner import run_world_suite

    settings = evaluation.settings
    report = run_world_suite(hf_dir, evaluation.benchmark, workdir,
                             question_types=settings.question_types,
                             batch_size=settings.batch_size,
                             max_new_tokens=settings.max_new_tokens, limit=settings.limit)
    scores = {f"{evaluation.label}/{task.removeprefix('world_')}": float(score)
              for task, score in report.scores.items()}
    scores[f"{evaluation.label}/average"] = float(report.average)
    return scores


def run_chain(chain: Chain, runtime: RuntimeParams, workdir: str | Path,
              keep: str = "all", folders: Sequence[str] | None = None,
              prefixes: PrefixCache | None = None) -> ChainResult:
    """Train the chain's steps in order into `workdir/<step folder>` (or `folders`), evaluate
    each checkpoint asked for right after its step, and return the pointers and scores.

    `keep`: which checkpoints stay on disk: `all`; `last` (each earlier one is deleted once
    the next step and its evaluations are done); `none` (the last one too: the scores are the
    result). Tables the chain wrote itself are deleted unless `keep` is `all`.

    `prefixes`: the chain starts from the longest of its shared prefixes already stored there
    (its steps are not trained again, their summaries and scores are the stored ones), and
    publishes each shared prefix it trains (`engine.prefix`).
    """
    if keep not in ("all", "last", "none"):
        raise ValueError(f"keep must be all, last or none, got {keep!r}")
    work = Path(workdir)
    runtime = seeded(runtime, chain.seed)
    result = ChainResult(pointers=[])
    written: list[Path] = []
    ids = prefix_identities(chain, runtime) if prefixes is not None else []
    shared = [k for k, pid in enumerate(ids[:-1]) if pid in prefixes.shared] \
        if prefixes is not None else []
    with contextlib.ExitStack() as locks:
        held = {k: locks.enter_context(contextlib.ExitStack()) for k in shared}
        for k in shared:  # in chain order, as every chain that shares them takes them
            held[k].enter_context(prefixes.claim(ids[k]))
        begin = _restore(chain, ids, shared, prefixes, result) if shared else 0
        for k in shared[:bisect.bisect_left(shared, begin)]:
            held[k].close()
        for k, step in enumerate(chain.steps[begin:], begin):
            where = Path(folders[k]) if folders is not None else work / step.folder
            train_path = step.train.place(work / "tables" / f"{step.folder}_train.parquet")
            eval_path = step.eval.place(work / "tables" / f"{step.folder}_eval.parquet") \
                if step.eval is not None else None
            written += [Path(p) for p, t in ((train_path, step.train), (eval_path, step.eval))
                        if t is not None and t.rows is not None and p is not None]
            weights = chain.start.weights() if k == 0 else {"init_from": result.last["hf_dir"]}
            begun = time.perf_counter()
            pointer = stage_runner.train(step.stage, step.settings, runtime, str(where),
                                         train_path, eval_path, **weights)
            result.seconds[f"{step.folder}_seconds"] = time.perf_counter() - begun
            result.pointers.append(pointer)
            if pointer.get("dry_run"):
                continue
            result.seconds[f"{step.folder}_train_seconds"] = \
                float(pointer["summary"]["wall_seconds"])
            for evaluation in (e for e in chain.evaluations if e.after == k):
                begun = time.perf_counter()
                result.scores |= evaluate(pointer["hf_dir"], evaluation,
                                          work / f"eval_{evaluation.label}")
                result.seconds[f"eval_{evaluation.label}_seconds"] = time.perf_counter() - begun
            if k in held:
                prefixes.publish(ids[k], pointer["hf_dir"], result.summaries, result.scores)
                held[k].close()
            if keep != "all" and k and not result.pointers[k - 1].get("prefix"):
                shutil.rmtree(result.pointers[k - 1]["hf_dir"], ignore_errors=True)
    if keep == "none":
        shutil.rmtree(result.last["hf_dir"], ignore_errors=True)
    if keep != "all":
        for path in written:
            path.unlink(missing_ok=True)
        if (work / "tables").is_dir() and not any((work / "tables").iterdir()):
            (work / "tables").rmdir()
    return result


def _restore(chain: Chain, ids: list[str], shared: list[int], prefixes: PrefixCache,
             result: ChainResult) -> int:
    """Fill `result` from the longest shared prefix in the cache; the next step to train."""
    for k in reversed(shared):
        stored = prefixes.load(ids[k])
        if stored is None:
            continue
        for j, summary in enumerate(stored["summaries"]):
            result.pointers.append({"hf_dir": stored["hf_dir"] if j == k else None,
                                    "run_dir": None, "summary": summary, "prefix": ids[k]})
            stage_runner.log_summary(chain.steps[j].stage, summary)
        result.scores |= stored["scores"]
        result.reused_steps = k + 1
        log.info("steps %s: reused from the prefix cache (%s)",
                 ", ".join(s.folder for s in chain.steps[:k + 1]), ids[k][:12])
        return k + 1
    return 0
