"""`curation`: where images come from and the thresholds they must pass."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from sail_pipeline.schema.base import StrictModel, neutral
from sail_pipeline.schema.executor import ExecutorParams

# A source's name prefixes every id ("{name}:{source_id}"), so it must not contain the colon.
SourceName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]+$")]


class FolderSource(StrictModel):
    """Image files under `path`; `a.jpg` takes its alt-text from `a.txt` when present. Every
    other file is a record too, quarantined as `unsupported`: nothing is skipped silently."""

    kind: Literal["folder"]
    name: SourceName
    path: str
    recursive: bool = True
    # Suffixes read as images (".jpg"); null: every one this machine's Pillow reads.
    extensions: list[str] | None = None
    alt_text_suffix: str = ".txt"


class WebDatasetSource(StrictModel):
    """Tar shards matching `shards` (a glob); members grouped by key (path minus extension)."""

    kind: Literal["webdataset"]
    name: SourceName
    shards: str
    # Member suffixes read as the image ("jpg"), first match wins; null: every one Pillow reads.
    image_extensions: list[str] | None = None


class ParquetSource(StrictModel):
    """Rows with image bytes (`image_column`) or file paths relative to the file (`path_column`)."""

    kind: Literal["parquet"]
    name: SourceName
    path: str
    image_column: str | None = None
    path_column: str | None = None
    alt_text_column: str | None = None
    id_column: str | None = None
    batch_size: int = Field(256, gt=0)

    @model_validator(mode="after")
    def _one_image_column(self) -> ParquetSource:
        if (self.image_column is None) == (self.path_column is None):
            raise ValueError("give exactly one of `image_column` (bytes) or `path_column`")
        return self


class LlavaSource(StrictModel):
    """A LLaVA-style JSON list; alt-text is the first gpt reply without `<image>` tokens."""

    kind: Literal["llava"]
    name: SourceName
    path: str
    image_folder: str


class WorldSource(StrictModel):
    """The embedded world's scene table, handed to `run_curation` by the caller."""

    kind: Literal["world"]
    name: SourceName = "world"
    # Benchmark scenes are held out; curating them into training data would leak them.
    splits: list[str] = Field(default_factory=lambda: ["train"])


SourceSpec = Annotated[
    FolderSource | WebDatasetSource | ParquetSource | LlavaSource | WorldSource,
    Field(discriminator="kind"),
]


class CurationFilterParams(StrictModel):
    """`curation.settings`: thresholds of validation and dedup."""

    min_side: int = Field(32, ge=1, description="Shorter side below this is too_small.")
    max_pixels: int = Field(64_000_000, gt=0, description="Decompression-bomb limit (w*h).")
    max_aspect_ratio: float = Field(5.0, ge=1.0, description="Longer side / shorter side.")
    alt_text_required: bool = False
    # Bounds what one sidecar carries into every later table; each prompt caps again, to its
    # model's context (e.g. `captioning.recaption.max_alt_text_chars`).
    max_alt_text_chars: int = Field(2000, gt=0, description="Longer alt-texts are cut "
                                    "(note alt_text_truncated).")
    # Pillow format names; null: every format Pillow decodes in-process (not EPS, which would
    # shell out to Ghostscript): a valid image is never quarantined for its format.
    allowed_formats: list[str] | None = None
    exact_dedup: bool = True
    # Hamming distance between 64-bit pHashes; null disables near-duplicate detection.
    near_duplicate_max_distance: int | None = Field(6, ge=0, le=31)

    @field_validator("allowed_formats")
    @classmethod
    def _upper_case(cls, formats: list[str] | None) -> list[str] | None:
        # Whether Pillow can open them is checked when the run starts
        # (sail_pipeline.glue.validation), so this schema does not import Pillow.
        return None if formats is None else [f.upper() for f in formats]


class CurationParams(StrictModel):
    """The whole of `parameters_curation.yml`'s `curation` key."""

    sources: list[SourceSpec] = Field(min_length=1)
    settings: CurationFilterParams = Field(default_factory=CurationFilterParams)
    # Where decoding and normalising run; not in `settings`, as it never changes a result.
    executor: ExecutorParams = neutral(default_factory=ExecutorParams)

    @model_validator(mode="after")
    def _unique_names(self) -> CurationParams:
        check_unique_names(self.sources)
        return self


def check_unique_names(sources: list[SourceSpec]) -> None:
    """Two sources with one name would mint colliding ids; that is a config error."""
    names = [s.name for s in sources]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"source names must be unique; repeated: {duplicates}")
