"""Image signals from encoded bytes: size, aspect ratio, sharpness and grey-level entropy.

Both are measured on the luma ("L") of the image decoded as RGB, the way the captioner sees it
(`sail_pipeline.captioning.backends.decode_image`). `sharpness` is the variance of the
4-neighbour Laplacian with edges mirrored (scipy.ndimage.laplace's default), high for crisp
edges and near 0 for blur; `entropy` is the Shannon entropy in bits of the 256-bin histogram,
0 for a constant image and 8 at most.

`image_signals` decodes one image at a time (the codec is the irreducible part) and measures
all images of one size as a single array; `naive_image_signals` is the per-image reference
it must agree with.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from sail_pipeline.captioning.backends import decode_image

COLUMNS = ["width", "height", "aspect_ratio", "sharpness", "entropy"]
MISSING_IMAGE = "missing_image"
# Pixels measured per array: a group of same-size images is cut into stacks of about this
# many (a few MB of int16 and int64 temporaries), which stay in cache and bound memory.
_STACK_PIXELS = 1 << 20
# PIL's messages name the BytesIO object by address; without it equal failures read equal.
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _luma(data: Any) -> np.ndarray | str:
    """The image's luma as a 2-D uint8 array, or why there is none."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        return MISSING_IMAGE
    image = decode_image(bytes(data))
    if isinstance(image, str):
        return _ADDRESS.sub("", image)
    return np.asarray(image.convert("L"))


def _laplacian_variance(stack: np.ndarray) -> np.ndarray:
    """Per image of a (k, h, w) uint8 stack. The Laplacian of 8-bit pixels is an integer in
    [-1020, 1020] (int16), so its sums are exact and so is the variance, up to the one final
    rounding; a float two-pass variance would round at every step."""
    k, height, width = stack.shape
    # Edge pixels repeated: scipy.ndimage's "reflect" mode (numpy's "symmetric").
    padded = np.empty((k, height + 2, width + 2), dtype=np.int16)
    padded[:, 1:-1, 1:-1] = stack
    padded[:, 0, 1:-1], padded[:, -1, 1:-1] = stack[:, 0], stack[:, -1]
    padded[:, :, 0], padded[:, :, -1] = padded[:, :, 1], padded[:, :, -2]
    laplacian = padded[:, :-2, 1:-1] + padded[:, 2:, 1:-1]
    laplacian += padded[:, 1:-1, :-2]
    laplacian += padded[:, 1:-1, 2:]
    laplacian -= 4 * padded[:, 1:-1, 1:-1]
    flat = laplacian.reshape(k, -1)
    total = flat.sum(axis=1, dtype=np.int64)
    wide = flat.astype(np.int32)
    squares = (wide * wide).sum(axis=1, dtype=np.int64)
    n = height * width
    # Python integers: n * sum of squares overflows int64 from about 16 megapixels.
    return np.array([(n * int(q) - int(t) * int(t)) / (n * n)
                     for t, q in zip(total, squares, strict=True)], dtype=np.float64)


def _entropy(stack: np.ndarray) -> np.ndarray:
    """Per image of a (k, h, w) uint8 stack: all k histograms from one bincount."""
    k = len(stack)
    pixels = stack.reshape(k, -1)
    bins = (np.arange(k, dtype=np.int64)[:, None] * 256 + pixels).ravel()
    p = np.bincount(bins, minlength=k * 256).reshape(k, 256) / pixels.shape[1]
    log_p = np.zeros_like(p)
    np.log2(p, out=log_p, where=p > 0)
    return -(p * log_p).sum(axis=1) + 0.0  # + 0.0: a constant image is 0.0, not -0.0


def image_signals(images: Sequence[Any] | pd.Series) -> pd.DataFrame:
    """One row per encoded image, in order, with its index; a row that cannot be decoded has
    NaN signals and `image_error` "undecodable: <reason>" (or "missing_image": no bytes)."""
    index = images.index if isinstance(images, pd.Series) else pd.RangeIndex(len(images))
    lumas = [_luma(data) for data in images]
    values = np.full((len(lumas), len(COLUMNS)), np.nan)
    errors: list[str | None] = [None] * len(lumas)
    by_shape: dict[tuple[int, int], list[int]] = {}
    for row, luma in enumerate(lumas):
        if isinstance(luma, str):
            errors[row] = luma
        else:
            by_shape.setdefault(luma.shape, []).append(row)
    for (height, width), rows in by_shape.items():
        step = max(1, _STACK_PIXELS // (height * width))
        for start in range(0, len(rows), step):
            chunk = rows[start:start + step]
            stack = np.stack([lumas[row] for row in chunk])
            values[chunk, 0] = width
            values[chunk, 1] = height
            values[chunk, 2] = max(width, height) / min(width, height)
            values[chunk, 3] = _laplacian_variance(stack)
            values[chunk, 4] = _entropy(stack)
    frame = pd.DataFrame(values, columns=COLUMNS, index=index)
    frame["image_error"] = pd.Series(errors, index=index, dtype=object)
    return frame


def naive_image_signals(images: Sequence[Any] | pd.Series) -> pd.DataFrame:
    """The same table as `image_signals`, one image at a time with scipy, as first written."""
    from scipy import ndimage, stats

    index = images.index if isinstance(images, pd.Series) else pd.RangeIndex(len(images))
    rows = []
    for data in images:
        row: dict[str, Any] = dict.fromkeys(COLUMNS, np.nan) | {"image_error": None}
        luma = _luma(data)
        if isinstance(luma, str):
            row["image_error"] = luma
        else:
            height, width = luma.shape
            histogram, _ = np.histogram(luma, bins=256, range=(0, 256))
            row |= {"width": width, "height": height,
                    "aspect_ratio": max(width, height) / min(width, height),
                    "sharpness": ndimage.laplace(luma.astype(np.float64)).var(),
                    "entropy": stats.entropy(histogram, base=2)}
        rows.append(pd.DataFrame([row]))
    if not rows:
        return image_signals([])
    table = pd.concat(rows, ignore_index=True)
    table.index = index
    return table.astype(dict.fromkeys(COLUMNS, "float64"))
