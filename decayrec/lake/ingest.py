"""Ingestion: source files (CSV, Parquet, JSON Lines) into the DuckDB lake.

Two steps, two tasks of the nightly flow:

* :func:`stage_sources` reads every new file (by SHA-256; a file already loaded is
  skipped) into `staged_rows`, all fields as raw text, rows the reader cannot split
  marked with the reason. Nothing reaches `events` yet.
* :func:`load_batches` parses and validates each staged batch (see
  :mod:`decayrec.lake.validate`) and, in one transaction per batch, appends the good rows
  to `events` (a key already there is not added again), the bad rows to
  `quarantine`, and a row to `load_log`. Accepted + quarantined = rows read.
"""

from __future__ import annotations

import glob
import json
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np

from decayrec.config import DecayrecConfig, SourceConfig
from decayrec.lake.session import LakeBuild, LakeSession
from decayrec.lake.staging import StagedBatch, sha256_of
from decayrec.lake.validate import validate_batch
from decayrec.sqlfiles import connect, escape_ident, quote_ident, run_script, sql

log = logging.getLogger(__name__)


class IngestError(RuntimeError):
    """A batch that cannot be loaded at all: missing file or column, empty, too many bad rows."""


@dataclass
class BatchResult:
    batch_id: str
    source: str
    file: str
    rows_read: int
    rows_accepted: int
    rows_inserted: int
    rows_quarantined: int
    timestamp_unit: str
    validation_path: str
    quarantined_by_expectation: dict[str, int] = field(default_factory=dict)
    rows_conflicting: int = 0  # key already loaded with another value: first value kept
    message: str | None = None


def open_lake(config: DecayrecConfig) -> duckdb.DuckDBPyConnection:
    con = connect(config.lake_path)
    con.execute("set enable_progress_bar = false")  # a batch job's log, not a terminal
    # beyond this the connection spills to <lake>.tmp instead of taking the machine
    limit_mib = int(_physical_memory_mib() * config.lake_memory_share)
    if limit_mib > 0:
        con.execute(f"set memory_limit = '{limit_mib}MiB'")  # an int computed here
    run_script(con, "lake/schema")
    return con


def _physical_memory_mib() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (ValueError, OSError, AttributeError):
        return 0


def source_files(source: SourceConfig) -> list[str]:
    """The files of a source, sorted; a path without glob characters must exist."""
    if any(ch in source.path for ch in "*?["):
        files = sorted(glob.glob(source.path, recursive=True))
        return [f for f in files if Path(f).is_file()]
    if not Path(source.path).is_file():
        raise IngestError(f"source file {source.path} does not exist")
    return [source.path]


def detect_format(source: SourceConfig, file: str) -> str:
    if source.format != "auto":
        return source.format
    suffixes = "".join(Path(file).suffixes).lower()
    if ".parquet" in suffixes or suffixes.endswith(".pq"):
        return "parquet"
    if ".jsonl" in suffixes or ".ndjson" in suffixes or suffixes.endswith(".json"):
        return "jsonl"
    return "csv"


def stage_sources(config: DecayrecConfig, run_id: str) -> list[StagedBatch]:
    """Read every source file not loaded before into `staged_rows`; return the batches."""
    with LakeSession(open_lake(config)) as lake:
        batches: list[StagedBatch] = []
        seen_in_run: set[str] = set()
        for source in config.sources:
            for file in source_files(source):
                digest = sha256_of(file)
                already = lake.con.execute(
                    "select count(*) from load_log where sha256 = ? and status = 'loaded'",
                    [digest],
                ).fetchall()[0][0]
                if already or digest in seen_in_run:
                    continue
                seen_in_run.add(digest)
                with lake.build() as build:
                    batches.append(_stage_file(build, source, file, digest))
        return batches


def _stage_file(build: LakeBuild, source: SourceConfig, file: str, digest: str) -> StagedBatch:
    batch_id = digest[:20]
    name = source.name or source.path
    fmt = detect_format(source, file)
    build.execute("delete from staged_rows where batch_id = ?", [batch_id])
    rows_from, rows_params = "raw_rows", {}
    if fmt == "csv":
        _read_csv(build, file)
    elif fmt == "parquet":
        # Read straight from the file (no copy of it in memory); row numbers are the
        # file's own (1-based), so a row can be read back by its number.
        rows_from = (
            "(select * exclude (file_row_number), file_row_number + 1 as row_number, "
            "null::bigint as line, null::varchar as read_error "
            "from read_parquet($file, file_row_number = true))"
        )
        rows_params = {"file": file}
    else:
        _read_jsonl(build, file, source)

    types = {
        r[0]: str(r[1]).upper()
        for r in build.execute(f"describe select * from {rows_from}", rows_params).fetchall()
    }
    columns = list(types)
    mapping = source.columns
    wanted = _field_columns(source)
    n_rows = build.execute(f"select count(*) from {rows_from}", rows_params).fetchall()[0][0]
    if n_rows == 0:
        raise IngestError(f"{file}: empty batch (no rows) from source {name}")
    if fmt != "jsonl":
        data_columns = [
            c for c in columns if c not in ("row_number", "line", "read_error", "raw_line")
        ]
        missing = [
            f"{field_name} (column {col!r})"
            for field_name, col in wanted.items()
            if col is not None
            and col not in data_columns
            and not (field_name in ("event_type", "value") and _optional(source, field_name))
        ]
        if missing:
            raise IngestError(
                f"{file}: missing column(s) {', '.join(missing)}; "
                f"the file has columns {data_columns} (expectation: "
                "expect_table_columns_to_match_set)"
            )
    select = []
    for field_name, col in wanted.items():
        if col is not None and (fmt == "jsonl" or col in columns):
            select.append(f"cast({quote_ident(col, 'source column')} as varchar) as {field_name}")
        else:
            select.append(f"null::varchar as {field_name}")
    if fmt == "jsonl":
        raw_expr = "raw"
    elif fmt == "parquet":
        # Every row of a Parquet file was split by the reader: its raw content is its
        # columns, read back from the file only for the rows that end in quarantine
        # (staging a JSON copy of every row doubled the cost of ingestion).
        raw_expr = "null::varchar"
    else:
        # A row the reader split is kept as JSON of its own columns; one it could not
        # split is kept as the raw line.
        data_cols = ", ".join(
            escape_ident(c)
            for c in columns
            if c not in ("row_number", "line", "read_error", "raw_line")
        )
        raw_line = "raw_line" if "raw_line" in columns else "null"
        raw_expr = (
            f"case when read_error is null then to_json(struct_pack({data_cols}))::varchar "
            f"else {raw_line} end"
        )
    build.execute(
        f"""
        insert into staged_rows
            (batch_id, row_number, line, raw, user_id, item_id, event_ts, event_type, value,
             parse_error)
        select $batch_id, row_number, line, {raw_expr}, {", ".join(select)}, read_error
        from {rows_from}
        """,
        {**rows_params, "batch_id": batch_id},
    )
    unit = source.timestamp_unit
    if unit == "auto":
        unit = _typed_timestamp_unit(types.get(mapping.event_ts, "")) or (
            _detect_timestamp_unit(build, batch_id, file)
        )
    return StagedBatch(
        batch_id=batch_id,
        source=name,
        file=file,
        sha256=digest,
        rows_read=n_rows,
        default_event_type=source.event_type,
        timestamp_unit=unit,
        raw_from_file=fmt == "parquet",
    )


_TEMPORAL_TYPES = ("TIMESTAMP", "DATE")


def _typed_timestamp_unit(column_type: str) -> str | None:
    """'iso' when the source column is of a date or timestamp type (its text form is
    ISO-8601, so no profile of the values is needed); None otherwise."""
    return "iso" if column_type.startswith(_TEMPORAL_TYPES) else None


def _optional(source: SourceConfig, field_name: str) -> bool:
    """event_type may be absent when a constant is configured; value may always be absent."""
    if field_name == "event_type":
        return source.event_type is not None
    return field_name == "value"


def _field_columns(source: SourceConfig) -> dict[str, str | None]:
    """Each event field and the source column it is read from (None: not in the source)."""
    mapping = source.columns
    return {
        "user_id": mapping.user_id,
        "item_id": mapping.item_id,
        "event_ts": mapping.event_ts,
        "event_type": mapping.event_type,
        "value": mapping.value,
    }


def _read_csv(build: LakeBuild, file: str) -> None:
    """All fields as text; rows the CSV reader cannot split are kept with their line."""
    build.made_by_duckdb("csv_rejects")
    build.made_by_duckdb("csv_reject_scans")
    try:
        build.table(
            "csv_accepted",
            "select row_number() over () as accepted_index, * from read_csv($file, "
            "all_varchar = true, header = true, ignore_errors = true, store_rejects = true, "
            "rejects_table = 'csv_rejects', rejects_scan = 'csv_reject_scans')",
            {"file": file},
        )
    except duckdb.Error as exc:
        if Path(file).stat().st_size == 0 or "empty" in str(exc).lower():
            raise IngestError(
                f"{file}: empty batch (the file holds no header and no rows)"
            ) from exc
        raise IngestError(f"{file}: cannot be read as CSV: {exc}") from exc
    rejects = build.execute(
        "select line, any_value(csv_line), string_agg(distinct error_type::varchar || ': ' "
        "|| error_message, '; ') from csv_rejects group by line order by line"
    ).fetchall()
    reject_lines = np.array([r[0] for r in rejects], dtype=np.int64)
    n_accepted = build.execute("select count(*) from csv_accepted").fetchall()[0][0]
    # Line of the a-th accepted row (0-based): 2 + a plus the rejected lines before it
    # (line 1 is the header).
    accepted_lines = _accepted_line_numbers(n_accepted, reject_lines, first_line=2)
    build.arrow("accepted_lines", {"line": accepted_lines})
    data_cols = [
        r[0] for r in build.execute("describe csv_accepted").fetchall() if r[0] != "accepted_index"
    ]
    cols = ", ".join(escape_ident(c) for c in data_cols)
    null_cols = ", ".join(f"null::varchar as {escape_ident(c)}" for c in data_cols)
    if rejects:
        _with_rejects(build, rejects, cols, null_cols)
    else:
        build.table(
            "raw_rows",
            f"""
            select a.accepted_index as row_number, l.line, null::varchar as read_error,
                null::varchar as raw_line, {cols}
            from csv_accepted as a positional join accepted_lines as l
            """,
        )


def _with_rejects(build: LakeBuild, rejects, cols: str, null_cols: str) -> None:
    build.empty_table("rejects_list", "line bigint, csv_line varchar, reason varchar")
    build.executemany("insert into rejects_list values (?, ?, ?)", [list(r) for r in rejects])
    build.table(
        "raw_rows",
        f"""
        select row_number() over (order by line) as row_number, *
        from (
            select l.line, null::varchar as read_error, null::varchar as raw_line, {cols}
            from csv_accepted as a positional join accepted_lines as l
            union all by name
            select line, 'unparsable CSV row: ' || reason as read_error, csv_line as raw_line,
                {null_cols}
            from rejects_list
        )
        order by line
        """,
    )


def _accepted_line_numbers(
    n_accepted: int, reject_lines: np.ndarray, first_line: int
) -> np.ndarray:
    accepted = np.arange(n_accepted, dtype=np.int64)
    if len(reject_lines) == 0:
        return accepted + first_line
    # The j-th rejected line has (line_j - first_line - j) accepted rows before it.
    slots = reject_lines - first_line - np.arange(len(reject_lines))
    return accepted + first_line + np.searchsorted(slots, accepted, side="right")


def _read_jsonl(build: LakeBuild, file: str, source: SourceConfig) -> None:
    """Each line one record; a line that is not a JSON object is kept with its reason."""
    fields = _field_columns(source)
    extracts = ", ".join(
        f"case when ok then json_extract_string(raw, $key_{name}) end as "
        f"{quote_ident(col, 'source column')}"
        for name, col in fields.items()
        if col is not None
    )
    params = {f"key_{name}": "$." + json.dumps(col) for name, col in fields.items() if col}
    params["file"] = file
    build.table(
        "raw_rows",
        f"""
        with lines as (
            select row_number() over () as line, raw
            from read_csv($file, columns = {{'raw': 'VARCHAR'}}, header = false,
                delim = '\x01', quote = '', escape = '', auto_detect = false)
        ),
        checked as (
            select line, raw,
                case when json_valid(raw) then json_type(raw) = 'OBJECT' else false end as ok
            from lines
            where nullif(trim(raw), '') is not null
        )
        select row_number() over (order by line) as row_number, line, raw,
            case when not ok then 'line is not a JSON object' end as read_error,
            {extracts}
        from checked
        order by line
        """,
        params,
    )


def _detect_timestamp_unit(build: LakeBuild, batch_id: str, file: str) -> str:
    n_values, n_numeric, n_iso, median_abs = build.execute(
        sql("ingest/timestamp_profile"), {"batch_id": batch_id}
    ).fetchall()[0]
    if n_values == 0:
        return "s"
    if n_numeric >= n_iso and n_numeric > 0:
        if median_abs < 1e11:
            return "s"
        if median_abs < 1e14:
            return "ms"
        if median_abs < 1e17:
            return "us"
        return "ns"
    if n_iso == 0:
        raise IngestError(
            f"{file}: event time column holds neither epoch numbers nor ISO-8601 times"
        )
    return "iso"


def load_batches(
    config: DecayrecConfig, batches: list[StagedBatch], run_id: str, now: datetime | None = None
) -> list[BatchResult]:
    """Parse and validate each staged batch, then load it; fails on a batch-level failure."""
    now = now or datetime.now(UTC)
    results = []
    with LakeSession(open_lake(config)) as lake:
        for batch in batches:
            with lake.build() as build:
                build.table(
                    "parsed_batch",
                    sql("ingest/parse_batch"),
                    {
                        "batch_id": batch.batch_id,
                        "default_event_type": batch.default_event_type,
                        "timestamp_unit": batch.timestamp_unit,
                    },
                )
                verdict = validate_batch(build, config, batch, run_id, now)
                if not verdict.success:
                    _log_failure(build, batch, run_id, verdict.message, verdict.path, now)
                    raise IngestError(verdict.message)
                results.append(_commit_batch(build, batch, run_id, verdict, now))
        return results


def conflicting_rows(build: LakeBuild, file: str) -> tuple[int, str | None]:
    """How many good rows of `parsed_batch` carry an event key already in `events` with
    another value, and a one-paragraph message naming the file, rows and fields (None when
    there are none). Such rows are not inserted: the first loaded value is kept."""
    rows = build.execute(sql("validate/conflicting_rows"), {"max_examples": 3}).fetchall()
    if not rows:
        return 0, None
    n = rows[0][-1]
    examples = "; ".join(
        f"{'line ' + str(line) if line is not None else 'row ' + str(rn)}: user_id "
        f"{user!r}, item_id {item!r}, event_type {etype!r}, event_ts {ts.isoformat()}: value "
        f"{value} vs loaded {loaded}"
        for rn, line, user, item, etype, ts, value, loaded, _ in rows
    )
    message = (
        f"{file}: {n} rows conflict with loaded events (same user_id, item_id, event_type and "
        f"event_ts, another value); the first loaded value is kept. Examples: {examples}"
    )
    return n, message


def _commit_batch(
    build: LakeBuild, batch: StagedBatch, run_id: str, verdict, now: datetime
) -> BatchResult:
    params = {"batch_id": batch.batch_id, "now": now}
    n_conflicting, conflict_message = conflicting_rows(build, batch.file)
    if conflict_message:
        log.warning(conflict_message)
    build.execute("begin transaction")
    try:
        before = build.execute("select count(*) from events").fetchall()[0][0]
        build.execute(
            """
            insert into events
            select p.user_id, p.item_id, p.event_type, p.event_ts, p.value,
                $source, $batch_id, $now
            from parsed_batch as p
            anti join bad_rows as b on b.row_number = p.row_number
            where not exists (
                select 1 from events as e
                where e.user_id = p.user_id and e.item_id = p.item_id
                    and e.event_type = p.event_type and e.event_ts = p.event_ts
            )
            """,
            {**params, "source": batch.source},
        )
        inserted = build.execute("select count(*) from events").fetchall()[0][0] - before
        build.execute(
            """
            insert into quarantine
            select $batch_id, $source, $file, p.row_number, p.line, p.raw, b.field,
                b.expectation, b.reason, $run_id, $now
            from bad_rows as b join parsed_batch as p using (row_number)
            """,
            {**params, "source": batch.source, "file": batch.file, "run_id": run_id},
        )
        n_bad = build.execute("select count(*) from bad_rows").fetchall()[0][0]
        by_expectation = dict(
            build.execute("select expectation, count(*) from bad_rows group by all").fetchall()
        )
        build.execute(
            "insert into load_log (batch_id, source, file, sha256, status, rows_read, "
            "rows_accepted, rows_inserted, rows_quarantined, timestamp_unit, validation_path, "
            "message, run_id, logged_at, rows_conflicting) values ($batch_id, $source, $file, "
            "$sha, 'loaded', $read, $accepted, $inserted, $bad, $unit, $path, $message, "
            "$run_id, $now, $conflicting)",
            {
                **params,
                "source": batch.source,
                "file": batch.file,
                "sha": batch.sha256,
                "read": batch.rows_read,
                "accepted": batch.rows_read - n_bad,
                "inserted": inserted,
                "bad": n_bad,
                "unit": batch.timestamp_unit,
                "path": verdict.path,
                "run_id": run_id,
                "message": conflict_message,
                "conflicting": n_conflicting,
            },
        )
        build.execute(
            "delete from staged_rows where batch_id = $batch_id", {"batch_id": batch.batch_id}
        )
        build.execute("commit")
    except Exception:
        build.execute("rollback")
        raise
    return BatchResult(
        batch_id=batch.batch_id,
        source=batch.source,
        file=batch.file,
        rows_read=batch.rows_read,
        rows_accepted=batch.rows_read - n_bad,
        rows_inserted=inserted,
        rows_quarantined=n_bad,
        timestamp_unit=batch.timestamp_unit,
        validation_path=verdict.path,
        quarantined_by_expectation=by_expectation,
        rows_conflicting=n_conflicting,
        message=conflict_message,
    )


def _log_failure(
    build: LakeBuild, batch: StagedBatch, run_id: str, message: str, path: str | None, now
) -> None:
    build.execute(
        "insert into load_log (batch_id, source, file, sha256, status, rows_read, "
        "timestamp_unit, validation_path, message, run_id, logged_at) values ($batch_id, "
        "$source, $file, $sha, 'failed', $read, $unit, $path, $message, $run_id, $now)",
        {
            "batch_id": batch.batch_id,
            "source": batch.source,
            "file": batch.file,
            "sha": batch.sha256,
            "read": batch.rows_read,
            "unit": batch.timestamp_unit,
            "path": path,
            "message": message,
            "run_id": run_id,
            "now": now,
        },
    )
    build.execute("delete from staged_rows where batch_id = ?", [batch.batch_id])


def future_limit(config: DecayrecConfig, now: datetime) -> datetime:
    return now + timedelta(hours=config.validation.max_future_skew_hours)
