"""What a run shows in the Prefect UI (its Artifacts tab, and the Artifacts page by key):
the metrics of this run against the last runs (a table, and a chart over the runs), the
validation results of its batches, the gate's decision, a sample of the lists, and the
decay plots. Plots are PNGs embedded in markdown artifacts (data: URIs): Prefect's image
artifacts take a URL, and a run's files are not served."""

import base64
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from decayrec.config import DecayrecConfig
from decayrec.evaluation.plots import metric_history
from decayrec.lake.ingest import BatchResult
from decayrec.warehouse import configured_warehouse
from decayrec.warehouse.base import RunOutcome
from decayrec.warehouse.queries import run_query
from tasks import TIMEOUTS

N_PREVIOUS_RUNS = 5
N_HISTORY_RUNS = 60
SAMPLE_USERS = 5
MAX_EMBEDDED_BYTES = 2_000_000


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _rounded(value: Any) -> float | None:
    return None if value is None else round(value, 4)


def metrics_rows(config: DecayrecConfig, run_id: str, n_previous: int = N_PREVIOUS_RUNS) -> list:
    """This run and the last `n_previous` succeeded runs, one row each, newest first: the
    gate's metric under the gate's protocol (the first configured) for the model and for
    decayed popularity, then the same metric under the other protocols."""
    warehouse = configured_warehouse(config)
    runs = warehouse.query(
        "select run_id, as_of_date, status, finished_at, model, metrics, published, n_users "
        "from recommendation_runs where run_id = $run_id or status = 'succeeded' "
        "order by (run_id = $run_id) desc, finished_at desc limit $n",
        {"run_id": run_id, "n": n_previous + 1},
    ).to_pylist()
    gate_protocol, *others = config.evaluation.protocols
    metric = config.model.gate_metric
    rows = []
    for r in runs:
        metrics = _json(r["metrics"]) or {}
        gate_result = metrics.get(gate_protocol) or {}
        row = {
            "run": ("this run " if r["run_id"] == run_id else "") + str(r["run_id"])[:8],
            "as_of": str(r["as_of_date"]),
            "model": r["model"],
            "published": r["published"],
            "users": r["n_users"],
            f"{gate_protocol} {metric}": _rounded(gate_result.get("model", {}).get(metric)),
            f"{gate_protocol} popularity {metric}": _rounded(
                gate_result.get("popularity", {}).get(metric)
            ),
        }
        for protocol in others:
            result = metrics.get(protocol) or {}
            row[f"{protocol} {metric}"] = _rounded(result.get("model", {}).get(metric))
        rows.append(row)
    return rows


def metric_history_rows(
    config: DecayrecConfig, n_runs: int = N_HISTORY_RUNS
) -> dict[str, list[dict[str, Any]]]:
    """Per configured protocol (the gate's first), the last `n_runs` succeeded runs'
    metrics at 10, oldest first (sql/queries/metric_history.sql)."""
    warehouse = configured_warehouse(config)
    return {
        protocol: run_query(
            warehouse, "metric_history", {"protocol": protocol, "k": "10", "status": "succeeded"}
        ).to_pylist()[-n_runs:]
        for protocol in config.evaluation.protocols
    }


def _embedded(path: str | Path, alt: str) -> str:
    """A PNG as markdown, inline (data: URI); a missing or too large file is named."""
    path = Path(path)
    if not path.exists():
        return f"({alt}: {path.name} is missing)"
    if path.stat().st_size > MAX_EMBEDDED_BYTES:
        return f"({alt}: {path.name} is too large to show here; it is in the run's directory)"
    data = base64.b64encode(path.read_bytes()).decode()
    return f"![{alt}](data:image/png;base64,{data})"


def metric_history_markdown(
    config: DecayrecConfig, run_id: str, history: dict[str, list[dict[str, Any]]]
) -> str:
    """The metric-over-runs chart of this run's directory, and what it shows."""
    directory = Path(config.data_dir) / "runs" / run_id
    directory.mkdir(parents=True, exist_ok=True)
    path = metric_history(history, directory / "metric_history.png", current_run=run_id)
    n = max((len(rows) for rows in history.values()), default=0)
    lines = [
        "# Backtest metrics over the runs",
        "",
        f"ndcg@10 of the model and of decayed popularity, last {n} succeeded runs, per "
        f"protocol; the gate compares {config.model.gate_metric} under "
        f"{config.evaluation.protocols[0]}.",
        "",
        _embedded(path, "metrics over runs"),
    ]
    return "\n".join(lines)


def _check(success: bool) -> str:
    return "yes" if success else "**no**"


def _expectation_name(result: dict[str, Any]) -> str:
    expectation = result.get("expectation_config") or {}
    kwargs = expectation.get("kwargs") or {}
    column = kwargs.get("column") or ", ".join(kwargs.get("column_list") or [])
    name = str(expectation.get("type", "?"))
    return f"`{name}` ({column})" if column else f"`{name}`"


def _unexpected(result: dict[str, Any]) -> str:
    outcome = result.get("result") or {}
    if "unexpected_count" in outcome:
        return str(outcome["unexpected_count"])
    if "observed_value" in outcome:
        return f"observed {outcome['observed_value']}"
    return ""


def batch_markdown(batch: BatchResult, data_dir: str | Path) -> list[str]:
    """One batch: its counts, then a table of every check: the SQL row checks (on every
    row; failing rows are quarantined) and the Great Expectations suite."""
    path = Path(batch.validation_path)
    try:
        where = path.resolve().relative_to(Path(data_dir).resolve())
    except ValueError:
        where = path
    lines = [
        f"## {Path(batch.file).name} (batch {batch.batch_id[:12]})",
        "",
        f"{batch.rows_read} rows read, {batch.rows_accepted} accepted, "
        f"{batch.rows_inserted} inserted, {batch.rows_quarantined} quarantined"
        + (
            f", {batch.rows_conflicting} conflicting with loaded events (first value kept)"
            if batch.rows_conflicting
            else ""
        ),
        "",
    ]
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return [*lines, f"(the validation result {where} cannot be read: {exc})", ""]
    lines += [
        f"batch passed: {_check(bool(result.get('success')))}"
        + (f" ({result['message']})" if result.get("message") not in (None, "ok") else ""),
        "",
        "| expectation | success | unexpected count |",
        "|---|---|---|",
    ]
    for name, n in sorted((result.get("bad_by_expectation") or {}).items()):
        lines.append(f"| row check `{name}` (every row) | {_check(not n)} | {n} |")
    gx = result.get("great_expectations") or {}
    sampled = " (a sample)" if result.get("gx_sampled") else ""
    if result.get("gx_deferred"):  # a large clean batch: GX ran after the publish
        sampled = f"{sampled} (after the publish)"
    for r in gx.get("results", []):
        lines.append(
            f"| {_expectation_name(r)}{sampled} | {_check(bool(r.get('success')))} | "
            f"{_unexpected(r)} |"
        )
    return [*lines, "", f"result file: `{where}` in the data directory", ""]


def validation_markdown(batches: list[BatchResult], data_dir: str | Path) -> str:
    lines = ["# Validation", ""]
    for b in batches:
        lines += batch_markdown(b, data_dir)
    if not batches:
        lines.append("(no new source files this run: nothing was validated)")
    return "\n".join(lines)


def decay_markdown(decay: dict[str, Any]) -> str:
    lines = [f"# Decay: {decay.get('title') or decay.get('kernel')}", ""]
    if decay.get("event_types") is not None:
        types = ", ".join(decay["event_types"]) or "none"
        lines += [f"event types in the data with a weight: {types}", ""]
    if decay.get("user_half_life_note"):
        lines += [decay["user_half_life_note"], ""]
    half = decay.get("user_half_life_days")
    if half and decay.get("user_decay") != "off":
        quantiles = ", ".join(f"{k} {v:.3g}" for k, v in half.items())
        lines += [f"per-user half-life (days): {quantiles}", ""]
    for plot in decay.get("plots", []):
        lines += [_embedded(plot, Path(plot).stem), ""]
    return "\n".join(lines)


def gate_markdown(gate: dict[str, Any]) -> str:
    """The gate's decision; a popularity-floor decision leads with a warning."""
    lines = ["# Gate", ""]
    if gate.get("warning"):
        lines += [f"**Warning: {gate['warning']}**", ""]
    lines += [f"decision: `{gate.get('decision')}`", "", f"reason: {gate.get('reason')}", ""]
    lines += ["| | " + gate.get("metric", "") + " |", "|---|---|"]
    for side in ("challenger", "champion", "popularity"):
        value = gate.get(side)
        if value is not None:
            lines.append(f"| {side} | {value:.4f} |")
    return "\n".join(lines)


def sample_rows(lists_path: str, n_users: int = SAMPLE_USERS) -> list[dict[str, Any]]:
    table = pq.read_table(lists_path)
    users = sorted(pc.unique(table["user_id"]).to_pylist())[:n_users]
    sample = table.filter(pc.is_in(table["user_id"], value_set=pa.array(users)))
    return sorted(sample.to_pylist(), key=lambda r: (r["user_id"], r["rank"]))


@task(name="artifacts", timeout_seconds=TIMEOUTS["small"])
def run_artifacts(
    config: DecayrecConfig,
    run_id: str,
    outcome: RunOutcome,
    batches: list[BatchResult],
    lists_path: str | None,
) -> list[str]:
    """Create the run's artifacts; a failure here is logged, never fails the run."""
    logger = get_run_logger()
    made = []
    try:
        create_table_artifact(
            metrics_rows(config, run_id),
            key="nightly-metrics",
            description="This run against the last succeeded runs (model metrics per protocol)",
        )
        made.append("nightly-metrics")
        create_markdown_artifact(
            metric_history_markdown(config, run_id, metric_history_rows(config)),
            key="nightly-metric-history",
            description="Backtest metrics over the last runs: model vs decayed popularity",
        )
        made.append("nightly-metric-history")
        create_markdown_artifact(
            validation_markdown(batches, config.data_dir),
            key="nightly-validation",
            description="Row checks and Great Expectations results of this run's batches",
        )
        made.append("nightly-validation")
        if lists_path:
            create_table_artifact(
                sample_rows(lists_path),
                key="nightly-lists-sample",
                description=f"The lists of the first {SAMPLE_USERS} users",
            )
            made.append("nightly-lists-sample")
        gate = (outcome.metrics or {}).get("gate")
        if gate:
            create_markdown_artifact(
                gate_markdown(gate),
                key="nightly-gate",
                description="Which lists were published and why"
                + (" (WARNING: below the popularity floor)" if gate.get("warning") else ""),
            )
            made.append("nightly-gate")
        decay = (outcome.metrics or {}).get("decay")
        if decay:
            create_markdown_artifact(
                decay_markdown(decay), key="nightly-decay", description="Decay plots of this run"
            )
            made.append("nightly-decay")
    except Exception as exc:
        logger.warning("artifacts incomplete (%s): %s", made, exc)
    return made
