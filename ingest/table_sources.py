"""Documents out of table inputs (CSV, TSV, Parquet: one row a document) and the text column of a
table or JSON lines input. pyarrow reads them in record batches; it is imported only when an input
is a table (text and JSON lines, the usual inputs, never load it in the main process).
"""

from __future__ import annotations

import json
import zlib
from typing import Iterator

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from nextword.errors import InputError
from nextword.ingest.sources import MAX_DOCUMENT_BYTES, InputSpec, SourceCounters, _bad_row, _open_binary

_CSV_BLOCK_BYTES = 2 * MAX_DOCUMENT_BYTES + (1 << 20)  # pyarrow needs a whole row inside one block


def pick_column(path: str, file_format: str, column: str | None) -> str:
    columns = _list_columns(path, file_format)
    if column is not None:
        if column not in columns:
            raise InputError(
                f"{path}: no column {column!r}; it has {columns}",
                hint="pass --column with one of those names",
            )
        return _text_column(path, file_format, column)
    if len(columns) == 1:
        return _text_column(path, file_format, columns[0])
    raise InputError(
        f"{path}: which column holds the text? It has {columns}",
        hint="pass --column NAME",
    )


def _is_text_type(kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):
        return _is_text_type(kind.value_type)
    return any(check(kind) for check in (pa.types.is_string, pa.types.is_large_string, pa.types.is_binary,
                                         pa.types.is_large_binary, pa.types.is_null,
                                         getattr(pa.types, "is_string_view", lambda _: False)))


def _text_column(path: str, file_format: str, column: str) -> str:
    """Parquet columns are typed: refuse one that does not hold text (CSV/TSV cells are read as
    bytes, JSON values are checked row by row)."""
    if file_format != "parquet":
        return column
    schema = pq.ParquetFile(path).schema_arrow
    kind = schema.field(column).type
    if not _is_text_type(kind):
        text = [field.name for field in schema if _is_text_type(field.type)]
        raise InputError(
            f"{path}: column {column!r} holds {kind} values, not text",
            hint=f"pass --column with a string column ({', '.join(map(repr, text))})" if text
            else "this file has no string column to read documents from",
        )
    return column


def _list_columns(path: str, file_format: str) -> list[str]:
    try:
        if file_format == "parquet":
            return list(pq.ParquetFile(path).schema_arrow.names)
        if file_format in ("csv", "tsv"):
            with _open_binary(path) as handle:
                reader = pa_csv.open_csv(handle, read_options=pa_csv.ReadOptions(block_size=_CSV_BLOCK_BYTES),
                                         parse_options=_csv_parse_options(file_format, "skip", SourceCounters()))  # rows are judged later
                return list(reader.schema.names)
        with _open_binary(path) as handle:
            for line in handle:
                if line.strip():
                    record = json.loads(line)
                    if not isinstance(record, dict):
                        raise InputError(f"{path}: line 1 is not a JSON object", hint="JSON lines need one object per line")
                    return list(record)
            return []
    except (pa.ArrowInvalid, OSError, EOFError, zlib.error, ValueError) as error:
        if isinstance(error, InputError):
            raise
        raise InputError(f"{path}: cannot read the header ({error})", hint=f"is it really {file_format}?") from None


def _csv_parse_options(file_format: str, on_error: str, counters: SourceCounters | None = None):
    def invalid_row(row) -> str:
        # Exceptions raised here are swallowed by pyarrow: "error" makes it raise ArrowInvalid
        # naming the row, which table_documents turns into an InputError.
        if on_error == "strict" or counters is None:
            return "error"
        counters.skipped_rows += 1
        return "skip"

    return pa_csv.ParseOptions(delimiter="\t" if file_format == "tsv" else ",", newlines_in_values=True,
                               invalid_row_handler=invalid_row)


def _column_batches(spec: InputSpec, on_error: str, counters: SourceCounters) -> Iterator[pa.Array]:
    if spec.format == "parquet":
        yield from (batch.column(0) for batch in pq.ParquetFile(spec.path).iter_batches(batch_size=8192, columns=[spec.column]))
        return
    with _open_binary(spec.path) as handle:
        reader = pa_csv.open_csv(
            handle,
            read_options=pa_csv.ReadOptions(block_size=_CSV_BLOCK_BYTES, use_threads=False),
            parse_options=_csv_parse_options(spec.format, on_error, counters),
            convert_options=pa_csv.ConvertOptions(column_types={spec.column: pa.binary()}, include_columns=[spec.column]),
        )
        for batch in reader:
            yield batch.column(0)


def table_documents(spec: InputSpec, on_error: str, counters: SourceCounters) -> Iterator[bytes]:
    """Each row's cell of spec.column, as bytes (a null cell: an empty document); a row pyarrow cannot
    parse or a cell over MAX_DOCUMENT_BYTES as --on-error says."""
    row = 0
    try:
        for column in _column_batches(spec, on_error, counters):
            for value in column.cast(pa.binary()).to_pylist():
                row += 1
                if value is None:
                    yield b""  # a null cell is an empty document
                elif len(value) > MAX_DOCUMENT_BYTES:
                    _bad_row(spec, f"row {row}", f"longer than {MAX_DOCUMENT_BYTES >> 20} MB", on_error, counters)
                else:
                    yield value
    except pa.ArrowInvalid as error:
        if "CSV parse error" in str(error):
            raise InputError(f"{spec.path}: {str(error).replace('CSV parse error: ', '')}".replace("\n", " "),
                             hint="fix the input, or pass --on-error skip to drop such rows and count them") from None
        raise InputError(f"{spec.path}: cannot be parsed as {spec.format} ({error})",
                         hint="check --format, or that each row is smaller than 32 MB") from None
