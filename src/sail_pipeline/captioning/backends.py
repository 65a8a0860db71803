"""Captioner backends behind one protocol, so recaptioning does not care who writes the caption.

A backend turns a batch of `CaptionItem`s into exactly one `CaptionOutcome` per item, in order.
One bad item (an undecodable image, a 400 from a server) becomes an outcome with an `error`,
never an exception: the run records it and goes on. Backends:

- `LocalBackend`: batched greedy generation with our own checkpoint (`VLMGenerator`), CPU or GPU;
- `ApiBackend`: any OpenAI-compatible server (the captioner served by vLLM/LMDeploy, GPT-4o);
- `OracleBackend`: the embedded world's reference captions, a stand-in for the strong model;
- `VllmBackend`: vLLM's offline engine in this process (GPU only, optional dependency).

A `BackendFactory` describes a backend instead of holding one: it pickles small and builds the
backend where it runs, so a Ray actor loads its own model rather than receiving one.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from PIL import Image, ImageFile

from sail_pipeline.captioning.api_client import ApiCaptioner, ApiKey, CaptionRequest
from sail_pipeline.schema import ApiParams

if TYPE_CHECKING:  # torch and transformers take seconds to import; api/oracle runs need neither
    from sail_pipeline.modeling.inference import VLMGenerator

_REASON_CHARS = 200  # errors are stored per id; a whole traceback would bloat the table


@dataclass(frozen=True)
class CaptionItem:
    id: str
    image: bytes = field(repr=False)
    prompt: str


@dataclass(frozen=True)
class CaptionOutcome:
    """`caption` or `error` (a short reason whose text before the first ':' is its kind)."""

    id: str
    caption: str | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.caption is not None


@runtime_checkable
class CaptionBackend(Protocol):
    def caption(self, items: list[CaptionItem]) -> list[CaptionOutcome]:
        """One outcome per item, in the items' order; failures as outcomes, not exceptions."""
        ...


def short_reason(kind: str, error: BaseException) -> str:
    return f"{kind}: {type(error).__name__}: {error}"[:_REASON_CHARS]


@contextmanager
def _no_truncated_images() -> Iterator[None]:
    # lmms-eval sets Pillow's LOAD_TRUNCATED_IMAGES at import, and a truncated file would then
    # load as a half-grey picture and get captioned; restored after, it is a process global.
    before = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = before


def decode_image(data: bytes) -> Image.Image | str:
    """An RGB image, or an "undecodable: ..." reason (PIL raises many unrelated types)."""
    try:
        with _no_truncated_images(), Image.open(io.BytesIO(data)) as image:
            image.load()  # open() only reads the header; truncated pixel data fails here
            return image.convert("RGB")
    except Exception as error:  # any decoder failure is this item's problem, not the run's
        return short_reason("undecodable", error)


def caption_images(items: list[CaptionItem],
                   generate: Callable[[list[Image.Image], list[str]], Sequence[Any]]
                   ) -> list[CaptionOutcome]:
    """Decode every item, `generate` captions for the decodable ones in one call, and give
    the others their "undecodable: ..." reason.

    `generate` answers a caption per prompt, or an object with a `reason` for a prompt it
    did not run (`PromptRejected`: longer than the model's context), which becomes the error.
    """
    decoded = [decode_image(item.image) for item in items]
    good = [i for i, image in enumerate(decoded) if isinstance(image, Image.Image)]
    answers: dict[int, Any] = {}
    if good:
        replies = generate([decoded[i] for i in good], [items[i].prompt for i in good])
        answers = dict(zip(good, replies, strict=True))
    outcomes = []
    for i, item in enumerate(items):
        answer = answers.get(i, decoded[i])
        if isinstance(answer, str) and i in answers:
            outcomes.append(CaptionOutcome(item.id, answer, None))
        else:
            outcomes.append(CaptionOutcome(item.id, None, str(getattr(answer, "reason",
                                                                         answer))))
    return outcomes


class LocalBackend:
    """Our captioner checkpoint in this process; one `generate` call per batch.

    `generate` left-pads the batch and uses the KV cache, so a batch of similar prompt lengths
    (what `recaption`'s length grouping hands it) costs little more than its longest member.
    """

    name = "local"

    def __init__(self, generator: VLMGenerator, max_new_tokens: int = 64) -> None:
        self.generator = generator
        self.max_new_tokens = max_new_tokens

    def caption(self, items: list[CaptionItem]) -> list[CaptionOutcome]:
        return caption_images(items, lambda images, prompts: self.generator.generate(
            images, prompts, self.max_new_tokens))


class ApiBackend:
    """An OpenAI-compatible server; each batch is sent concurrently by `ApiCaptioner`.

    The captioner's `concurrency` only helps up to the batch size, so give `recaption` a
    `batch_size` of a few times `concurrency` with this backend.
    """

    name = "api"

    def __init__(self, captioner: ApiCaptioner) -> None:
        self.captioner = captioner

    def caption(self, items: list[CaptionItem]) -> list[CaptionOutcome]:
        results = self.captioner.run([CaptionRequest(i.id, i.image, i.prompt) for i in items],
                                     progress=False)  # `recaption` draws the bar over the pool
        return [CaptionOutcome(r.id, r.caption, r.error) for r in results]


class OracleBackend:
    """Reference captions by id: the embedded world's stand-in for a strong captioning model."""

    name = "oracle"

    def __init__(self, captions: Mapping[str, str]) -> None:
        self.captions = captions

    def caption(self, items: list[CaptionItem]) -> list[CaptionOutcome]:
        return [CaptionOutcome(item.id, self.captions[item.id], None)
                if item.id in self.captions
                else CaptionOutcome(item.id, None, "no reference caption")
                for item in items]


class VllmBackend:
    """vLLM's offline engine on a GPU: continuous batching and paged KV cache in-process.

    `image_placeholder` is where the model's chat template expects the image ("<image>" for
    InternVL and LLaVA in vLLM). Needs `pip install vllm` and a CUDA GPU.
    """

    name = "vllm"

    def __init__(self, model: str | os.PathLike, max_new_tokens: int = 64,
                 image_placeholder: str = "<image>", **llm_kwargs: Any) -> None:
        try:  # lazily: vllm is a large GPU-only install that CPU runs never need
            from vllm import LLM, SamplingParams
        except ImportError as error:
            raise ImportError(
                "VllmBackend needs vLLM, which needs a CUDA GPU: `pip install vllm` on a GPU "
                "machine. Without one, use the 'local' backend, or the 'api' backend against "
                "a vLLM/LMDeploy server elsewhere.") from error
        self.llm = LLM(model=str(model), **llm_kwargs)
        self.params = SamplingParams(temperature=0, max_tokens=max_new_tokens)
        self.image_placeholder = image_placeholder

    def _prompt(self, prompt: str) -> str:
        message = [{"role": "user", "content": f"{self.image_placeholder}\n{prompt}"}]
        return self.llm.get_tokenizer().apply_chat_template(message, tokenize=False,
                                                             add_generation_prompt=True)

    def _generate(self, images: list[Image.Image], prompts: list[str]) -> list[str]:
        inputs = [{"prompt": self._prompt(prompt), "multi_modal_data": {"image": image}}
                  for image, prompt in zip(images, prompts, strict=True)]
        outputs: Sequence[Any] = self.llm.generate(inputs, self.params, use_tqdm=False)
        return [out.outputs[0].text.strip() for out in outputs]

    def caption(self, items: list[CaptionItem]) -> list[CaptionOutcome]:
        return caption_images(items, self._generate)


def _local(model_dir: str, max_new_tokens: int, device: str, batch_size: int) -> LocalBackend:
    from sail_pipeline.modeling.inference import load_generator

    return LocalBackend(load_generator(model_dir, device=device, batch_size=batch_size),
                        max_new_tokens)


def _api(settings: ApiParams, key: ApiKey | None) -> ApiBackend:
    return ApiBackend(ApiCaptioner(settings, key))


@dataclass(frozen=True)
class BackendFactory:
    """How to build a backend: `build(*args, **kwargs)`, run where the captioning runs.

    `build` must be importable by name (a class or a module-level function), so that a Ray
    worker can unpickle it; `name` is the backend's, checked against `settings.backend`.
    """

    build: Callable[..., CaptionBackend]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    name: str | None = None

    def __post_init__(self) -> None:
        if self.name is None:  # a backend class declares its own
            object.__setattr__(self, "name", getattr(self.build, "name", None))

    def __call__(self) -> CaptionBackend:
        return self.build(*self.args, **dict(self.kwargs))

    @classmethod
    def oracle(cls, captions: Mapping[str, str]) -> BackendFactory:
        return cls(OracleBackend, (dict(captions),))

    @classmethod
    def local(cls, model_dir: str | os.PathLike, max_new_tokens: int = 64, device: str = "cpu",
              batch_size: int = 16) -> BackendFactory:
        """Our checkpoint, loaded by each worker (on a GPU actor: device="cuda")."""
        return cls(_local, (str(model_dir), max_new_tokens, device, batch_size), name="local")

    @classmethod
    def api(cls, settings: ApiParams, key: ApiKey | None = None) -> BackendFactory:
        """An OpenAI-compatible server; the key travels to the workers inside the factory."""
        return cls(_api, (settings, key), name="api")

    @classmethod
    def vllm(cls, model: str | os.PathLike, max_new_tokens: int = 64,
             **llm_kwargs: Any) -> BackendFactory:
        return cls(VllmBackend, (str(model), max_new_tokens), dict(llm_kwargs))


def build_backend(backend: CaptionBackend | BackendFactory) -> CaptionBackend:
    """A factory's backend, or a backend as given."""
    return backend() if isinstance(backend, BackendFactory) else backend
