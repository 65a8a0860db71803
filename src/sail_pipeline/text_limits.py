"""Caps on text before it reaches a tokenizer or a model, and the reasons they are recorded with.

A model's attention memory grows with the square of its input's length, and a tokenizer's
memory with the text's: one uncapped 100 KB alt-text in a batch took a whole run to 20 GB and
the kernel killed it. So every path where user text meets a model caps it, by one of two rules:

- **truncate** the part of a prompt that is context (an alt-text inside the recaption prompt, a
  caption under judgement), and count the row as truncated;
- **reject** a row whose text is the thing being learnt or answered (an SFT conversation, an
  evaluation prompt) when it does not fit, with a reason, in that stage's accounting.

Character caps come first because they bound the tokenizer too: a text of more than
`max_tokens * longest_token_chars` characters cannot fit in `max_tokens` tokens, whatever it
says, so it is rejected without being tokenized. This module imports nothing heavy.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# The reasons, one vocabulary for every stage's accounting.
ALT_TEXT_TRUNCATED = "alt_text_truncated"
PROMPT_TOO_LONG = "prompt_too_long"


@dataclass(frozen=True)
class CappedText:
    """A text cut to at most `limit` characters, and how long it was before."""

    text: str
    original_chars: int

    @property
    def truncated(self) -> bool:
        return self.original_chars > len(self.text)


def cap_chars(text: str, limit: int) -> CappedText:
    """`text` cut to `limit` characters; at the last whitespace in the final tenth when there is
    one, so a word is not split (the model reads a shorter text, never a broken word)."""
    if limit <= 0:
        raise ValueError(f"a character limit must be positive, got {limit}")
    if len(text) <= limit:
        return CappedText(text, len(text))
    cut = text[:limit]
    space = cut.rfind(" ", limit - max(1, limit // 10))
    if space > 0:
        cut = cut[:space]
    return CappedText(cut.rstrip(), len(text))


def longest_token_chars(vocabulary: Iterable[str]) -> int:
    """The most characters one token of this vocabulary can stand for (an upper bound).

    A byte-level BPE token's string has one character per byte it stands for, and a character
    is at least one byte, so its length bounds the characters it can cover.
    """
    return max((len(token) for token in vocabulary), default=1) or 1


def cannot_fit(text_chars: int, max_tokens: int, longest: int) -> bool:
    """True when a text of `text_chars` characters needs more than `max_tokens` tokens for
    certain: then it is rejected without tokenizing it."""
    return text_chars > max_tokens * longest


def too_long_reason(tokens: int | None, limit: int, chars: int | None = None) -> str:
    """The stored reason of a prompt that does not fit (`tokens` None: not even tokenized)."""
    measured = f"{tokens} tokens" if tokens is not None else f"{chars} characters"
    return (f"{PROMPT_TOO_LONG}: {measured}, more than the {limit} tokens the model reads "
            f"(context length less the tokens to generate)")
