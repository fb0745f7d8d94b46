"""What a run shows in the Prefect UI (its Artifacts tab, and the Artifacts page by key):
the metrics of this run against the last runs, the validation summary with links to the
result files, a sample of the lists, and the decay plots."""

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
from decayrec.lake.ingest import BatchResult
from decayrec.warehouse import configured_warehouse
from decayrec.warehouse.base import RunOutcome
from tasks import TIMEOUTS

N_PREVIOUS_RUNS = 5
SAMPLE_USERS = 5


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def metrics_rows(config: DecayrecConfig, run_id: str, n_previous: int = N_PREVIOUS_RUNS) -> list:
    """This run and the last `n_previous` succeeded runs, one row each, newest first."""
    warehouse = configured_warehouse(config)
    runs = warehouse.query(
        "select run_id, as_of_date, status, finished_at, model, metrics, published, n_users, "
        "n_rows from recommendation_runs where run_id = $run_id or status = 'succeeded' "
        "order by (run_id = $run_id) desc, finished_at desc limit $n",
        {"run_id": run_id, "n": n_previous + 1},
    ).to_pylist()
    rows = []
    for r in runs:
        row = {
            "run": ("this run " if r["run_id"] == run_id else "") + str(r["run_id"])[:8],
            "as_of": str(r["as_of_date"]),
            "model": r["model"],
            "published": r["published"],
            "users": r["n_users"],
        }
        for protocol, result in (_json(r["metrics"]) or {}).items():
            if isinstance(result, dict) and "model" in result:
                for name in ("ndcg@10", "recall@10", "coverage@10"):
                    value = result["model"].get(name)
                    row[f"{protocol} {name}"] = None if value is None else round(value, 4)
                pop = result.get("popularity", {}).get("ndcg@10")
                row[f"{protocol} popularity ndcg@10"] = None if pop is None else round(pop, 4)
        rows.append(row)
    return rows


def validation_markdown(batches: list[BatchResult]) -> str:
    lines = [
        "# Validation",
        "",
        "| batch | file | read | accepted | inserted | quarantined | result |",
        "|---|---|---|---|---|---|---|",
    ]
    for b in batches:
        link = f"[{Path(b.validation_path).name}]({Path(b.validation_path).resolve().as_uri()})"
        lines.append(
            f"| {b.batch_id[:12]} | {Path(b.file).name} | {b.rows_read} | {b.rows_accepted} | "
            f"{b.rows_inserted} | {b.rows_quarantined} | {link} |"
        )
        for expectation, n in sorted(b.quarantined_by_expectation.items()):
            lines.append(f"|  | quarantined by `{expectation}` | | | | {n} | |")
        if b.rows_conflicting:
            lines.append(
                f"|  | {b.rows_conflicting} rows conflict with loaded events (first loaded value "
                "kept) | | | | | |"
            )
    if not batches:
        lines.append("| (no new source files this run) | | | | | | |")
    return "\n".join(lines)


def decay_markdown(decay: dict[str, Any]) -> str:
    lines = [f"# Decay: {decay.get('kernel')}", ""]
    half = decay.get("user_half_life_days")
    if half:
        lines += [f"per-user half-life (days): {json.dumps(half)}", ""]
    for plot in decay.get("plots", []):
        path = Path(plot)
        if path.exists() and path.stat().st_size < 2_000_000:
            data = base64.b64encode(path.read_bytes()).decode()
            lines += [f"![{path.stem}](data:image/png;base64,{data})", ""]
        lines += [f"[{path.name}]({path.resolve().as_uri()})", ""]
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
            validation_markdown(batches),
            key="nightly-validation",
            description="Great Expectations results of this run's batches",
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
