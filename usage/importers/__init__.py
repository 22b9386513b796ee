"""Usage exports read as a stream of ingestion records (docs/import.md).

Three formats, each turned into ingestion records (a JSONL line straight into its
`usage.wire.Record`, anything else into RecordIn-shaped dicts) one row at a time so
that memory stays flat whatever the file size:

- `jsonl`: one §4.3 record per line;
- `csv`: a header row, then one record per row (columns in `CSV_COLUMNS`);
- `newapi`: the per-request log rows of a New API console (`GET /api/log/self`
  items), as JSONL, as a JSON array, or as the whole API response.

Files are read in binary and decoded here, so that invalid UTF-8 is reported
against its line instead of stopping the import. `import_records` hands
batches to `usage.wire.validate_records` and `usage.services.record_usage`.
docs/import.md describes the formats for people.

The package: `base` (formats, rows, problems, sources), `jsonl`, `csv_format` and `newapi`
(one reader per format, the last with its streaming JSON document parser), `opening` (a file
opened as the source of its format) and `run` (`import_records`: batches to ingestion).
"""

from __future__ import annotations

from usage.importers.base import (
    BOM,
    DEFAULT_BATCH_SIZE,
    FORMAT_BY_SUFFIX,
    READ_BUFFER_BYTES,
    WRITER_SWITCH_INTERVAL,
    BadField,
    ImportFileError,
    ImportFormat,
    Problem,
    ProblemKind,
    Row,
    Source,
)
from usage.importers.csv_format import (
    BOOLEANS,
    CSV_COLUMNS,
    CSV_FIELD_NAMES,
    ERROR_COLUMNS,
    INTEGER,
    INTEGER_COLUMNS,
    METADATA_COLUMNS,
    REQUIRED_CSV_COLUMNS,
    STRING_COLUMNS,
    TOKEN_COLUMNS,
    csv_record,
)
from usage.importers.newapi import (
    DEDUPE_FIELDS,
    LOG_TYPE_NAMES,
    MAX_ERROR_MESSAGE,
    NEWAPI_FIELD_NAMES,
    PEEK_BYTES,
    UNKNOWN_ERROR_STATUS,
    USAGE_LOG_TYPES,
    JsonDocument,
    newapi_record,
    newapi_request_id,
)
from usage.importers.opening import format_for, open_export
from usage.importers.run import WHOLE_LINE, ImportSummary, Store, import_records

__all__ = [
    "BOM",
    "BOOLEANS",
    "CSV_COLUMNS",
    "CSV_FIELD_NAMES",
    "DEDUPE_FIELDS",
    "DEFAULT_BATCH_SIZE",
    "ERROR_COLUMNS",
    "FORMAT_BY_SUFFIX",
    "INTEGER",
    "INTEGER_COLUMNS",
    "LOG_TYPE_NAMES",
    "MAX_ERROR_MESSAGE",
    "METADATA_COLUMNS",
    "NEWAPI_FIELD_NAMES",
    "PEEK_BYTES",
    "READ_BUFFER_BYTES",
    "REQUIRED_CSV_COLUMNS",
    "STRING_COLUMNS",
    "TOKEN_COLUMNS",
    "UNKNOWN_ERROR_STATUS",
    "USAGE_LOG_TYPES",
    "WHOLE_LINE",
    "WRITER_SWITCH_INTERVAL",
    "BadField",
    "ImportFileError",
    "ImportFormat",
    "ImportSummary",
    "JsonDocument",
    "Problem",
    "ProblemKind",
    "Row",
    "Source",
    "Store",
    "csv_record",
    "format_for",
    "import_records",
    "newapi_record",
    "newapi_request_id",
    "open_export",
]
