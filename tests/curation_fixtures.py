"""Builders of messy curation inputs with the outcome each record must end with.

Every builder writes real files and returns {source_id: "kept" or the expected reason}, so a
test (here, or the Kedro-side one) can check each record individually. An id that occurs more
than once lists its outcomes in input order, joined by commas ("kept,duplicate_id"). `seed`
keeps the pictures of different builders distinct, so combining them adds no cross-source
duplicates.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

KEPT = "kept"
SEP = ","


def blocks(seed: int, size: tuple[int, int] = (256, 256), grid: int = 16) -> Image.Image:
    """Random coloured blocks: real structure, so the perceptual hash means something."""
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, 256, size=(grid, grid, 3), dtype=np.uint8)
    return Image.fromarray(cells).resize(size, Image.Resampling.NEAREST)


def encoded(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + tag + data
            + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))


def bomb_png(side: int = 20_000) -> bytes:
    """A valid 1-bit PNG declaring side x side pixels: a few dozen kB on disk."""
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    row = b"\x00" * (1 + (side + 7) // 8)
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", body)
            + _png_chunk(b"IEND", b""))


def near_copy(image: Image.Image) -> bytes:
    """The same picture at 95 % size, re-encoded as JPEG quality 85."""
    smaller = image.resize((round(image.width * 0.95), round(image.height * 0.95)),
                           Image.Resampling.LANCZOS)
    return encoded(smaller, "JPEG", quality=85)


def build_messy_folder(path: Path, seed: int = 0) -> dict[str, str]:
    """An image folder mixing good, odd-but-fixable and broken files (names sort in order)."""
    path.mkdir(parents=True, exist_ok=True)
    expected: dict[str, str] = {}

    def write(name: str, data: bytes, outcome: str, sidecar: bytes | None = None) -> None:
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
        if sidecar is not None:
            (path / name).with_suffix(".txt").write_bytes(sidecar)
        expected[name] = outcome

    plain = blocks(seed + 2)
    write("01_rgb.jpg", encoded(blocks(seed + 1), "JPEG", quality=95), KEPT,
          sidecar="\ufeffa mosaïque of coloured squares\n".encode())  # BOM + non-ASCII
    write("02_plain.png", encoded(plain, "PNG"), KEPT)
    write("03_zero.jpg", b"", "zero_bytes")
    write("04_random.jpg", np.random.default_rng(seed).bytes(4096), "undecodable")
    truncated = encoded(blocks(seed + 5), "JPEG", quality=95)
    write("05_truncated.jpg", truncated[: len(truncated) // 2], "truncated")
    write("06_bomb.png", bomb_png(), "too_many_pixels")
    write("07_tiny.png", encoded(blocks(seed + 7, (8, 8), grid=4), "PNG"), "too_small")
    # 400x40, not 400x20: a 20 px side would already be too_small at the default min_side.
    write("08_strip.png", encoded(blocks(seed + 8, (400, 40), grid=4), "PNG"),
          "extreme_aspect_ratio")
    write("09_cmyk.jpg", encoded(blocks(seed + 9).convert("CMYK"), "JPEG", quality=95), KEPT)
    palette = blocks(seed + 10).quantize(colors=16)
    write("10_palette_alpha.png", encoded(palette, "PNG", transparency=0), KEPT)
    gray = np.asarray(blocks(seed + 11).convert("L"), dtype=np.uint16) * 257
    write("11_gray16.png", encoded(Image.fromarray(gray), "PNG"), KEPT)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": stored 120x80, shown 80x120
    write("12_exif_rotated.jpg",
          encoded(blocks(seed + 12, (120, 80), grid=6), "JPEG", quality=95, exif=exif), KEPT)
    write("13_bad_utf8.png", encoded(blocks(seed + 13), "PNG"), "alt_text_not_utf8",
          sidecar=b"\xff\xfe bad")
    write("14_empty_alt.png", encoded(blocks(seed + 14), "PNG"), KEPT, sidecar=b"  \n")
    shutil.copyfile(path / "01_rgb.jpg", path / "15_exact_copy.jpg")
    expected["15_exact_copy.jpg"] = "exact_duplicate"
    write("16_near_copy.jpg", near_copy(plain), "near_duplicate")
    write("17_different.png", encoded(blocks(seed + 17), "PNG"), KEPT)
    rgba = blocks(seed + 18).convert("RGBA")
    rgba.putalpha(128)
    write("sub/18_nested_rgba.png", encoded(rgba, "PNG"), KEPT)
    # Not an image: a record all the same, quarantined as unsupported (never skipped).
    (path / "README.md").write_text("notes about this folder\n")
    expected["README.md"] = "unsupported"
    return expected


def _add_member(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def build_webdataset(path: Path, seed: int = 100) -> dict[str, str]:
    """Two shards (the second cut inside its last member) and a file that is not a tar."""
    path.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path / "shard-000.tar", "w") as archive:
        _add_member(archive, "s000.jpg", encoded(blocks(seed), "JPEG"))
        _add_member(archive, "s000.txt", b"caption from txt")
        _add_member(archive, "s001.json", json.dumps({"caption": "caption from json"}).encode())
        _add_member(archive, "s001.png", encoded(blocks(seed + 1), "PNG"))
        _add_member(archive, "s002.jpg", np.random.default_rng(seed).bytes(2048))
        _add_member(archive, "s003.txt", b"a caption without an image")
    cut = path / "shard-001.tar"
    with tarfile.open(cut, "w") as archive:
        _add_member(archive, "s004.webp", encoded(blocks(seed + 4), "WEBP", lossless=True))
        _add_member(archive, "s000.jpg", encoded(blocks(seed + 5), "JPEG"))
        _add_member(archive, "s005.jpg", encoded(blocks(seed + 6), "JPEG"))
    data = cut.read_bytes()
    # Cut inside s005.jpg's data: its header survives, its bytes do not.
    cut.write_bytes(data[: data.index(b"s005.jpg") + 512 + 300])
    (path / "shard-002.tar").write_bytes(os.urandom(3000))
    return {
        # the second s000 (in shard-001, a different picture) carries an id already seen
        "s000": f"{KEPT}{SEP}duplicate_id",
        "s001": KEPT,
        "s002": "undecodable",
        "s003": "no_image",
        "s004": KEPT,
        "s005": "reader_error",
        "shard-001.tar": "reader_error",
        "shard-002.tar": "reader_error",
    }


def build_parquet_bytes(path: Path, seed: int = 200) -> dict[str, str]:
    """`path` is the .parquet file: image bytes inline, one row null, one undecodable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [
        ("p0", encoded(blocks(seed), "PNG"), "first caption"),
        ("p1", b"not an image at all", "second"),
        ("p2", None, "no image here"),
        ("p3", encoded(blocks(seed + 3), "JPEG"), None),
        ("p0", encoded(blocks(seed + 4), "PNG"), "same id again"),
    ]
    pd.DataFrame(rows, columns=["key", "jpg", "caption"]).to_parquet(path)
    return {"p0": f"{KEPT}{SEP}duplicate_id", "p1": "undecodable", "p2": "no_image", "p3": KEPT}


def build_parquet_paths(path: Path, seed: int = 300) -> dict[str, str]:
    """`path` is the .parquet file; its `file` column is relative to its folder."""
    images = path.parent / "img"
    images.mkdir(parents=True, exist_ok=True)
    (images / "a.png").write_bytes(encoded(blocks(seed), "PNG"))
    (images / "b.jpg").write_bytes(encoded(blocks(seed + 1), "JPEG"))
    rows = [("img/a.png", "alt a"), ("img/missing.png", "alt m"), ("img/b.jpg", "alt b")]
    pd.DataFrame(rows, columns=["file", "text"]).to_parquet(path)
    return {"img/a.png": KEPT, "img/missing.png": "missing_file", "img/b.jpg": KEPT}


def build_llava(path: Path, seed: int = 400) -> dict[str, str]:
    """`path` is the JSON file; images live in `path.parent / "images"`."""
    images = path.parent / "images"
    images.mkdir(parents=True, exist_ok=True)
    (images / "a.png").write_bytes(encoded(blocks(seed), "PNG"))
    (images / "b.jpg").write_bytes(encoded(blocks(seed + 1), "JPEG"))

    def chat(answer: str) -> list[dict[str, str]]:
        return [{"from": "human", "value": "<image>\nDescribe the picture."},
                {"from": "gpt", "value": answer}]

    entries = [
        {"id": "l0", "image": "a.png",
         "conversations": chat("A grid of <image> coloured squares.")},
        {"id": "l1", "image": "missing.png", "conversations": chat("Gone.")},
        {"id": "l0", "image": "b.jpg", "conversations": chat("Same id, other image.")},
        {"id": "l2", "conversations": [{"from": "human", "value": "Text only?"},
                                       {"from": "gpt", "value": "Yes."}]},
        {"id": 3, "image": "b.jpg", "conversations": chat("Numeric id.")},
    ]
    path.write_text(json.dumps(entries))
    return {"l0": f"{KEPT}{SEP}duplicate_id", "l1": "missing_file", "l2": "no_image", "3": KEPT}


def build_other_sources(root: Path) -> tuple[list, dict[str, dict[str, str]]]:
    """Every source kind but a folder, built under `root`, then the world: (their specs, in
    this order; {source name: its expected outcomes}), for tests that curate everything."""
    from sail_pipeline.schema import LlavaSource, ParquetSource, WebDatasetSource, WorldSource

    expected = {"wds": build_webdataset(root / "wds"),
                "pq_bytes": build_parquet_bytes(root / "pq_bytes" / "data.parquet"),
                "pq_paths": build_parquet_paths(root / "pq_paths" / "index.parquet"),
                "llava": build_llava(root / "llava" / "chat.json")}
    specs = [
        WebDatasetSource(kind="webdataset", name="wds", shards=str(root / "wds" / "*.tar")),
        ParquetSource(kind="parquet", name="pq_bytes", path=str(root / "pq_bytes/data.parquet"),
                      image_column="jpg", id_column="key", alt_text_column="caption"),
        ParquetSource(kind="parquet", name="pq_paths", path=str(root / "pq_paths/index.parquet"),
                      path_column="file", alt_text_column="text"),
        LlavaSource(kind="llava", name="llava", path=str(root / "llava" / "chat.json"),
                    image_folder=str(root / "llava" / "images")),
        WorldSource(kind="world"),
    ]
    return specs, expected
