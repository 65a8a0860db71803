"""A byte-level BPE tokenizer trained locally, with ChatML and InternVL's image tokens.

Real SAIL-VL uses Qwen2.5's tokenizer; the embedded default trains a small one on the
world's text so that nothing is downloaded. Both expose the same special tokens, so the
rest of the code never asks which one it has.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

END_OF_TEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
IMG_START = "<img>"
IMG_END = "</img>"
IMG_CONTEXT = "<IMG_CONTEXT>"
IMAGE_PLACEHOLDER = "<image>"
SPECIAL_TOKENS = [END_OF_TEXT, IM_START, IM_END, IMG_START, IMG_END, IMG_CONTEXT]

# ChatML as Qwen2.5 writes it. `{% generation %}` marks the spans that are supervised, so
# loss masks come from the template itself rather than from length arithmetic.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{ '<|im_start|>assistant\n' }}"
    "{%- generation -%}{{ message['content'] + '<|im_end|>' }}{%- endgeneration -%}"
    "{{ '\n' }}"
    "{%- else -%}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\n' }}{%- endif -%}"
)


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on `texts` and wrap it for transformers."""
    if vocab_size < 300:
        raise ValueError(f"tokenizer.vocab_size must be >= 300 (got {vocab_size})")
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer=trainer)
    return wrap_tokenizer(core)


def wrap_tokenizer(core: Tokenizer) -> PreTrainedTokenizerFast:
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token=IM_END,
        pad_token=END_OF_TEXT,
        unk_token=None,
        extra_special_tokens={"image_token": IMG_CONTEXT},
        model_max_length=4096,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.padding_side = "right"
    return tokenizer


def prepare_pretrained_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """A user's tokenizer (e.g. Qwen2.5's, from a local directory) made ready for the VLM.

    Adds whichever of ChatML's and InternVL's image tokens it lacks and installs our ChatML
    template, whose `{% generation %}` spans the loss masks are built from.
    """
    directory = Path(path)
    if not (directory / "tokenizer.json").exists():
        raise FileNotFoundError(f"data.tokenizer.path: no tokenizer.json in {directory}")
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(directory))
    missing = [t for t in SPECIAL_TOKENS if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing},
                                     replace_extra_special_tokens=False)
    tokenizer.eos_token = IM_END
    tokenizer.pad_token = tokenizer.pad_token or END_OF_TEXT
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.padding_side = "right"
    return tokenizer


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """Load a tokenizer saved by `save_pretrained`, checking it has the tokens we rely on."""
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(path))
    missing = [t for t in SPECIAL_TOKENS if tokenizer.convert_tokens_to_ids(t) is None]
    if missing:
        raise ValueError(f"tokenizer at {path} lacks special tokens {missing}")
    if not tokenizer.chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer
