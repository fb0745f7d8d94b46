"""What a nightly run did, for operators: the facts of a run (plain JSON values: no numpy
scalars, no paths objects) and their text, printed by `decayrec run` and logged once at
the end of the flow."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import PurePath
from typing import Any

from decayrec.config import DecayrecConfig, mask_url
from decayrec.evaluation.metrics import figure, ndcg_line

LAKE_TABLES = ("events", "quarantine", "load_log")
WAREHOUSE_TABLES = ("recommendations", "recommendation_runs", "recommendations_latest")


def plain(value: Any) -> Any:
    """`value` with numpy scalars and arrays, paths and dates turned into JSON's own
    types, recursively (dict keys into strings)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [plain(v) for v in value]
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if hasattr(value, "tolist"):  # numpy scalar or array
        return plain(value.tolist())
    if hasattr(value, "__dict__"):
        return plain(vars(value))
    return str(value)


def run_facts(
    config: DecayrecConfig,
    *,
    run_id: str,
    as_of: date,
    model: str,
    stage_seconds: dict[str, float],
    batches: list[Any],
    metrics: dict[str, Any],
    n_users: int,
    n_rows: int,
    n_fallback_rows: int,
    published: bool,
) -> dict[str, Any]:
    """The facts of a succeeded nightly run; `config` is the one the run used (the
    tuning winner applied), `metrics` the run outcome's (protocols, decay, gate,
    publish_check), `batches` the validated batches (decayrec.lake.ingest.BatchResult)."""
    from decayrec.evaluation.tune import describe_config

    decay = metrics.get("decay") or {}
    gate = metrics.get("gate") or {}
    check = metrics.get("publish_check") or {}
    evaluation = {}
    for protocol in config.evaluation.protocols:
        result = metrics.get(protocol) or {}
        if "model" in result:
            evaluation[protocol] = {
                "users": result.get("n_eval_users"),
                "model_ndcg@10": result["model"].get("ndcg@10"),
                "popularity_ndcg@10": result.get("popularity", {}).get("ndcg@10"),
            }
        else:
            evaluation[protocol] = {"skipped": result.get("skipped", "not run")}
    facts = {
        "run_id": run_id,
        "as_of": as_of,
        "status": "succeeded",
        "published": published,
        "users": n_users,
        "rows": n_rows,
        "fallback_rows": n_fallback_rows,
        "stage_seconds": stage_seconds,
        "batches": [
            {
                "source": b.source,
                "file": b.file,
                "read": b.rows_read,
                "accepted": b.rows_accepted,
                "quarantined": b.rows_quarantined,
                "conflicting": b.rows_conflicting,
            }
            for b in batches
        ],
        "model": {
            "name": config.model.name,
            "published": model,
            "settings": describe_config(config),
            "tune_id": decay.get("tune_id"),
        },
        "evaluation": evaluation,
        "night": (metrics.get("night") or {}).get("summary", "refit"),
        "gate": {k: gate[k] for k in ("decision", "reason", "warning") if k in gate},
        "publish_check": (
            "off" if not check.get("enabled", True) else "passed" if check else "not run"
        ),
        "lake": {"path": config.lake_path, "tables": LAKE_TABLES},
        "warehouse": {"url": mask_url(config.resolved_warehouse_url), "tables": WAREHOUSE_TABLES},
        "plots": decay.get("plots", []),
    }
    if "champion_set_aside" in gate:
        facts["gate"]["champion_set_aside"] = gate["champion_set_aside"]
    return plain(facts)


def headline(facts: dict[str, Any]) -> str:
    """One line: the run, what it published, the model, the gate and NDCG@10."""
    ndcg = "; ".join(
        f"{p} NDCG@10 {figure(e['model_ndcg@10'])} vs popularity {figure(e['popularity_ndcg@10'])}"
        for p, e in facts["evaluation"].items()
        if "skipped" not in e
    )
    published = "published" if facts["published"] else "unchanged (already live)"
    gate = facts["gate"].get("decision", "n/a")
    return (
        f"run {facts['run_id']} for {facts['as_of']} succeeded: {facts['rows']} rows for "
        f"{facts['users']} users {published}; {facts['model']['settings']}; "
        f"{facts.get('night', 'refit')}; gate {gate}" + (f"; {ndcg}" if ndcg else "")
    )


def log_message(facts: dict[str, Any]) -> str:
    """The flow's last log record: the headline, then the facts as one JSON line."""
    payload = json.dumps(facts, separators=(",", ":"), ensure_ascii=False)
    return f"{headline(facts)}\nsummary: {payload}"


def summary_text(facts: dict[str, Any]) -> str:
    """The facts as the lines `decayrec run` prints."""
    seconds = facts["stage_seconds"]
    stages = ", ".join(f"{name} {s:.1f}" for name, s in seconds.items())
    lines = [
        f"run {facts['run_id']} for {facts['as_of']}: {facts['rows']} rows for "
        f"{facts['users']} users ({facts['fallback_rows']} from the popularity fallback); "
        + ("published" if facts["published"] else "not published: identical lists were live"),
        f"stages (s, {sum(seconds.values()):.1f} in all): {stages}",
    ]
    for b in facts["batches"]:
        lines.append(
            f"batch {b['file']}: {b['read']} rows read, {b['accepted']} accepted, "
            f"{b['quarantined']} quarantined"
            + (f", {b['conflicting']} conflicting" if b["conflicting"] else "")
        )
    model = facts["model"]
    tuned = f" (tune {model['tune_id']})" if model.get("tune_id") else ""
    lines.append(f"model: {model['settings']}{tuned}")
    lines.append(f"night: {facts.get('night', 'refit')}")
    for protocol, e in facts["evaluation"].items():
        if "skipped" in e:
            lines.append(f"{protocol}: not evaluated: {e['skipped']}")
        else:
            line = ndcg_line(e["model_ndcg@10"], e["popularity_ndcg@10"], e["users"])
            lines.append(f"{protocol}: {line}")
    gate = facts["gate"]
    if gate:
        lines.append(
            f"gate: {gate.get('decision')} ({gate.get('reason')})"
            + (f"; warning: {gate['warning']}" if gate.get("warning") else "")
            + (f"; {gate['champion_set_aside']}" if gate.get("champion_set_aside") else "")
        )
    lines.append(f"publish-check: {facts['publish_check']}")
    lake, warehouse = facts["lake"], facts["warehouse"]
    lines.append(f"lake ({', '.join(lake['tables'])}): {lake['path']}")
    lines.append(f"warehouse ({', '.join(warehouse['tables'])}): {warehouse['url']}")
    if facts["plots"]:
        lines.append(f"plots: {', '.join(facts['plots'])}")
    return "\n".join(lines)


def sample_text(rows: list[dict[str, Any]]) -> str:
    """One user's published list, scores to 3 significant digits."""
    if not rows:
        return "no list published"
    lines = [f"list of user {rows[0]['user_id']}:"]
    for row in rows:
        lines.append(
            f"  {row['rank']:>3}  {row['item_id']:<12} {figure(row['score']):>10}  {row['source']}"
        )
    return "\n".join(lines)
