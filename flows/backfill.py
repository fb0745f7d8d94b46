"""The backfill flow: the nightly flow for each as-of date of a range, oldest first."""

from datetime import date, timedelta
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from decayrec.config import DecayrecConfig
from decayrec.sqlfiles import sql
from decayrec.warehouse import configured_warehouse
from flows.nightly import nightly


class BackfillStopped(RuntimeError):
    """A day of the backfill failed; the later days were not run."""


def published_dates(config: DecayrecConfig, start: date, end: date) -> set[date]:
    """The dates in [start, end] with a succeeded run and their lists in the warehouse."""
    warehouse = configured_warehouse(config)
    warehouse.ensure_schema()
    rows = warehouse.query(
        sql("ops/published_dates"), {"start_date": start, "end_date": end}
    ).to_pylist()
    return {r["as_of_date"] for r in rows}


def run_record(config: DecayrecConfig, run_id: str) -> dict[str, Any]:
    rows = configured_warehouse(config).query(sql("ops/run_record"), {"run_id": run_id}).to_pylist()
    return rows[0] if rows else {}


def report_markdown(start: date, end: date, force: bool, days: list[dict[str, Any]]) -> str:
    lines = [
        f"# Backfill {start} to {end}" + (" (forced)" if force else ""),
        "",
        "| as-of date | outcome | run | detail |",
        "|---|---|---|---|",
    ]
    for d in days:
        run = str(d.get("run_id") or "")[:8]
        lines.append(f"| {d['as_of']} | {d['outcome']} | {run} | {d.get('detail', '')} |")
    return "\n".join(lines)


@flow(
    name="backfill",
    flow_run_name="backfill-{start}-to-{end}",
    log_prints=True,
    timeout_seconds=7 * 24 * 3600,
)
def backfill(
    start: date,
    end: date,
    force: bool = False,
    config: DecayrecConfig = DecayrecConfig(),  # noqa: B008 - the UI form shows these defaults
) -> dict[str, Any]:
    """Publish the lists of every as-of date from `start` to `end`, oldest first.

    A day that is already published (a succeeded run whose lists are in the warehouse)
    is skipped unless `force`. The first day that fails stops the backfill: the report
    (the flow's error and its "backfill-report" artifact) says which days were
    published, which failed and why, and which were not run.

    Args:
        start: first as-of date (inclusive)
        end: last as-of date (inclusive)
        force: rerun days that are already published, replacing their lists
        config: the configuration every day runs with
    """
    if end < start:
        raise ValueError(f"backfill: end {end} is before start {start}")
    logger = get_run_logger()
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    done = set() if force else published_dates(config, start, end)
    report: list[dict[str, Any]] = []
    stopped: dict[str, Any] | None = None
    for i, day in enumerate(days):
        if stopped is not None:
            report.append({"as_of": day.isoformat(), "outcome": "not run"})
            continue
        if day in done:
            logger.info("%s already published: skipped (force=True reruns it)", day)
            report.append({"as_of": day.isoformat(), "outcome": "skipped", "detail": "published"})
            continue
        logger.info("day %d/%d: %s", i + 1, len(days), day)
        state = nightly(as_of=day, config=config, return_state=True)
        run_id = str(state.state_details.flow_run_id) if state.state_details else None
        if not state.is_completed():
            record = run_record(config, run_id) if run_id else {}
            task = record.get("failed_task") or "flow"
            error = record.get("error") or state.message or "failed"
            stopped = {
                "as_of": day.isoformat(),
                "outcome": "failed",
                "run_id": run_id,
                "detail": f"{task}: {' '.join(str(error).split())[:500]}",
            }
            report.append(stopped)
            continue
        result = state.result()
        outcome = "published" if result.get("published") else "unchanged"
        if result.get("status") == "skipped":
            outcome = "skipped"
        report.append({"as_of": day.isoformat(), "outcome": outcome, "run_id": run_id})
    create_markdown_artifact(
        report_markdown(start, end, force, report),
        key="backfill-report",
        description=f"backfill {start} to {end}",
    )
    summary = {"start": start.isoformat(), "end": end.isoformat(), "force": force, "days": report}
    if stopped is not None:
        ok = [d["as_of"] for d in report if d["outcome"] in ("published", "unchanged")]
        not_run = [d["as_of"] for d in report if d["outcome"] == "not run"]
        raise BackfillStopped(
            f"backfill {start}..{end} stopped at {stopped['as_of']}, which failed in "
            f"{stopped['detail']}; run before it: {ok or 'none'}; not run: {not_run or 'none'}"
        )
    logger.info("backfill %s..%s: %s", start, end, [(d["as_of"], d["outcome"]) for d in report])
    return summary
