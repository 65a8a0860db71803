"""The fixed vocabulary of quarantine reasons, and the stage each one belongs to."""

from __future__ import annotations

from enum import Enum


class Reason(str, Enum):
    """Why a record was quarantined; the funnel counts exactly these values."""

    # ingest: the reader or the id bookkeeping
    READER_ERROR = "reader_error"
    NO_IMAGE = "no_image"
    MISSING_FILE = "missing_file"
    DUPLICATE_ID = "duplicate_id"
    # a file in a source folder that is no image this reader opens (never skipped silently)
    UNSUPPORTED = "unsupported"
    # validate: bytes, alt-text, then the image itself
    ZERO_BYTES = "zero_bytes"
    ALT_TEXT_NOT_UTF8 = "alt_text_not_utf8"
    ALT_TEXT_MISSING = "alt_text_missing"
    ALT_TEXT_EMPTY = "alt_text_empty"
    UNDECODABLE = "undecodable"
    TRUNCATED = "truncated"
    TOO_MANY_PIXELS = "too_many_pixels"
    TOO_SMALL = "too_small"
    EXTREME_ASPECT_RATIO = "extreme_aspect_ratio"
    # dedup
    EXACT_DUPLICATE = "exact_duplicate"
    NEAR_DUPLICATE = "near_duplicate"


INGEST, VALIDATE, DEDUP = "ingest", "validate", "dedup"

STAGE_OF: dict[Reason, str] = {
    Reason.READER_ERROR: INGEST,
    Reason.NO_IMAGE: INGEST,
    Reason.MISSING_FILE: INGEST,
    Reason.DUPLICATE_ID: INGEST,
    Reason.UNSUPPORTED: INGEST,
    Reason.ZERO_BYTES: VALIDATE,
    Reason.ALT_TEXT_NOT_UTF8: VALIDATE,
    Reason.ALT_TEXT_MISSING: VALIDATE,
    Reason.ALT_TEXT_EMPTY: VALIDATE,
    Reason.UNDECODABLE: VALIDATE,
    Reason.TRUNCATED: VALIDATE,
    Reason.TOO_MANY_PIXELS: VALIDATE,
    Reason.TOO_SMALL: VALIDATE,
    Reason.EXTREME_ASPECT_RATIO: VALIDATE,
    Reason.EXACT_DUPLICATE: DEDUP,
    Reason.NEAR_DUPLICATE: DEDUP,
}


class Note(str, Enum):
    """What was done to a kept record; counted in the funnel, never a rejection."""

    EXIF_TRANSPOSED = "exif_transposed"
    CMYK_TO_RGB = "cmyk_to_rgb"
    GRAY_TO_RGB = "gray_to_rgb"
    PALETTE_TO_RGB = "palette_to_rgb"
    ALPHA_ON_WHITE = "alpha_on_white"
    HIGH_BIT_DEPTH_TO_8BIT = "high_bit_depth_to_8bit"
    OTHER_MODE_TO_RGB = "other_mode_to_rgb"
    FIRST_FRAME_ONLY = "first_frame_only"
    # Not "alt_text_empty": a note and a reason must never share a name in the funnel.
    ALT_TEXT_EMPTY_TO_NULL = "alt_text_empty_to_null"
    # longer than `curation.settings.max_alt_text_chars`: cut at a word boundary
    ALT_TEXT_TRUNCATED = "alt_text_truncated"


class Rejection(Exception):
    """Raised inside a check to end a record with a reason; never escapes the curation run."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
