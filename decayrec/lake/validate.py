"""Validation of a staged batch before it reaches `events`.

Bad rows are found in SQL (`sql/validate/row_checks.sql`), one reason per row, and go
to quarantine. Great Expectations 1.x gives the batch its verdict over the same rule
set (row-level expectations carry ``mostly = 1 - max_bad_row_share``; batch-level ones
need at least one row) and its JSON result is kept per run and batch.

A large clean batch (at least `validation.gx_defer_min_rows` parsed rows, and no row
failing a parse or row check) has its verdict already: the SQL checks covered every row
with GX's rules, and a null key is a parse error, so every expectation holds on any
sample. Its GX run (and the import of GX, about 3 s) is then taken off the nightly's
critical path: the sample is kept beside the batch's JSON and `audit_deferred` judges it
after the lists are published (the flow's `gx-audit` stage), writing GX's result into the
same JSON.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from decayrec.config import DecayrecConfig
from decayrec.lake.session import LakeBuild
from decayrec.lake.staging import StagedBatch, sha256_of
from decayrec.sqlfiles import escape_ident, sql

log = logging.getLogger(__name__)

EVENT_KEY = ["user_id", "item_id", "event_type", "event_ts"]

# Great Expectations validates a pandas frame: a batch larger than
# validation.gx_max_rows is judged on a repeatable sample of that many rows.
GX_SAMPLE_SEED = 42


@dataclass
class Verdict:
    success: bool
    message: str
    path: str
    n_bad: int
    gx_success: bool | None  # None: deferred to audit_deferred (a large clean batch)


def validate_batch(
    build: LakeBuild,
    config: DecayrecConfig,
    batch: StagedBatch,
    run_id: str,
    now: datetime,
) -> Verdict:
    """Make the temp table `bad_rows` for the build's `parsed_batch` and judge the batch."""
    rules = config.validation
    ranges = [(t, lo, hi) for t, (lo, hi) in rules.value_ranges.items()]
    build.empty_table("value_ranges", "event_type varchar, min_value double, max_value double")
    if ranges:
        build.executemany("insert into value_ranges values (?, ?, ?)", ranges)
    max_ts = now + timedelta(hours=rules.max_future_skew_hours)
    build.table(
        "bad_rows",
        f"""
        select row_number, 'parse' as expectation, error_field as field, error_reason as reason
        from parsed_batch where error_field is not null
        union all
        select row_number, expectation, field, reason
        from ({sql("validate/row_checks")})
        where expectation is not null
        """,
        {
            "event_types": rules.event_types,
            "max_event_ts": max_ts,
            "min_event_ts": rules.min_event_ts,
        },
    )
    n_bad = build.execute("select count(*) from bad_rows").fetchall()[0][0]
    if n_bad:
        fill_deferred_raw(build, batch)
    n_parsed = build.execute(
        "select count(*) from parsed_batch where error_field is null"
    ).fetchall()[0][0]
    parsed = (
        "select user_id, item_id, event_type, event_ts, value from parsed_batch "
        "where error_field is null"
    )
    gx_max_rows = config.validation.gx_max_rows
    sampled = n_parsed > gx_max_rows
    if sampled:  # a validated int from the config and a constant: nothing from outside
        parsed = (
            f"select * from ({parsed}) using sample reservoir({int(gx_max_rows)} rows) "
            f"repeatable ({int(GX_SAMPLE_SEED)})"
        )
    out_dir = Path(config.data_dir) / "validation" / run_id
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{batch.batch_id}.json"
    defer = (
        n_bad == 0 and rules.gx_defer_min_rows is not None and n_parsed >= rules.gx_defer_min_rows
    )
    if defer:  # judged after publish (audit_deferred); the sample kept for it
        sample = path.with_suffix(".gx-sample.parquet")
        build.sql(parsed).write_parquet(str(sample))
        n_validated = min(n_parsed, gx_max_rows)
        gx_result = {"success": True, "deferred": True, "sample": str(sample), "results": []}
    else:
        frame = build.sql(parsed).df()
        n_validated = len(frame)
        gx_result = run_expectations(frame, config, max_ts, name=batch.batch_id)

    share = n_bad / batch.rows_read if batch.rows_read else 1.0
    failed_gx = [r for r in gx_result["results"] if not r["success"]]
    success = gx_result["success"] and share <= rules.max_bad_row_share
    message = "ok"
    if not success:
        message = _failure_message(build, config, batch, share, failed_gx)

    summary = {
        "file": batch.file,
        "source": batch.source,
        "batch_id": batch.batch_id,
        "rows_read": batch.rows_read,
        "rows_bad": n_bad,
        "bad_share": share,
        "max_bad_row_share": rules.max_bad_row_share,
        "timestamp_unit": batch.timestamp_unit,
        "gx_rows_validated": n_validated,
        "gx_sampled": sampled,
        "gx_max_event_ts": max_ts.isoformat(),
        "bad_by_expectation": dict(
            build.execute("select expectation, count(*) from bad_rows group by all").fetchall()
        ),
        "success": success,
        "message": message,
        "great_expectations": gx_result,
    }
    path.write_text(json.dumps(summary, indent=2, default=str))
    return Verdict(success, message, str(path), n_bad, None if defer else gx_result["success"])


@dataclass
class AuditResult:
    """What `audit_deferred` did: the batches whose GX run had been deferred, judged now."""

    batches: int
    success: bool
    failed: list[str]  # one paragraph per batch GX rejects (naming file and expectations)

    def summary(self) -> dict[str, Any]:
        return {"batches": self.batches, "success": self.success, "failed": self.failed}


def audit_deferred(config: DecayrecConfig) -> AuditResult:
    """Run Great Expectations on every deferred sample in the data directory (tonight's
    batches, and those of an earlier run that failed after validating them), write its
    result into the batch's validation JSON (`great_expectations`, `gx_audited_at`) and
    remove the sample. A failed verdict means GX and the SQL row checks disagree on the
    rules; it is returned (and logged by the caller), the batch stays loaded."""
    failed: list[str] = []
    n = 0
    for sample in sorted((Path(config.data_dir) / "validation").glob("*/*.gx-sample.parquet")):
        path = sample.with_name(sample.name.removesuffix(".gx-sample.parquet") + ".json")
        summary = json.loads(path.read_text())
        if not (summary.get("great_expectations") or {}).get("deferred"):
            continue
        frame = pd.read_parquet(sample)
        max_ts = datetime.fromisoformat(summary["gx_max_event_ts"])
        result = run_expectations(frame, config, max_ts, name=summary["batch_id"])
        n += 1
        if not result["success"]:
            names = sorted(
                {r["expectation_config"]["type"] for r in result["results"] if not r["success"]}
            )
            failed.append(
                f"{summary['file']}: Great Expectations rejects the sample of {len(frame)} "
                f"rows ({', '.join(names)}) that the SQL row checks passed on every row; the "
                f"batch stays loaded. The two rule sets disagree: see {path}."
            )
        summary["great_expectations"] = result
        summary["gx_deferred"] = True
        summary["gx_audited_at"] = datetime.now(UTC).isoformat()
        path.write_text(json.dumps(summary, indent=2, default=str))
        sample.unlink(missing_ok=True)
    return AuditResult(batches=n, success=not failed, failed=failed)


def fill_deferred_raw(build: LakeBuild, batch: StagedBatch) -> None:
    """Give the bad rows of a Parquet batch their raw content (JSON of the file's columns),
    read back from the file by row number: ingestion stages no raw copy of every row.
    Should the file have changed since it was staged, the raw content is the JSON of the
    staged fields instead, marked so."""
    if not batch.raw_from_file:
        return

    params = {"file": batch.file}
    try:
        unchanged = sha256_of(batch.file) == batch.sha256
    except OSError:
        unchanged = False
    if unchanged:
        columns = [
            r[0]
            for r in build.execute("describe select * from read_parquet($file)", params).fetchall()
        ]
        fields = ", ".join(escape_ident(c) for c in columns)
        build.table(
            "deferred_raw",
            "select f.file_row_number + 1 as row_number, "
            f"to_json(struct_pack({fields}))::varchar as raw "
            "from read_parquet($file, file_row_number = true) as f "
            "semi join bad_rows as b on b.row_number = f.file_row_number + 1",
            params,
        )
    else:
        build.table(
            "deferred_raw",
            "select p.row_number, to_json(struct_pack(note := 'source file changed since "
            "staging; staged fields', user_id := s.user_id, item_id := s.item_id, "
            "event_type := s.event_type, event_ts := s.event_ts, value := s.value))::varchar "
            "as raw from parsed_batch as p semi join bad_rows as b on b.row_number = "
            "p.row_number join staged_rows as s on s.batch_id = $batch_id "
            "and s.row_number = p.row_number",
            {"batch_id": batch.batch_id},
        )
    build.execute(
        "update parsed_batch set raw = d.raw from deferred_raw as d "
        "where parsed_batch.row_number = d.row_number"
    )


def _failure_message(
    build: LakeBuild,
    config: DecayrecConfig,
    batch: StagedBatch,
    share: float,
    failed_gx: list[dict],
) -> str:
    rows = build.execute(
        "select p.line, p.row_number, b.expectation, b.reason, p.raw "
        "from bad_rows as b join parsed_batch as p using (row_number) "
        "order by p.row_number limit 3"
    ).fetchall()
    examples = "; ".join(
        f"{'line ' + str(line) if line is not None else 'row ' + str(rn)}: {exp}: {reason} "
        f"(raw: {str(raw)[:80]})"
        for line, rn, exp, reason, raw in rows
    )
    expectations = (
        ", ".join(sorted({r["expectation_config"]["type"] for r in failed_gx})) or "bad-row share"
    )
    return (
        f"{batch.file}: batch rejected by validation ({expectations}); "
        f"{share:.1%} of {batch.rows_read} rows are bad, the limit is "
        f"{config.validation.max_bad_row_share:.1%}. Examples: {examples or 'none'}"
    )


_GX_CONTEXT: Any = None


def _not_ephemeral_docs(record: logging.LogRecord) -> bool:
    """GX's ephemeral context logs, at INFO, the temporary directory of a docs site that
    decayrec never builds: that record is dropped, GX's others are kept."""
    message = str(record.msg)
    return not (
        message.startswith("Created temporary directory") and "ephemeral docs site" in message
    )


logging.getLogger("great_expectations.data_context.types.base").addFilter(_not_ephemeral_docs)


def _context() -> Any:
    global _GX_CONTEXT
    if _GX_CONTEXT is None:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        _GX_CONTEXT = gx.get_context(mode="ephemeral")
        try:
            _GX_CONTEXT.variables.progress_bars = ProgressBarsConfig(globally=False)
        except Exception:  # progress bars are cosmetic
            pass
    return _GX_CONTEXT


def build_suite(config: DecayrecConfig, max_ts: datetime, name: str) -> Any:
    """The expectation suite for a batch of parsed events."""
    import great_expectations as gx

    rules = config.validation
    mostly = max(0.0, 1.0 - rules.max_bad_row_share)
    e = gx.expectations
    suite = gx.ExpectationSuite(name=f"events-{name}")
    suite.add_expectation(e.ExpectTableRowCountToBeBetween(min_value=1))
    for column in EVENT_KEY:
        suite.add_expectation(e.ExpectColumnValuesToNotBeNull(column=column))
    suite.add_expectation(
        e.ExpectColumnValuesToBeInSet(
            column="event_type", value_set=rules.event_types, mostly=mostly
        )
    )
    suite.add_expectation(
        e.ExpectColumnValuesToBeBetween(
            column="event_ts", min_value=rules.min_event_ts, max_value=max_ts, mostly=mostly
        )
    )
    for event_type, (lo, hi) in rules.value_ranges.items():
        suite.add_expectation(
            e.ExpectColumnValuesToBeBetween(
                column="value",
                min_value=lo,
                max_value=hi,
                mostly=mostly,
                # event types are checked against [A-Za-z0-9_.-] in the config
                row_condition=f'event_type=="{event_type}"',
                condition_parser="pandas",
            )
        )
    suite.add_expectation(e.ExpectCompoundColumnsToBeUnique(column_list=EVENT_KEY, mostly=mostly))
    return suite


def run_expectations(frame: Any, config: DecayrecConfig, max_ts: datetime, name: str) -> dict:
    """Validate a pandas frame of parsed events with GX; the result as a JSON-able dict."""
    import great_expectations as gx

    context = _context()
    suite = context.suites.add_or_update(build_suite(config, max_ts, name))
    source = context.data_sources.add_or_update_pandas(name="decayrec")
    asset = next((a for a in source.assets if a.name == "events"), None)
    if asset is None:
        asset = source.add_dataframe_asset(name="events")
    definition = next((b for b in asset.batch_definitions if b.name == "whole"), None)
    if definition is None:
        definition = asset.add_batch_definition_whole_dataframe("whole")
    validation = gx.ValidationDefinition(name=f"validate-{name}", data=definition, suite=suite)
    validation = context.validation_definitions.add_or_update(validation)
    result = validation.run(batch_parameters={"dataframe": frame}, result_format="SUMMARY")
    return result.to_json_dict()
