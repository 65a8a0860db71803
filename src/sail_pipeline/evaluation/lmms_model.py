"""lmms-eval model backend ``sail_vl`` for this project's checkpoints.

Registered through the ``lmms_eval.models`` entry point (see pyproject.toml), which points
at :data:`MANIFEST`. Use as ``--model sail_vl --model_args pretrained=<dir>,max_new_tokens=8``.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms
from lmms_eval.utils import simple_parse_args_string
from PIL import Image
from tqdm import tqdm

if TYPE_CHECKING:
    from lmms_eval.models.registry_v2 import ModelManifest

MODEL_ID = "sail_vl"


class Generator(Protocol):
    """What ``sail_pipeline.modeling.inference.VLMGenerator`` offers this backend."""

    def generate(
        self, images: list[Image.Image | None], prompts: list[str], max_new_tokens: int = 16
    ) -> list[Any]: ...  # a reply, or a `PromptRejected` (too long for the model)

    def loglikelihood(
        self, images: list[Image.Image | None], contexts: list[str], continuations: list[str]
    ) -> list[Any]: ...  # (log-probability, greedy), or a `PromptRejected`


# A prompt too long for the model is not run; its request gets these and is scored wrong.
REJECTED_REPLY = ""
REJECTED_SCORE = (float("-inf"), False)


class TaskGenerationError(RuntimeError):
    """The model failed on one task's requests; ``task_name`` says which."""

    def __init__(self, task_name: str, message: str) -> None:
        super().__init__(f"sail_vl failed on task {task_name!r}: {message}")
        self.task_name = task_name


def load_generator(model_dir: str | os.PathLike[str], device: str, batch_size: int) -> Generator:
    """Load a checkpoint; a module-level seam so tests can substitute a fake generator."""
    # Imported late so lmms-eval can list this backend without the modeling stack loaded.
    from sail_pipeline.modeling.inference import load_generator as load

    return load(model_dir, device=device, batch_size=batch_size)


def _positive_int(name: str, value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"sail_vl: {name} must be a positive integer, got {value!r}") from None
    if number < 1:
        raise ValueError(f"sail_vl: {name} must be a positive integer, got {value!r}")
    return number


def _single_image(visuals: Any) -> Image.Image | None:
    items = visuals if isinstance(visuals, (list, tuple)) else [visuals]
    items = [item for item in items if item is not None]
    if not items:
        return None
    if len(items) > 1 or not isinstance(items[0], Image.Image):
        kinds = [type(item).__name__ for item in items]
        raise ValueError(f"sail_vl takes at most one PIL image per request, got {kinds}")
    return items[0]


def _cut_at_stops(text: str, stops: Sequence[str]) -> str:
    # Leading whitespace carries no answer, and a "\n" stop would otherwise erase a reply
    # that merely starts with a newline.
    text = text.lstrip()
    for stop in stops:
        if stop:
            text = text.split(stop, 1)[0]
    return text


def _stop_strings(gen_kwargs: dict[str, Any]) -> list[str]:
    until = gen_kwargs.get("until") or []
    if isinstance(until, str):
        return [until]
    if not isinstance(until, (list, tuple)):
        raise ValueError(
            f"gen_kwargs['until'] must be a string or list, got {type(until).__name__}"
        )
    return [str(stop) for stop in until]


def _filled(values: list[Any]) -> list[Any]:
    missing = [index for index, value in enumerate(values) if value is None]
    if missing:
        raise RuntimeError(f"sail_vl produced no output for requests {missing}")
    return values


def _check_greedy(gen_kwargs: dict[str, Any]) -> None:
    # The generator only decodes greedily; sampling settings would be silently ignored.
    sampling = (
        bool(gen_kwargs.get("do_sample", False))
        or float(gen_kwargs.get("temperature", 0.0) or 0.0) > 0.0
        or int(gen_kwargs.get("num_beams", 1) or 1) > 1
    )
    if sampling:
        raise ValueError(f"sail_vl decodes greedily only; got generation kwargs {gen_kwargs}")


class SailVL(lmms):
    """lmms-eval "simple" model wrapping a ``VLMGenerator`` (batched greedy decoding)."""

    is_simple = True

    def __init__(
        self,
        pretrained: str,
        batch_size: int | str = 16,
        max_new_tokens: int | str = 16,
        device: str = "cpu",
        rejections: str | None = None,
        **unsupported: Any,
    ) -> None:
        super().__init__()
        if unsupported:
            raise ValueError(f"sail_vl: unsupported model_args {sorted(unsupported)}")
        self.pretrained = str(pretrained)
        self.batch_size = _positive_int("batch_size", batch_size)
        self.max_new_tokens = _positive_int("max_new_tokens", max_new_tokens)
        self.device = str(device)
        # A JSON-lines file where each request not run (too long) is recorded with its task
        # and reason, so the evaluation's report counts them (`runner.read_rejections`).
        self.rejections = rejections
        self.generator = load_generator(
            self.pretrained, device=self.device, batch_size=self.batch_size
        )

    def clean(self) -> None:
        """Let go of the model after the run. lmms-eval's own `clean` calls `gc.collect()`
        twice, which walks every object of the process: 0.8 s of a 1.3 s evaluation of a
        sweep point (`benchmarks/sweep_throughput.py`). The model has no reference cycle;
        dropping the generator frees it. A GPU's cached memory is still handed back."""
        self.generator = None
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            super().clean()

    @classmethod
    def create_from_arg_string(
        cls, arg_string: str, additional_config: dict[str, Any] | None = None
    ) -> SailVL:
        """Build from ``model_args``; explicit model_args win over the CLI's generic flags.

        lmms-eval's base version passes both to the constructor, so the CLI's default
        ``--batch_size 1`` clashes with ``model_args=batch_size=N`` (duplicate keyword).
        """
        args = simple_parse_args_string(arg_string)
        extra = {
            key: value
            for key, value in (additional_config or {}).items()
            if value is not None and key not in args
        }
        # max_batch_size only steers lmms-eval's "auto" batch search, which this backend lacks.
        extra.pop("max_batch_size", None)
        return cls(**args, **extra)

    def _reject(self, task: str, rejected: Any) -> None:
        reason = str(getattr(rejected, "reason", rejected))
        if self.rejections:
            with open(self.rejections, "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"task": task, "reason": reason}) + "\n")

    def _doc(self, task: str, split: str, doc_id: int) -> Any:
        return self.task_dict[task][split][doc_id]

    def _by_task(
        self, requests: list[Instance], key: Callable[[tuple], str]
    ) -> dict[tuple[str, str], list[int]]:
        # Batches never mix tasks, so a failure can be pinned on the task that caused it.
        groups: dict[tuple[str, str], list[int]] = defaultdict(list)
        for index, request in enumerate(requests):
            args = request.args
            groups[(args[4], key(args))].append(index)
        return groups

    def generate_until(self, requests: list[Instance]) -> list[str]:
        """Greedy replies, batched per task and generation settings, cut at ``until``."""
        outputs: list[str | None] = [None] * len(requests)
        groups = self._by_task(
            requests, lambda args: json.dumps(args[1], sort_keys=True, default=str)
        )
        progress = tqdm(total=len(requests), disable=self.rank != 0, desc="sail_vl generate")
        for (task, _), indices in groups.items():
            try:
                gen_kwargs = dict(requests[indices[0]].args[1] or {})
                _check_greedy(gen_kwargs)
                stops = _stop_strings(gen_kwargs)
                max_new = _positive_int(
                    "max_new_tokens", gen_kwargs.get("max_new_tokens", self.max_new_tokens)
                )
                for start in range(0, len(indices), self.batch_size):
                    chunk = indices[start : start + self.batch_size]
                    images, prompts = [], []
                    for index in chunk:
                        context, _, doc_to_visual, doc_id, task_name, split = requests[index].args
                        doc = self._doc(task_name, split, doc_id)
                        images.append(_single_image(doc_to_visual(doc)))
                        prompts.append(context)
                    texts = self.generator.generate(images, prompts, max_new_tokens=max_new)
                    if len(texts) != len(chunk):
                        raise RuntimeError(
                            f"generator returned {len(texts)} replies for {len(chunk)} prompts"
                        )
                    for index, prompt, text in zip(chunk, prompts, texts, strict=True):
                        if not isinstance(text, str):
                            self._reject(task, text)
                            text = REJECTED_REPLY
                        outputs[index] = _cut_at_stops(text, stops)
                        self.cache_hook.add_partial(
                            "generate_until", (prompt, gen_kwargs), outputs[index]
                        )
                    progress.update(len(chunk))
            except Exception as exc:
                progress.close()
                raise TaskGenerationError(task, f"{type(exc).__name__}: {exc}") from exc
        progress.close()
        return _filled(outputs)

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        """Log-probability of each continuation (multiple-choice scoring), batched per task."""
        scores: list[tuple[float, bool] | None] = [None] * len(requests)
        groups = self._by_task(requests, lambda args: "")
        progress = tqdm(total=len(requests), disable=self.rank != 0, desc="sail_vl loglikelihood")
        for (task, _), indices in groups.items():
            try:
                for start in range(0, len(indices), self.batch_size):
                    chunk = indices[start : start + self.batch_size]
                    images, contexts, continuations = [], [], []
                    for index in chunk:
                        args = requests[index].args
                        context, target, doc_to_visual, doc_id, task_name, split = args
                        doc = self._doc(task_name, split, doc_id)
                        # "loglikelihood" tasks pass doc_to_target; "multiple_choice" a string.
                        continuations.append(
                            target if isinstance(target, str) else str(target(doc))
                        )
                        images.append(_single_image(doc_to_visual(doc)))
                        contexts.append(context)
                    results = self.generator.loglikelihood(images, contexts, continuations)
                    if len(results) != len(chunk):
                        raise RuntimeError(
                            f"generator scored {len(results)} of {len(chunk)} continuations"
                        )
                    for index, result in zip(chunk, results, strict=True):
                        if not isinstance(result, tuple):
                            self._reject(task, result)
                            result = REJECTED_SCORE
                        logprob, greedy = result
                        scores[index] = (float(logprob), bool(greedy))
                    progress.update(len(chunk))
            except Exception as exc:
                progress.close()
                raise TaskGenerationError(task, f"{type(exc).__name__}: {exc}") from exc
        progress.close()
        return _filled(scores)

    def generate_until_multi_round(self, requests: list[Instance]) -> list[str]:
        raise RuntimeError(
            "sail_vl is a single-turn model: generate_until_multi_round tasks are not supported"
        )


def __getattr__(name: str) -> ModelManifest:
    """Build ``MANIFEST`` on first access rather than at import.

    ModelManifest lives in ``lmms_eval.models``, whose import runs the model registry, which
    loads this module's entry point. Importing it at the top would, whenever this module is
    imported before lmms-eval's registry, make the registry see a half-initialised module
    without MANIFEST and drop ``sail_vl`` with only a logged warning.
    """
    if name != "MANIFEST":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from lmms_eval.models.registry_v2 import ModelManifest

    # The import above may have re-entered here through the entry point and set it already.
    if "MANIFEST" not in globals():
        globals()["MANIFEST"] = ModelManifest(
            model_id=MODEL_ID, simple_class_path=f"{__name__}.SailVL"
        )
    return globals()["MANIFEST"]
