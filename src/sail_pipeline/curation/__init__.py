"""Data curation: ingest images from folders, shards, Parquet, LLaVA JSON or the world; validate,
normalise and dedup them; account for every input record (kept, or quarantined with a reason).

Library only (no Kedro): `run_curation(sources, settings)` is the entry point.
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
    MANIFEST_COLUMNS,
    QUARANTINE_COLUMNS,
    CurationAccountingError,
    CurationResult,
    check_accounting,
    funnel_metrics,
    funnel_table,
    run_curation,
)
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
    "CurationParams",
    "CurationResult",
    "CurationFilterParams",
    "ExactDuplicateIndex",
    "FolderSource",
    "LlavaSource",
    "NearDuplicateIndex",
    "Note",
    "ParquetSource",
    "RawRecord",
    "Reason",
    "RecordError",
    "Rejection",
    "SourceSpec",
    "WebDatasetSource",
    "WorldSource",
    "check_accounting",
    "check_image",
    "decode_alt_text",
    "encode_png",
    "find_near_duplicates",
    "funnel_metrics",
    "funnel_table",
    "hamming",
    "iter_records",
    "normalise",
    "phash",
    "prepare",
    "run_curation",
    "validate_record",
]
