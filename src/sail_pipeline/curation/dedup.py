"""Exact duplicates by sha256 and near duplicates by a 64-bit DCT perceptual hash."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from itertools import chain, combinations
from math import comb

import numpy as np
from PIL import Image

HASH_BITS = 64
_HASH_SIDE = 8  # the low-frequency corner kept: 8x8 = 64 bits
_RESIZE_SIDE = 32


@lru_cache(maxsize=1)
def _dct_matrix(n: int) -> np.ndarray:
    # DCT-II rows without normalisation; only comparisons against the median matter, and a
    # uniform scale leaves them unchanged (it matches scipy.fft.dct(type=2) up to a factor).
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    return np.cos(np.pi * (2 * x + 1) * k / (2 * n))


def phash(image: Image.Image) -> int:
    """The classic pHash: 32x32 grayscale, 2-D DCT, top-left 8x8 above their median."""
    gray = image.convert("L").resize((_RESIZE_SIDE, _RESIZE_SIDE), Image.Resampling.LANCZOS)
    pixels = np.asarray(gray, dtype=np.float64)
    dct = _dct_matrix(_RESIZE_SIDE)
    low = (dct @ pixels @ dct.T)[:_HASH_SIDE, :_HASH_SIDE]
    bits = (low > np.median(low)).flatten()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


_BYTE_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def popcount(values: np.ndarray) -> np.ndarray:
    """Set bits of each uint64; a byte table, as np.bitwise_count needs numpy 2."""
    as_bytes = values.astype(np.uint64).view(np.uint8).reshape(-1, 8)
    return _BYTE_POPCOUNT[as_bytes].sum(axis=1, dtype=np.int64)


def hash_hex(value: int) -> str:
    return f"{value:016x}"


class ExactDuplicateIndex:
    """sha256 of the original bytes → id of the first kept record with them."""

    def __init__(self) -> None:
        self._first: dict[str, str] = {}

    def match(self, sha256: str) -> str | None:
        return self._first.get(sha256)

    def add(self, record_id: str, sha256: str) -> None:
        self._first.setdefault(sha256, record_id)


def _flips(width: int, radius: int) -> list[int]:
    """Every mask of at most `radius` set bits within `width` bits."""
    return [sum(1 << bit for bit in bits)
            for r in range(radius + 1) for bits in combinations(range(width), r)]


def plan_bands(max_distance: int, expected_size: int) -> tuple[list[tuple[int, int]], int]:
    """Split the 64 bits into m bands and pick the per-band radius r = max_distance // m.

    Pigeonhole: hashes within max_distance differ by at most r bits in at least one band, so
    probing each band's bucket and its neighbours within r finds every near duplicate. m =
    max_distance + 1 (r = 0) is the plain scheme, but its narrow bands make crowded buckets
    (9-bit bands at distance 6: n/512 candidates a lookup, quadratic in practice); wider bands
    with a few probes each are far cheaper. m minimises probes + expected candidates.
    """
    best: tuple[float, int] | None = None
    for m in range(1, min(max_distance + 1, HASH_BITS) + 1):
        widths = _widths(m)
        probes = [sum(comb(w, i) for i in range(max_distance // m + 1)) for w in widths]
        cost = sum(p * (1 + expected_size / 2**w) for p, w in zip(probes, widths, strict=True))
        if best is None or cost < best[0]:
            best = (cost, m)
    assert best is not None
    bands, shift = [], 0
    for width in _widths(best[1]):
        bands.append((shift, width))
        shift += width
    return bands, max_distance // best[1]


def _widths(count: int) -> list[int]:
    return [HASH_BITS // count + (1 if i < HASH_BITS % count else 0) for i in range(count)]


class NearDuplicateIndex:
    """Kept hashes in one bucket table per band, so a lookup compares against few candidates.

    `expected_size` only tunes the band layout; any size works, correctly, at any setting.
    """

    def __init__(self, max_distance: int, expected_size: int = 100_000) -> None:
        if not 0 <= max_distance < HASH_BITS // 2:
            raise ValueError(f"max_distance must be in [0, {HASH_BITS // 2}), got {max_distance}")
        self.max_distance = max_distance
        bands, radius = plan_bands(max_distance, expected_size)
        self._bands = [(shift, (1 << width) - 1) for shift, width in bands]
        self._flips = [_flips(width, radius) for _, width in bands]
        self._buckets: list[dict[int, list[int]]] = [{} for _ in bands]
        self._ids: list[str] = []
        self._hashes = np.zeros(1024, dtype=np.uint64)  # grown by doubling
        # Identical hashes (flat or near-flat images) would pile into one bucket; answer them
        # without scanning it.
        self._identical: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def match(self, value: int) -> tuple[str, int] | None:
        """The closest kept id within max_distance (earliest on a tie), with the distance."""
        if value in self._identical:
            return self._ids[self._identical[value]], 0
        lists = [bucket
                 for (shift, mask), flips, buckets in zip(self._bands, self._flips,
                                                          self._buckets, strict=True)
                 for flip in flips
                 if (bucket := buckets.get(((value >> shift) & mask) ^ flip))]
        if not lists:
            return None
        # Crowded buckets are the cost at scale: compare all candidates in one numpy pass.
        candidates = np.unique(np.fromiter(chain.from_iterable(lists), dtype=np.int64))
        distances = popcount(self._hashes[candidates] ^ np.uint64(value))
        close = np.flatnonzero(distances <= self.max_distance)
        if close.size == 0:
            return None
        # lexsort: smallest distance first, then the earliest kept record.
        best = close[np.lexsort((candidates[close], distances[close]))[0]]
        return self._ids[int(candidates[best])], int(distances[best])

    def add(self, record_id: str, value: int) -> None:
        index = len(self._ids)
        if index == len(self._hashes):
            self._hashes = np.concatenate([self._hashes, np.zeros_like(self._hashes)])
        self._ids.append(record_id)
        self._hashes[index] = np.uint64(value)
        self._identical.setdefault(value, index)
        for (shift, mask), buckets in zip(self._bands, self._buckets, strict=True):
            buckets.setdefault((value >> shift) & mask, []).append(index)


def find_near_duplicates(ids: Sequence[str], hashes: Sequence[int], max_distance: int
                         ) -> dict[str, tuple[str, int]]:
    """Greedy, in input order: each id that is within max_distance of an earlier *kept* id
    maps to (that id, distance); the rest are kept and can absorb later ones."""
    index = NearDuplicateIndex(max_distance)
    duplicates: dict[str, tuple[str, int]] = {}
    for record_id, value in zip(ids, hashes, strict=True):
        found = index.match(value)
        if found is None:
            index.add(record_id, value)
        else:
            duplicates[record_id] = found
    return duplicates
