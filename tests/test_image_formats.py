"""A valid image is never quarantined, and no file in a source folder goes unaccounted for.

The corpus is generated here, not committed: one 64x64 image in every format and mode this
machine's Pillow can write and read back, plus multi-frame files (animated GIF, APNG, animated
WebP, multi-page TIFF, MPO). Each goes through a folder curation run, named with its format's
own extension, and must be kept; beside them, files that are no image (a README, no extension,
an orphan alt-text sidecar, a zip) are quarantined as `unsupported`, each counted."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from sail_pipeline.curation import CurationFilterParams, FolderSource, Note, run_curation
from sail_pipeline.curation.formats import EXTERNAL

MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB",
         "HSV", "I", "I;16", "I;16B", "F")
SIZE = (64, 64)


def _picture(mode: str, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    rgb = Image.fromarray(blocks, "RGB")
    try:
        return rgb.convert(mode)
    except ValueError:  # a mode Pillow cannot convert RGB into: a flat image of it
        return Image.new(mode, SIZE)


def _extension(fmt: str) -> str:
    """The format's own extension; a made-up one for a format Pillow names none for (SPIDER),
    which the reader then recognises by its header."""
    return next((ext for ext, f in Image.registered_extensions().items() if f == fmt),
                f".{fmt.lower()}")


def _single_frames() -> list[tuple[str, str, bytes]]:
    """(format, mode, bytes) for every pair that saves and reads back (a pair Pillow cannot read
    back is no valid image of this machine)."""
    Image.init()
    found = []
    for fmt in sorted(set(Image.SAVE) & set(Image.OPEN) - EXTERNAL):
        for mode in MODES:
            buffer = io.BytesIO()
            try:
                _picture(mode).save(buffer, format=fmt)
                with Image.open(io.BytesIO(buffer.getvalue())) as back:
                    back.load()
            except Exception:
                continue
            found.append((fmt, mode, buffer.getvalue()))
    return found


def _multi_frames() -> list[tuple[str, str, bytes]]:
    frames = [_picture("RGB", seed) for seed in range(3)]
    found = []
    for fmt, ext in (("GIF", ".gif"), ("PNG", ".apng"), ("WEBP", ".webp"), ("TIFF", ".tif"),
                     ("MPO", ".mpo")):
        buffer = io.BytesIO()
        frames[0].save(buffer, format=fmt, save_all=True, append_images=frames[1:])
        found.append((fmt, ext, buffer.getvalue()))
    return found


SINGLE = _single_frames()
MULTI = _multi_frames()


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    root = tmp_path_factory.mktemp("formats")
    names = {}
    for fmt, mode, data in SINGLE:
        name = f"{fmt}_{mode.replace(';', '_')}{_extension(fmt)}".lower()
        (root / name).write_bytes(data)
        names[name] = (fmt, mode)
    for fmt, ext, data in MULTI:
        name = f"multi_{fmt}{ext}".lower()
        (root / name).write_bytes(data)
        names[name] = (fmt, "frames")
    # Not images: each one a record, quarantined as unsupported.
    (root / "README.md").write_text("about these pictures\n")
    (root / "NOTES").write_text("no extension\n")
    (root / "orphan.txt").write_text("alt-text of a picture that is not here\n")
    (root / "archive.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)
    (root / "png_rgb.txt").write_text("a sidecar: the alt-text of png_rgb.png\n")
    # Every format's copy has the same pixels: near-duplicate detection would (rightly) keep
    # one; here each must pass on its own merits.
    result = run_curation([FolderSource(kind="folder", name="f", path=str(root))],
                          CurationFilterParams(near_duplicate_max_distance=None,
                                               exact_dedup=False),
                          progress=False)
    return names, result


def test_every_format_and_mode_this_pillow_writes_is_kept(curated):
    names, result = curated
    assert len(SINGLE) >= 100, len(SINGLE)  # 166 with Pillow 13 here
    kept = set(result.manifest["source_id"])
    rejected = result.quarantine.set_index("source_id")
    lost = {n: rejected.loc[n, "detail"] for n in names if n not in kept}
    assert not lost, lost
    by_name = result.manifest.set_index("source_id")
    assert by_name.loc["png_rgb.png", "alt_text"].startswith("a sidecar")


def test_multi_frame_files_are_kept_as_their_first_frame(curated):
    _, result = curated
    by_name = result.manifest.set_index("source_id")
    for fmt, ext, _ in MULTI:
        notes = by_name.loc[f"multi_{fmt}{ext}".lower(), "normalised"]
        assert Note.FIRST_FRAME_ONLY.value in str(notes), (fmt, notes)


def test_every_other_file_is_quarantined_as_unsupported_and_counted(curated):
    _, result = curated
    unsupported = result.quarantine[result.quarantine["reason"] == "unsupported"]
    details = unsupported.set_index("source_id")["detail"]
    assert sorted(details.index) == ["NOTES", "README.md", "archive.zip", "orphan.txt"]
    assert "no image beside it" in details["orphan.txt"]
    assert "extension '(none)', and not an image format" in details["NOTES"]
    funnel = result.funnel.set_index("reason")["count"]
    assert funnel["unsupported"] == 4
    assert result.count("input") == len(result.manifest) + len(result.quarantine)
