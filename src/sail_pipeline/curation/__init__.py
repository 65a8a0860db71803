"""Data curation: ingest images from folders, shards, Parquet, LLaVA JSON or the world; validate,
normalise and dedup them; account for every input record (kept, or quarantined with a reason).

Library only (no Kedro): `run_curation(sources, settings)` returns DataFrames;
`curate_to_parquet(sources, manifest_path, quarantine_path, settings)` streams the same rows
into Parquet files, with memory that does not grow with the images kept.
"""

from sail_pipeline.curation.dedup import (
    ExactDuplicateIndex,
    NearDuplicateIndex,
    find_near_duplicates,
    hamming,
    phash,
)
from sail_pipeline.curation.funnel import (
    FUNNEL_COLUMNS,
    CurationAccountingError,
    CurationFiles,
    CurationResult,
    check_accounting,
    curate_to_parquet,
    funnel_metrics,
    funnel_table,
    peak_rss_bytes,
    run_curation,
)
from sail_pipeline.curation.output import MANIFEST_COLUMNS, QUARANTINE_COLUMNS, ParquetTable
from sail_pipeline.curation.reasons import STAGE_OF, Note, Reason, Rejection
from sail_pipeline.curation.sources import RawRecord, RecordError, iter_records
from sail_pipeline.curation.validate import (
    check_image,
    decode_alt_text,
    encode_png,
    normalise,
    prepare,
    validate_record,
)
from sail_pipeline.schema import (
    CurationFilterParams,
    CurationParams,
    FolderSource,
    LlavaSource,
    ParquetSource,
    SourceSpec,
    WebDatasetSource,
    WorldSource,
)

__all__ = [
    "FUNNEL_COLUMNS",
    "MANIFEST_COLUMNS",
    "QUARANTINE_COLUMNS",
    "STAGE_OF",
    "CurationAccountingError",
    "CurationFiles",
    "CurationParams",
    "CurationResult",
    "CurationFilterParams",
    "ExactDuplicateIndex",
    "FolderSource",
    "LlavaSource",
    "NearDuplicateIndex",
    "Note",
    "ParquetSource",
    "ParquetTable",
    "RawRecord",
    "Reason",
    "RecordError",
    "Rejection",
    "SourceSpec",
    "WebDatasetSource",
    "WorldSource",
    "check_accounting",
    "check_image",
    "curate_to_parquet",
    "decode_alt_text",
    "encode_png",
    "find_near_duplicates",
    "funnel_metrics",
    "funnel_table",
    "hamming",
    "iter_records",
    "normalise",
    "peak_rss_bytes",
    "phash",
    "prepare",
    "run_curation",
    "validate_record",
]
