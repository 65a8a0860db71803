"""Text signals of captions: length, n-gram diversity, repetition, special characters, lexical
richness and part-of-speech counts (SAIL-Caption's lexical statistics, Table 1).

`text_signals` computes them for a whole batch at once; `naive_text_signals` is the plain
one-caption-at-a-time loop it must agree with (tests and benchmarks/quality_throughput.py).

Words are the lowercased caption's maximal runs of non-space characters with leading and
trailing punctuation stripped (`WORD_RE`): "The (red) circle." -> the, red, circle. Digits
count as word characters, unlike data-juicer's refinement, which strips them too: a caption's
"3 circles" is content, not noise.

A caption that cannot be measured gets NaN signals and a `text_error`; an empty caption is
valid (0 words) and left to the filter. Counts are float64 so that such rows can hold NaN.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd

# One word: from its first to its last word character, never across whitespace.
WORD_RE = re.compile(r"\w(?:\S*\w)?")
MAX_CHARS = 10_000
NGRAM_ORDERS = (1, 2, 3, 4)
# data-juicer's word_repetition_filter uses 10-grams on web documents. Captions are 10-200
# words, and a captioner that degenerates loops whole clauses ("... on a grey background. The
# image shows ..."), which 5-grams catch; common 2-4 word phrases ("on the left") do not repeat
# by chance as 5-grams.
REPETITION_N = 5
# Penn Treebank tags (TextBlob's pattern tagger). Modals (MD) are not counted as verbs.
NOUN_TAGS = frozenset({"NN", "NNS", "NNP", "NNPS"})
VERB_TAGS = frozenset({"VB", "VBD", "VBG", "VBN", "VBP", "VBZ"})
ADJECTIVE_TAGS = frozenset({"JJ", "JJR", "JJS"})

MISSING_CAPTION = "missing_caption"
NOT_UTF8 = "not_utf8"
NOT_TEXT = "not_text"
# Measured on the first max_chars characters: the signals of a runaway caption are still
# useful to the filter (its repetition ratio says why it ran away), and the cap bounds the
# tagger, whose tokeniser is superlinear on some long inputs.
TOO_LONG = "too_long"


def columns(with_tokens: bool) -> list[str]:
    """The signal columns in output order (`text_error` follows them)."""
    return ["words", *(["tokens"] if with_tokens else []),
            *(f"distinct_{n}" for n in NGRAM_ORDERS), "word_repetition_ratio",
            "special_char_ratio", "lexical_richness", "nouns", "verbs", "adjectives"]


def prepare(caption: Any, max_chars: int = MAX_CHARS) -> tuple[str | None, str | None]:
    """(the text to measure, or None; the error, or None) for one raw caption."""
    if isinstance(caption, (bytes, bytearray, memoryview)):
        try:
            caption = bytes(caption).decode("utf-8")
        except UnicodeDecodeError:
            return None, NOT_UTF8
    if not isinstance(caption, str):
        # pd.isna on a non-scalar is an array; such a value is no caption either way.
        missing = caption is None or (np.ndim(caption) == 0 and bool(pd.isna(caption)))
        return None, MISSING_CAPTION if missing else NOT_TEXT
    error = None
    if len(caption) > max_chars:
        caption, error = caption[:max_chars], TOO_LONG
    try:
        # A str may hold lone surrogates (bytes decoded with surrogateescape); the tokenizer
        # and the character table cannot take them.
        caption.encode("utf-8")
    except UnicodeEncodeError:
        return None, NOT_UTF8
    return caption, error


@lru_cache(maxsize=1)
def _parser():
    # TextBlob's PatternTagger is this parser's tokenise-then-tag; the import loads the lexicon
    # lazily on the first tag.
    from textblob.en import parser

    return parser


def _pos_counts(tags: Iterable[str]) -> tuple[int, int, int]:
    nouns = verbs = adjectives = 0
    for tag in tags:
        nouns += tag in NOUN_TAGS
        verbs += tag in VERB_TAGS
        adjectives += tag in ADJECTIVE_TAGS
    return nouns, verbs, adjectives


class _PosCounter:
    """Noun, verb and adjective counts per caption, as PatternTagger().tag(caption) tags them.

    PatternTagger tokenises the caption into sentences and tags each sentence on its own, then
    round-trips the tags through a slash-formatted string. Calling the tokeniser and the
    per-sentence tagger directly skips that round trip, and a sentence (or caption) seen before
    is not tagged again: templated and recaptioned captions share many sentences.
    """

    def __init__(self) -> None:
        self._parser = _parser()
        self._sentences: dict[str, tuple[int, int, int]] = {}
        self._captions: dict[str, tuple[int, int, int]] = {}

    def __call__(self, text: str) -> tuple[int, int, int]:
        counts = self._captions.get(text)
        if counts is None:
            counts = (0, 0, 0)
            for sentence in self._parser.find_tokens(text):
                found = self._sentences.get(sentence)
                if found is None:
                    tagged = self._parser.find_tags(sentence.split(" "))
                    found = self._sentences[sentence] = _pos_counts(tag for _, tag in tagged)
                counts = tuple(a + b for a, b in zip(counts, found, strict=True))
            self._captions[text] = counts
        return counts


def _token_backend(tokenizer: Any) -> Any:
    """The `tokenizers.Tokenizer` under a transformers fast tokenizer, or the one given."""
    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    if not hasattr(backend, "encode_batch"):
        raise TypeError(f"{type(tokenizer).__name__} is not a fast (Rust) tokenizer: "
                        "expected a tokenizers.Tokenizer or a PreTrainedTokenizerFast")
    return backend


@lru_cache(maxsize=1)
def _special_table() -> np.ndarray:
    # One flag per Basic Multilingual Plane code point; rarer ones are looked up as they come.
    return np.array([not (c.isalnum() or c.isspace()) for c in map(chr, range(0x10000))])


def _is_special(char: str) -> bool:
    return not (char.isalnum() or char.isspace())


def _special_counts(texts: Sequence[str]) -> np.ndarray:
    """Characters that are neither letters/digits nor whitespace, per text, in one pass."""
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    points = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32)
    special = np.zeros(len(points), dtype=bool)
    bmp = points < 0x10000
    special[bmp] = _special_table()[points[bmp]]
    if not bmp.all():
        astral = np.unique(points[~bmp])
        flags = np.array([_is_special(chr(p)) for p in astral])
        special[~bmp] = flags[np.searchsorted(astral, points[~bmp])]
    ends = np.cumsum(lengths)
    running = np.concatenate([[0], np.cumsum(special, dtype=np.int64)])
    return running[ends] - running[ends - lengths]


def _words(texts: Iterable[str]) -> list[list[str]]:
    return [WORD_RE.findall(text.lower()) for text in texts]


def _word_ids(word_lists: Sequence[list[str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(word id of every word of every text, concatenated; the text each belongs to; words
    per text)."""
    counts = np.fromiter(map(len, word_lists), dtype=np.int64, count=len(word_lists))
    ids = pd.factorize(pd.Series(list(chain.from_iterable(word_lists)), dtype=object))[0]
    owner = np.repeat(np.arange(len(word_lists)), counts)
    return ids.astype(np.int64), owner, counts


def _ngrams(ids: np.ndarray, owner: np.ndarray, max_n: int):
    """Yield (n, owner, key) for n = 1..max_n over every n-gram that lies within one text:
    the text it belongs to, and a key that is equal exactly for equal n-grams."""
    vocabulary = int(ids.max()) + 1 if len(ids) else 1
    key = ids
    for n in range(1, max_n + 1):
        if n > 1:
            # key[p] names the (n-1)-gram starting at p; extend it by the word at p + n - 1.
            # Renumbering keeps keys below the number of positions, so this never overflows.
            key = pd.factorize(key[:-1] * vocabulary + ids[n - 1:])[0].astype(np.int64)
        within = owner[:len(key)] == owner[n - 1:]
        yield n, owner[:len(key)][within], key[within]


def _ngram_counts(owner: np.ndarray, key: np.ndarray, n_texts: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per text: (n-grams, distinct n-grams, n-grams whose n-gram occurs more than once)."""
    total = np.bincount(owner, minlength=n_texts)
    width = int(key.max()) + 1 if len(key) else 1
    codes, pairs = pd.factorize(owner * width + key)
    frequency = np.bincount(codes)
    pair_owner = pairs // width
    distinct = np.bincount(pair_owner, minlength=n_texts)
    repeated = np.bincount(pair_owner, weights=np.where(frequency > 1, frequency, 0),
                           minlength=n_texts)
    return total, distinct, repeated


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0."""
    out = np.zeros(len(numerator), dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def text_signals(captions: Sequence[Any] | pd.Series, tokenizer: Any = None, *,
                 max_chars: int = MAX_CHARS, repetition_n: int = REPETITION_N) -> pd.DataFrame:
    """One row of signals per caption (str, UTF-8 bytes or None), in order, with its index.

    `tokenizer`: a fast Hugging Face tokenizer (tokenizers.Tokenizer or
    PreTrainedTokenizerFast); its token count without special tokens is the `tokens` column,
    absent when None. `word_repetition_ratio`: data-juicer's definition on word
    `repetition_n`-grams, the fraction of a caption's n-grams that occur in it more than once.
    `lexical_richness`: Guiraud's root type-token ratio, distinct words / sqrt(words). Plain
    type-token ratio falls as captions get longer (vocabulary grows roughly with the square
    root of length); MATTR's usual 50-word window is longer than most captions, where it
    collapses into that same ratio.
    """
    index = captions.index if isinstance(captions, pd.Series) else pd.RangeIndex(len(captions))
    prepared = [prepare(caption, max_chars) for caption in captions]
    errors = [error for _, error in prepared]
    rows = np.array([text is not None for text, _ in prepared], dtype=bool)
    texts = [text for text, _ in prepared if text is not None]

    word_lists = _words(texts)
    ids, owner, words = _word_ids(word_lists)
    values: dict[str, np.ndarray] = {"words": words.astype(np.float64)}
    if tokenizer is not None:
        encoded = _token_backend(tokenizer).encode_batch(texts, add_special_tokens=False)
        values["tokens"] = np.array([len(e.ids) for e in encoded], dtype=np.float64)
    types = np.zeros(len(texts))
    for n, ngram_owner, key in _ngrams(ids, owner, max(max(NGRAM_ORDERS), repetition_n)):
        total, distinct, repeated = _ngram_counts(ngram_owner, key, len(texts))
        if n in NGRAM_ORDERS:
            values[f"distinct_{n}"] = _ratio(distinct, total)
        if n == 1:
            types = distinct
        if n == repetition_n:
            values["word_repetition_ratio"] = _ratio(repeated, total)
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    values["special_char_ratio"] = _ratio(_special_counts(texts), lengths)
    values["lexical_richness"] = _ratio(types, np.sqrt(words))
    pos_counter = _PosCounter()
    pos = np.array([pos_counter(text) for text in texts], dtype=np.float64).reshape(-1, 3)
    values |= {"nouns": pos[:, 0], "verbs": pos[:, 1], "adjectives": pos[:, 2]}

    frame = {}
    for name in columns(tokenizer is not None):
        column = np.full(len(prepared), np.nan)
        column[rows] = values[name]
        frame[name] = column
    frame["text_error"] = pd.Series(errors, index=index, dtype=object)
    return pd.DataFrame(frame, index=index)


def unique_ngrams(captions: Sequence[Any] | pd.Series, n: int,
                  max_chars: int = MAX_CHARS) -> int:
    """Distinct word n-grams over the whole collection (n-grams never span two captions);
    captions that cannot be measured contribute nothing."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    texts = [text for text, _ in (prepare(c, max_chars) for c in captions) if text is not None]
    ids, owner, _ = _word_ids(_words(texts))
    for order, _, key in _ngrams(ids, owner, n):
        if order == n:
            return len(pd.unique(key))
    raise AssertionError("unreachable")


def naive_text_signals(captions: Sequence[Any] | pd.Series, tokenizer: Any = None, *,
                       max_chars: int = MAX_CHARS,
                       repetition_n: int = REPETITION_N) -> pd.DataFrame:
    """The same table as `text_signals`, one caption at a time, the way it is first written:
    the reference the batched version is tested and benchmarked against."""
    from textblob.en.taggers import PatternTagger

    index = captions.index if isinstance(captions, pd.Series) else pd.RangeIndex(len(captions))
    frames = []
    for caption in captions:
        text, error = prepare(caption, max_chars)
        row: dict[str, Any] = dict.fromkeys(columns(tokenizer is not None), math.nan)
        if text is not None:
            words = WORD_RE.findall(text.lower())
            row["words"] = len(words)
            if tokenizer is not None:
                row["tokens"] = len(tokenizer.encode(text, add_special_tokens=False))
            for n in NGRAM_ORDERS:
                grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
                row[f"distinct_{n}"] = len(set(grams)) / len(grams) if grams else 0.0
            grams = [tuple(words[i:i + repetition_n])
                     for i in range(len(words) - repetition_n + 1)]
            frequency = Counter(grams)
            repeated = sum(count for count in frequency.values() if count > 1)
            row["word_repetition_ratio"] = repeated / len(grams) if grams else 0.0
            special = sum(1 for char in text if not (char.isalnum() or char.isspace()))
            row["special_char_ratio"] = special / len(text) if text else 0.0
            row["lexical_richness"] = len(set(words)) / math.sqrt(len(words)) if words else 0.0
            tags = [tag for _, tag in PatternTagger().tag(text)]
            row["nouns"] = sum(tag.startswith("NN") for tag in tags)
            row["verbs"] = sum(tag.startswith("VB") for tag in tags)
            row["adjectives"] = sum(tag.startswith("JJ") for tag in tags)
        row["text_error"] = error
        frames.append(pd.DataFrame([row]))
    if not frames:
        return text_signals([], tokenizer, max_chars=max_chars, repetition_n=repetition_n)
    table = pd.concat(frames, ignore_index=True)
    table.index = index
    return table.astype(dict.fromkeys(columns(tokenizer is not None), "float64"))
