"""Exact duplicates by sha256 and near duplicates by a 64-bit DCT perceptual hash.

Which copy stays: of near duplicates, the first in input order. Of exact duplicates (the same
original bytes), the first *with an alt-text*, else the first (`prefer_new_copy`): the bytes
are the same, so only the caption tells the copies apart, and the one that has it is kept.
"""

from __future__ import annotations

import sys
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


# A Python int, str or dict entry costs 30 to 100 bytes: indexes built from them held ~900
# bytes a kept image. The classes below keep the same facts in numpy arrays and one byte
# buffer (`nbytes`): sha256 48 bytes, pHash 72 (8, and 16 in each of 4 bands at distance 6),
# the id its length + 32, so that curation's memory barely grows with a folder
# (benchmarks/curation_many_files.py measures it).
_MASK64 = (1 << 64) - 1
# The newest keys wait in a dict until they are 1/8 of the sorted run, within these bounds:
# merging stays cheap over a run, and the dict a few hundred kB at most.
_TAIL_MIN, _TAIL_MAX = 1024, 8192


class GrowingArray:
    """Values by position in a numpy array that doubles when full."""

    def __init__(self, dtype: type, width: int | None = None) -> None:
        self._data = np.zeros((1024,) if width is None else (1024, width), dtype=dtype)
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def append(self, value: object) -> int:
        """Stores `value` at the next position; returns that position."""
        if self._size == len(self._data):
            # np.zeros is calloc: the new half's pages are resident only once written.
            grown = np.zeros((2 * len(self._data), *self._data.shape[1:]), self._data.dtype)
            grown[:self._size] = self._data
            self._data = grown
        self._data[self._size] = value
        self._size += 1
        return self._size - 1

    @property
    def values(self) -> np.ndarray:
        return self._data[:self._size]

    @property
    def nbytes(self) -> int:
        """Bytes in use (the capacity not yet written is not resident)."""
        return self.values.nbytes


class IdPool:
    """Strings by position, packed in one byte buffer: len + 8 bytes each."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._ends = GrowingArray(np.int64)

    def __len__(self) -> int:
        return len(self._ends)

    def append(self, text: str) -> int:
        # surrogatepass: a str from JSON may hold a lone surrogate, and must come back equal.
        self._data += text.encode("utf-8", "surrogatepass")
        return self._ends.append(len(self._data))

    def __getitem__(self, position: int) -> str:
        ends = self._ends.values
        start = int(ends[position - 1]) if position else 0
        return self._data[start:int(ends[position])].decode("utf-8", "surrogatepass")

    @property
    def nbytes(self) -> int:
        return sys.getsizeof(self._data) + self._ends.nbytes


class KeyIndex:
    """Positions by integer key: a sorted numpy run searched by bisection, and the newest keys
    in a dict until they are merged into the run.

    Positions must be added in non-decreasing order; each key's positions then come back
    earliest first. 16 bytes a key (12 with uint32 keys), against ~100 for a dict of Python ints.
    """

    def __init__(self, dtype: type = np.uint64) -> None:
        self._keys = np.zeros(0, dtype=dtype)
        self._positions = np.zeros(0, dtype=np.int64)
        self._tail: dict[int, list[int]] = {}
        self._tail_size = 0

    def __len__(self) -> int:
        return len(self._positions) + self._tail_size

    def add(self, key: int, position: int) -> None:
        self._tail.setdefault(key, []).append(position)
        self._tail_size += 1
        if self._tail_size >= min(max(len(self._positions) // 8, _TAIL_MIN), _TAIL_MAX):
            self._merge()

    def _merge(self) -> None:
        size = self._tail_size
        keys = np.fromiter(chain.from_iterable([key] * len(positions)
                                               for key, positions in self._tail.items()),
                           dtype=self._keys.dtype, count=size)
        positions = np.fromiter(chain.from_iterable(self._tail.values()), dtype=np.int64,
                                count=size)
        order = np.lexsort((positions, keys))
        keys, positions = keys[order], positions[order]
        # After the run's equal keys ("right"): their positions are all earlier.
        at = np.searchsorted(self._keys, keys, side="right")
        self._keys = np.insert(self._keys, at, keys)
        self._positions = np.insert(self._positions, at, positions)
        self._tail.clear()
        self._tail_size = 0

    def find(self, key: int) -> list[int]:
        """The positions added with `key`, earliest first."""
        found: list[int] = []
        if len(self._keys):
            low = int(np.searchsorted(self._keys, key, side="left"))
            high = int(np.searchsorted(self._keys, key, side="right"))
            found = self._positions[low:high].tolist()
        return found + self._tail.get(key, [])

    def find_many(self, keys: np.ndarray) -> np.ndarray:
        """The positions added with any of `keys` (distinct), in no particular order."""
        parts: list[np.ndarray] = []
        if len(self._keys):
            low = np.searchsorted(self._keys, keys, side="left")
            counts = np.searchsorted(self._keys, keys, side="right") - low
            total = int(counts.sum())
            if total:
                # The ranges [low, low + count) laid end to end, without a Python loop.
                starts = np.repeat(low - (np.cumsum(counts) - counts), counts)
                parts.append(self._positions[starts + np.arange(total)])
        if self._tail:
            tail = [p for key in keys.tolist() for p in self._tail.get(key, ())]
            if tail:
                parts.append(np.array(tail, dtype=np.int64))
        if not parts:
            return np.zeros(0, dtype=np.int64)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    @property
    def nbytes(self) -> int:
        # The dict of the newest keys is bounded (_TAIL_MAX entries) and left out.
        return self._keys.nbytes + self._positions.nbytes


def _words(sha256: str) -> np.ndarray:
    return np.frombuffer(bytes.fromhex(sha256), dtype=np.uint64)


class ExactHashIndex:
    """sha256 digests by position (the n-th `add` is position n): 48 bytes each."""

    def __init__(self) -> None:
        self._digests = GrowingArray(np.uint64, width=4)
        self._index = KeyIndex()

    def __len__(self) -> int:
        return len(self._digests)

    def add(self, sha256: str) -> int:
        words = _words(sha256)
        position = self._digests.append(words)
        self._index.add(int(words[0]), position)
        return position

    def match(self, sha256: str) -> int | None:
        """The earliest position holding the same digest, all 256 bits compared."""
        words = _words(sha256)
        digests = self._digests.values
        for position in self._index.find(int(words[0])):
            if np.array_equal(digests[position], words):
                return position
        return None

    @property
    def nbytes(self) -> int:
        return self._digests.nbytes + self._index.nbytes


class NearHashIndex:
    """64-bit perceptual hashes by position, searched band by band (`plan_bands`).

    `expected_size` only tunes the band layout; any size works, correctly, at any setting.
    """

    def __init__(self, max_distance: int, expected_size: int = 100_000) -> None:
        if not 0 <= max_distance < HASH_BITS // 2:
            raise ValueError(f"max_distance must be in [0, {HASH_BITS // 2}), got {max_distance}")
        self.max_distance = max_distance
        bands, radius = plan_bands(max_distance, expected_size)
        # All bands in one index, each key tagged with its band's number in the high 32 bits
        # (bands are 32 bits or narrower whenever there are several): one search a lookup.
        self._tags = [band << 32 if len(bands) > 1 else 0 for band in range(len(bands))]
        self._bands = [(shift, (1 << width) - 1) for shift, width in bands]
        flips = [_flips(width, radius) for _, width in bands]
        self._shifts = np.array([shift for shift, _ in bands], dtype=np.uint64)
        self._masks = np.array([mask for _, mask in self._bands], dtype=np.uint64)
        self._counts = np.array([len(f) for f in flips])
        self._tagged_flips = np.array([tag | flip for tag, f in zip(self._tags, flips, strict=True)
                                       for flip in f], dtype=np.uint64)
        self._index = KeyIndex()
        self._hashes = GrowingArray(np.uint64)

    def __len__(self) -> int:
        return len(self._hashes)

    def add(self, value: int) -> int:
        position = self._hashes.append(value)
        for tag, (shift, mask) in zip(self._tags, self._bands, strict=True):
            self._index.add(tag | ((value >> shift) & mask), position)
        return position

    def match(self, value: int) -> tuple[int, int] | None:
        """The closest position within max_distance (earliest on a tie), with the distance."""
        keys = (np.uint64(value) >> self._shifts) & self._masks
        probes = self._tagged_flips ^ np.repeat(keys, self._counts)
        candidates = np.unique(self._index.find_many(probes))
        if candidates.size == 0:
            return None
        # Crowded buckets are the cost at scale: compare all candidates in one numpy pass.
        distances = popcount(self._hashes.values[candidates] ^ np.uint64(value))
        close = np.flatnonzero(distances <= self.max_distance)
        if close.size == 0:
            return None
        # lexsort: smallest distance first, then the earliest position.
        best = close[np.lexsort((candidates[close], distances[close]))[0]]
        return int(candidates[best]), int(distances[best])

    @property
    def nbytes(self) -> int:
        return self._hashes.nbytes + self._index.nbytes


class SeenIds:
    """Every record id seen so far, each once, compared exactly (the hash only finds it)."""

    def __init__(self) -> None:
        self.pool = IdPool()
        self._index = KeyIndex()
        self._repeats: dict[str, int] = {}  # ids seen more than once: rare, so a plain dict

    def see(self, record_id: str) -> tuple[int, int]:
        """The id's position in `pool`, and how many times it was seen before this time."""
        # hash() differs between processes, never within one, and the index lives in one.
        key = hash(record_id) & _MASK64
        for position in self._index.find(key):
            if self.pool[position] == record_id:
                before = self._repeats.get(record_id, 1)
                self._repeats[record_id] = before + 1
                return position, before
        position = self.pool.append(record_id)
        self._index.add(key, position)
        return position, 0

    @property
    def nbytes(self) -> int:
        return self.pool.nbytes + self._index.nbytes


def prefer_new_copy(kept_has_alt_text: bool, new_has_alt_text: bool) -> bool:
    """The exact-duplicate rule: does a new copy of the kept record's bytes replace it?

    Only when the new copy has an alt-text and the kept one has none: of identical bytes,
    the first copy with an alt-text is kept, and the first copy when none has one.
    """
    return new_has_alt_text and not kept_has_alt_text


class ExactDuplicateIndex:
    """sha256 of the original bytes → id of the kept record with them: the first with an
    alt-text, else the first (`prefer_new_copy`)."""

    def __init__(self) -> None:
        self._hashes = ExactHashIndex()
        self._ids = IdPool()  # every id ever kept, replaced ones too
        self._kept = GrowingArray(np.int64)  # hash position → its kept id's position in _ids
        self._has_alt_text = GrowingArray(np.bool_)

    def match(self, sha256: str) -> str | None:
        position = self._hashes.match(sha256)
        return None if position is None else self._ids[int(self._kept.values[position])]

    def add(self, record_id: str, sha256: str, has_alt_text: bool = False) -> str | None:
        """Offers a record: None when its bytes are new (it is kept); else the id of the copy
        that is dropped, the kept one when the new copy replaces it, or `record_id`."""
        position = self._hashes.match(sha256)
        if position is None:
            self._hashes.add(sha256)
            self._kept.append(self._ids.append(record_id))
            self._has_alt_text.append(has_alt_text)
            return None
        if not prefer_new_copy(bool(self._has_alt_text.values[position]), has_alt_text):
            return record_id
        dropped = self._ids[int(self._kept.values[position])]
        self._kept.values[position] = self._ids.append(record_id)
        self._has_alt_text.values[position] = True
        return dropped


class NearDuplicateIndex:
    """Kept perceptual hashes with their ids: the closest kept id within max_distance."""

    def __init__(self, max_distance: int, expected_size: int = 100_000) -> None:
        self._hashes = NearHashIndex(max_distance, expected_size)
        self._ids = IdPool()
        self.max_distance = max_distance

    def __len__(self) -> int:
        return len(self._hashes)

    def match(self, value: int) -> tuple[str, int] | None:
        """The closest kept id within max_distance (earliest on a tie), with the distance."""
        found = self._hashes.match(value)
        return None if found is None else (self._ids[found[0]], found[1])

    def add(self, record_id: str, value: int) -> None:
        self._hashes.add(value)
        self._ids.append(record_id)


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
