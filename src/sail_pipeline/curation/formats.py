"""What this machine's Pillow reads in-process: the default formats and file extensions of
curation, so that every image a user's Pillow can write is read, not skipped or quarantined.

EPS and PDF are left out: Pillow hands EPS to Ghostscript, an external program, and cannot read
PDF at all. A user narrows the list with `curation.settings.allowed_formats` (and a folder's
`extensions`), e.g. to the formats their decoders are trusted with.
"""

from __future__ import annotations

from functools import cache

EXTERNAL = frozenset({"EPS", "PDF"})


@cache
def readable_formats() -> tuple[str, ...]:
    from PIL import Image

    Image.init()
    # Pillow's own order: it tries the plugins in turn, and the order decides which claims a
    # file first. (MPO, multi-picture JPEG, opens through the JPEG plugin.)
    return tuple(f for f in Image.ID if f in Image.OPEN and f not in EXTERNAL)


@cache
def readable_extensions() -> frozenset[str]:
    """Lower-case suffixes, with the dot, of the formats in `readable_formats`."""
    from PIL import Image

    formats = {*readable_formats(), "MPO"}
    return frozenset(ext.lower() for ext, fmt in Image.registered_extensions().items()
                     if fmt in formats)


@cache
def readable_member_suffixes() -> tuple[str, ...]:
    """`readable_extensions` without the dot, sorted: a WebDataset member's suffix."""
    return tuple(sorted(ext.removeprefix(".") for ext in readable_extensions()))
