"""Per-record checks and normalisation: bytes, alt-text, then the image itself."""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from PIL import ExifTags, Image, ImageFile, ImageOps, UnidentifiedImageError

from sail_pipeline import identity
from sail_pipeline.curation.formats import readable_formats
from sail_pipeline.curation.reasons import Note, Reason, Rejection
from sail_pipeline.curation.sources import RawRecord
from sail_pipeline.schema import CurationFilterParams
from sail_pipeline.text_limits import cap_chars

_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
# Modes whose `transparency` info (a tRNS chunk or a palette index) means real alpha.
_KEYED_ALPHA_MODES = frozenset({"P", "L", "RGB", "1"})
_HIGH_BIT_MODES_16 = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_WHITE = (255, 255, 255, 255)


@dataclass
class Prepared:
    """A record whose bytes are loaded and whose alt-text passed; the image is not decoded yet."""

    data: bytes
    sha256: str
    alt_text: str | None
    notes: list[Note] = field(default_factory=list)


@dataclass
class ValidImage:
    """A decoded, normalised image (RGB) and what it was before."""

    image: Image.Image
    format: str
    mode_in: str
    notes: list[Note]

    @property
    def width(self) -> int:
        return self.image.width

    @property
    def height(self) -> int:
        return self.image.height


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def load_bytes(record: RawRecord) -> bytes:
    """The record's image bytes, from memory or from its path; a Rejection when there are none."""
    if record.data is not None:
        return record.data
    if record.path is None:
        raise Rejection(Reason.NO_IMAGE, "record has neither bytes nor a path")
    try:
        with open(record.path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        raise Rejection(Reason.MISSING_FILE, f"{record.path} does not exist") from None
    except OSError as exc:
        raise Rejection(Reason.READER_ERROR, f"{record.path}: {_describe(exc)}") from None


def decode_alt_text(raw: bytes | str | None, required: bool, max_chars: int | None = None
                    ) -> tuple[str | None, list[Note]]:
    """Strict UTF-8 text, stripped; empty becomes None (a note, or a rejection if required).

    Longer than `max_chars`: cut at a word boundary, with the note `alt_text_truncated`, so
    that a runaway sidecar is not carried through every table of the run.
    """
    if raw is None:
        if required:
            raise Rejection(Reason.ALT_TEXT_MISSING, "no alt-text and alt_text_required is true")
        return None, []
    if isinstance(raw, bytes):
        try:
            # utf-8-sig: a byte-order mark is an editor artefact, not part of the caption.
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise Rejection(Reason.ALT_TEXT_NOT_UTF8,
                            f"invalid UTF-8 at byte {exc.start}: {raw[:40]!r}") from None
    else:
        text = raw
        try:
            # A str can still hold lone surrogates (from JSON "\ud800"), which no writer accepts.
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise Rejection(Reason.ALT_TEXT_NOT_UTF8,
                            f"unencodable character at {exc.start}") from None
    text = text.strip()
    if not text:
        if required:
            raise Rejection(Reason.ALT_TEXT_EMPTY, "alt-text is empty or whitespace")
        return None, [Note.ALT_TEXT_EMPTY_TO_NULL]
    if max_chars is not None:
        capped = cap_chars(text, max_chars)
        if capped.truncated:
            return capped.text, [Note.ALT_TEXT_TRUNCATED]
    return text, []


def prepare(record: RawRecord, settings: CurationFilterParams) -> Prepared:
    """Load bytes, hash them and check the alt-text: everything short of decoding the image."""
    data = load_bytes(record)
    if not data:
        raise Rejection(Reason.ZERO_BYTES, "file is empty")
    alt_text, notes = decode_alt_text(record.alt_text_raw, settings.alt_text_required,
                                      settings.max_alt_text_chars)
    return Prepared(data, identity.sha256_hex(data, None), alt_text, notes)


@contextmanager
def pil_guards(max_pixels: int) -> Iterator[None]:
    """Pillow's own bomb limit at ours, warnings as errors, and no silent truncation.

    These are process globals; they are restored on exit so other code in the process (a
    training run decoding images) keeps its own settings.
    """
    old_limit, old_truncated = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
    Image.MAX_IMAGE_PIXELS = max_pixels
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = old_limit, old_truncated


def _classify(exc: Exception) -> Rejection:
    if isinstance(exc, Rejection):
        return exc
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return Rejection(Reason.TOO_MANY_PIXELS, str(exc))
    if isinstance(exc, UnidentifiedImageError):
        return Rejection(Reason.UNDECODABLE, "not an image in an allowed format")
    # Pillow reports a cut file as OSError("image file is truncated") or "Truncated File Read".
    if isinstance(exc, EOFError) or "truncat" in str(exc).lower():
        return Rejection(Reason.TRUNCATED, _describe(exc))
    return Rejection(Reason.UNDECODABLE, _describe(exc))


def _check_pixels(width: int, height: int, settings: CurationFilterParams) -> None:
    if width * height > settings.max_pixels:
        raise Rejection(Reason.TOO_MANY_PIXELS,
                        f"{width}x{height} = {width * height} pixels > {settings.max_pixels}")


def _check_geometry(width: int, height: int, settings: CurationFilterParams) -> None:
    if min(width, height) < settings.min_side:
        raise Rejection(Reason.TOO_SMALL, f"{width}x{height}, min_side {settings.min_side}")
    ratio = max(width, height) / min(width, height)
    if ratio > settings.max_aspect_ratio:
        raise Rejection(Reason.EXTREME_ASPECT_RATIO,
                        f"{width}x{height}, ratio {ratio:.2f} > {settings.max_aspect_ratio}")


def check_image(data: bytes, settings: CurationFilterParams) -> ValidImage:
    """Decode fully and normalise to RGB; any failure becomes a Rejection, never a crash."""
    with pil_guards(settings.max_pixels):
        try:
            return _check_image(data, settings)
        except Exception as exc:  # a decoder can fail in any way on hostile bytes
            raise _classify(exc) from None


def _check_image(data: bytes, settings: CurationFilterParams) -> ValidImage:
    formats = list(settings.allowed_formats or readable_formats())
    with Image.open(io.BytesIO(data), formats=formats) as probe:
        image_format, mode_in = str(probe.format), probe.mode
        # The header alone gives the size: refuse a bomb before a single pixel is decoded.
        _check_pixels(*probe.size, settings)
        probe.verify()
    # verify() leaves the image unusable; a fresh open does the full decode that finds cut data.
    with Image.open(io.BytesIO(data), formats=formats) as image:
        image.load()
        notes = [Note.FIRST_FRAME_ONLY] if getattr(image, "is_animated", False) else []
        normalised = normalise(image, notes)
    _check_geometry(normalised.width, normalised.height, settings)
    return ValidImage(normalised, image_format, mode_in, notes)


def _exif_orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(ExifTags.Base.Orientation, 1))
    except Exception:  # broken EXIF says nothing about the pixels; keep them as stored
        return 1


def _on_white(image: Image.Image) -> Image.Image:
    background = Image.new("RGBA", image.size, _WHITE)
    return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")


def _to_8bit(image: Image.Image) -> Image.Image:
    values = np.asarray(image).astype(np.float64)
    if image.mode in _HIGH_BIT_MODES_16:
        scaled = values / 257.0
    else:
        # "I" and "F" carry no declared range: keep 8-bit data, scale 16-bit data, else stretch.
        low, high = float(values.min()), float(values.max())
        if low >= 0 and high <= 255:
            scaled = values
        elif low >= 0 and high <= 65535:
            scaled = values / 257.0
        else:
            scaled = (values - low) * (255.0 / max(high - low, 1e-12))
    return Image.fromarray(np.clip(np.round(scaled), 0, 255).astype(np.uint8), mode="L")


def normalise(image: Image.Image, notes: list[Note]) -> Image.Image:
    """EXIF orientation applied, then 8-bit RGB with alpha composited on white; notes appended.

    Later stages then read one layout, and width/height are those a viewer would show.
    """
    if _exif_orientation(image) != 1:
        image = ImageOps.exif_transpose(image)
        notes.append(Note.EXIF_TRANSPOSED)
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        # A copy: closing the opened file would otherwise take the pixels with it.
        return image.copy()
    if mode in _KEYED_ALPHA_MODES and "transparency" in image.info:
        if mode == "P":
            notes.append(Note.PALETTE_TO_RGB)
        notes.append(Note.ALPHA_ON_WHITE)
        return _on_white(image)
    if mode in _ALPHA_MODES:
        notes.append(Note.ALPHA_ON_WHITE)
        return _on_white(image)
    if mode == "CMYK":
        notes.append(Note.CMYK_TO_RGB)
    elif mode == "P":
        notes.append(Note.PALETTE_TO_RGB)
    elif mode in ("L", "1"):
        notes.append(Note.GRAY_TO_RGB)
    elif mode.startswith("I") or mode == "F":
        notes.append(Note.HIGH_BIT_DEPTH_TO_8BIT)
        image = _to_8bit(image)
    else:
        notes.append(Note.OTHER_MODE_TO_RGB)
    return image.convert("RGB")


def encode_png(image: Image.Image) -> bytes:
    """PNG bytes, so every later stage reads one lossless format."""
    buffer = io.BytesIO()
    # Level 1, as the world's encoder: several times faster than the default, barely larger.
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def validate_record(record: RawRecord, settings: CurationFilterParams
                    ) -> tuple[Prepared, ValidImage] | Rejection:
    """One record on its own, without dedup: the checked pieces, or the reason it fails."""
    if record.error is not None:
        return Rejection(record.error.reason, record.error.detail)
    try:
        prepared = prepare(record, settings)
        return prepared, check_image(prepared.data, settings)
    except Rejection as rejection:
        return rejection
