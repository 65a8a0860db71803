"""Every conversation of a candidate set ends kept or rejected with a reason, before training.

Kept rows gain `n_tokens`: the sample's length as the trainer encodes it (chat template, image
tokens and all), so a mixture can leave out what a stage's `max_seq_len` cannot hold without
encoding anything twice.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from enum import Enum
from typing import Any

import pandas as pd
from PIL import Image

from sail_pipeline.modeling.tokenizer import IMAGE_PLACEHOLDER
from sail_pipeline.text_limits import cannot_fit

CANDIDATE_COLUMNS = ["id", "image", "messages"]


class Rejection(str, Enum):
    """Why a conversation was rejected; the accounting counts exactly these values."""

    DUPLICATE_ID = "duplicate_id"
    MESSAGES_MALFORMED = "messages_malformed"        # not a JSON list of {role, content} strings
    ROLE_ORDER = "role_order"                        # not (system) user, assistant, user, ...
    EMPTY_ASSISTANT_TURN = "empty_assistant_turn"
    IMAGE_MISSING = "image_missing"                  # `<image>` is referenced, no image is given
    IMAGE_NOT_REFERENCED = "image_not_referenced"    # an image with no `<image>` to place it
    IMAGE_PLACEHOLDER_MISPLACED = "image_placeholder_misplaced"  # not once, in a user turn
    IMAGE_UNDECODABLE = "image_undecodable"
    MASK_MISMATCH = "mask_mismatch"                  # template and tokenizer disagree on spans
    LONGER_THAN_MAX_SEQ_LEN = "longer_than_max_seq_len"
    # raised by a user set's reader, before validation
    UNREADABLE_ENTRY = "unreadable_entry"
    ROLE_UNKNOWN = "role_unknown"


_ROLES = ("user", "assistant")


def conversation_problem(messages: Any) -> Rejection | None:
    """What is wrong with a parsed conversation's turns, text only (None: nothing)."""
    if not isinstance(messages, list) or not messages or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str)
            and isinstance(m.get("content"), str) for m in messages):
        return Rejection.MESSAGES_MALFORMED
    turns = messages[1:] if messages[0]["role"] == "system" else messages
    roles = [m["role"] for m in turns]
    expected = [_ROLES[i % 2] for i in range(len(roles))]
    if not roles or roles != expected or roles[-1] != "assistant":
        return Rejection.ROLE_ORDER
    if any(not m["content"].strip() for m in turns if m["role"] == "assistant"):
        return Rejection.EMPTY_ASSISTANT_TURN
    return None


def _placeholder_problem(messages: list[dict], has_image: bool) -> Rejection | None:
    counts = [m["content"].count(IMAGE_PLACEHOLDER) for m in messages]
    total = sum(counts)
    if total == 0:
        return Rejection.IMAGE_NOT_REFERENCED if has_image else None
    if not has_image:
        return Rejection.IMAGE_MISSING
    placed = [m["role"] for m, c in zip(messages, counts, strict=True) if c]
    if total != 1 or placed != ["user"]:
        return Rejection.IMAGE_PLACEHOLDER_MISPLACED
    return None


def _image_size(data: bytes) -> tuple[int, int] | None:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return image.size
    except Exception:  # noqa: BLE001 - every decoder error means the same: not an image
        return None


# (messages text, number of tiles) -> (n_tokens, mask mismatch); most sets repeat a few
# question and answer strings, so most rows are encoded once per set.
Encoder = Callable[[list[dict], int], tuple[int, bool]]


def processor_encoder(processor: Any) -> Encoder:
    """Token counts exactly as the trainer's `ConversationData` encodes a row."""
    cache: dict[tuple[str, int], tuple[int, bool]] = {}

    def encode(messages: list[dict], n_tiles: int) -> tuple[int, bool]:
        key = (json.dumps(messages, sort_keys=True), n_tiles)
        if key not in cache:
            encoded = processor.encode(messages, n_tiles)
            cache[key] = (len(encoded.input_ids), encoded.mask_mismatch)
        return cache[key]

    return encode


def validate_conversations(table: pd.DataFrame, encode: Encoder, num_tiles: Callable[[int, int], int],
                           max_seq_len: int, longest_token: int | None = None
                           ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(kept rows with `n_tokens`, rejected rows as `id`, `reason`).

    `longest_token`: the most characters one token stands for (`text_limits`); a row with
    more text than `max_seq_len` such tokens is rejected as too long without encoding it.
    """
    kept, rejected = [], []
    seen: set[str] = set()
    sizes: dict[bytes, tuple[int, int] | None] = {}
    for row in table.itertuples(index=False):
        reason, n_tokens = _check(row, seen, sizes, encode, num_tiles, max_seq_len,
                                  longest_token)
        if reason is None:
            kept.append((row.id, row.image, row.messages, n_tokens))
        else:
            rejected.append((str(row.id), reason.value))
    return (pd.DataFrame(kept, columns=[*CANDIDATE_COLUMNS, "n_tokens"]),
            pd.DataFrame(rejected, columns=["id", "reason"]))


def _check(row: Any, seen: set[str], sizes: dict, encode: Encoder,
           num_tiles: Callable[[int, int], int], max_seq_len: int, longest_token: int | None
           ) -> tuple[Rejection | None, int]:
    if row.id in seen:
        return Rejection.DUPLICATE_ID, 0
    seen.add(row.id)
    try:
        messages = json.loads(row.messages) if isinstance(row.messages, str) else None
    except ValueError:
        messages = None
    problem = conversation_problem(messages)
    if problem is not None:
        return problem, 0
    image = row.image if isinstance(row.image, bytes | bytearray) and row.image else None
    problem = _placeholder_problem(messages, image is not None)
    if problem is not None:
        return problem, 0
    n_tiles = 0
    if image is not None:
        if image not in sizes:
            sizes[image] = _image_size(image)
        if sizes[image] is None:
            return Rejection.IMAGE_UNDECODABLE, 0
        n_tiles = num_tiles(*sizes[image])
    if longest_token is not None and cannot_fit(sum(len(m["content"]) for m in messages),
                                                max_seq_len, longest_token):
        return Rejection.LONGER_THAN_MAX_SEQ_LEN, 0
    n_tokens, mismatch = encode(messages, n_tiles)
    if mismatch:
        return Rejection.MASK_MISMATCH, 0
    if n_tokens > max_seq_len:
        return Rejection.LONGER_THAN_MAX_SEQ_LEN, 0
    return None, n_tokens
