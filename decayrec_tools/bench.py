"""`decayrec bench`: the nightly stages at a given scale, timed and measured one by one.

    decayrec bench --events 10000000 [--model ease|ials|itemknn] [--out DIR] [--seed S]
                   [--reuse] [--stages ingest validate features ...] [--flow]

Synthetic events (decayrec_tools.synthetic, interest drift) are generated once per (events, seed,
items) under the data root (default /tmp/bench-data, never the repository) and reused
with --reuse. Then the stages of flows/nightly.py run in order, as the plain functions the
Prefect tasks wrap, each in a process of its own:

    ingest    decayrec.lake.ingest.stage_sources        source files -> staged_rows
    validate  decayrec.lake.ingest.load_batches         parse, row checks, GX verdict -> events
    features  decayrec.lake.features.build_snapshot     decayed matrix -> Parquet snapshot
    train     decayrec.scoring.lists.train_and_score       fit + every user's top-K list
    evaluate  decayrec.evaluation.backtest.backtest  global-time protocol, model and popularity
    export    decayrec.warehouse (DuckDB file)     schema, run record, atomic publish

Per stage: wall seconds (of the stage function, measured in its process), events/s (the
generated events over those seconds), and peak RSS. **How the peak is measured**: every
stage runs in a child forked from a forkserver that has already imported the project
(torch, DuckDB, Great Expectations), and the child reports its own
``getrusage(RUSAGE_SELF).ru_maxrss`` when the stage returns. That is the high-water mark of
that process only, so one stage's memory never leaks into the next one's figure; it
includes the imported modules' baseline (reported as ``start_rss_mib``), as the real flow's
process does. (Resetting VmHWM through /proc/self/clear_refs works on this kernel too, but
in one long process the allocator keeps what earlier stages freed, which would be charged
to later stages.) The whole run's peak is the largest stage peak.

`--flow` also runs the real Prefect flow (flows/nightly.py through `decayrec run`, with
a temporary local Prefect server) on the same events and config in a subprocess, and
reports its wall time and peak RSS (``os.wait4``: the flow process and the children it
waited for).

Results go to ``<out>/bench.json`` and ``<out>/bench.md``.

:func:`export_split` writes the global-time split of a lake (training events and truth,
by the project's own SQL) to Parquet for peers, and :func:`evaluate_lists` scores a peer's
lists with decayrec.evaluation.metrics exactly as decayrec's backtest scores its own
(bench/peers.py).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from decayrec.config import DecayrecConfig, EvaluationConfig, SourceConfig, model_section

STAGES = ("ingest", "validate", "features", "train", "evaluate", "export")
# reported beside the full night's stages, not added to them: gx-audit (Great Expectations
# on the samples of large clean batches, after the publish, off the critical path; run by
# default) and, when asked for (--stages ... incremental), the next night, incremental
EXTRA_STAGES = ("gx-audit", "incremental")
DEFAULT_STAGES = (*STAGES, "gx-audit")
AS_OF = date(2025, 1, 1)  # the synthetic window is 2024; T = its end
DEFAULT_DATA_ROOT = Path(os.environ.get("DECAYREC_BENCH_DATA", "/tmp/bench-data"))
MAX_DEFAULT_ITEMS = 20_000
PRELOAD = [
    "decayrec_tools.bench",
    "decayrec.lake.ingest",
    "decayrec.lake.validate",
    "decayrec.lake.features",
    "decayrec.scoring.lists",
    "decayrec.evaluation.backtest",
    "decayrec.warehouse",
]  # not great_expectations: a stage that runs GX pays its import, as the nightly's process does


class BenchError(RuntimeError):
    """A stage failed or could not run (its inputs are missing)."""


# -- data and configuration ---------------------------------------------------------


def default_items(n_events: int) -> int:
    """Catalogue size of the generated data: one item per 500 events, in [200, 20,000]
    (10^7 events: 2x10^4 items, the issue's reference shape)."""
    return int(min(max(n_events // 500, 200), MAX_DEFAULT_ITEMS))


def events_dir(data_root: Path, n_events: int, seed: int, n_items: int) -> Path:
    return Path(data_root) / "events" / f"n{n_events}-seed{seed}-items{n_items}"


def bench_events(
    n_events: int,
    seed: int = 0,
    data_root: str | Path = DEFAULT_DATA_ROOT,
    n_items: int | None = None,
    reuse: bool = True,
) -> dict[str, Any]:
    """The events file for (n_events, seed, n_items): reused when it exists and `reuse`,
    else generated (streamed, bounded memory). Returns path, counts and seconds."""
    from decayrec_tools.synthetic import write_events

    n_items = n_items or default_items(n_events)
    out = events_dir(Path(data_root), n_events, seed, n_items)
    path = out / "events.parquet"
    began = time.perf_counter()
    reused = reuse and path.exists()
    if not reused:
        write_events(out, n_events=n_events, seed=seed, n_items=n_items)
    meta = pq.read_metadata(path)
    return {
        "path": str(path),
        "n_events": meta.num_rows,
        "n_users": pq.read_metadata(out / "users.parquet").num_rows,
        "n_items": n_items,
        "bytes": path.stat().st_size,
        "reused": reused,
        "seconds": round(time.perf_counter() - began, 3),
    }


def bench_config(
    out_dir: str | Path,
    events_path: str | Path,
    model: str = "ease",
    half_life_days: float | None = None,
) -> DecayrecConfig:
    """The config every bench stage (and the --flow run) uses: the project's defaults, one
    Parquet source, no tuning winner, the global-time protocol (the one for event
    streams, DESIGN.md), a DuckDB file warehouse beside the lake; `half_life_days`
    replaces the default decay half-life."""
    out = Path(out_dir).resolve()
    config = DecayrecConfig(
        data_dir=out / "data",
        warehouse_url=f"duckdb:///{out / 'data' / 'warehouse.duckdb'}",
        sources=[SourceConfig(path=str(Path(events_path).resolve()), name="bench")],
        use_tuned=False,
        model=model_section({"name": model}),
        evaluation=EvaluationConfig(protocols=["global_time"]),
    )
    if half_life_days is not None:
        decay = config.decay.model_copy(update={"half_life_days": float(half_life_days)})
        config = config.model_copy(update={"decay": decay})
    return config


# -- the stages, each run in a child process ---------------------------------------


def _ingest(config: DecayrecConfig, run_id: str, state: dict) -> tuple[Any, dict]:
    from decayrec.lake.ingest import stage_sources

    staged = stage_sources(config, run_id)
    return staged, {"batches": len(staged), "rows_staged": sum(b.rows_read for b in staged)}


def _validate(config: DecayrecConfig, run_id: str, state: dict) -> tuple[Any, dict]:
    from decayrec.lake.ingest import load_batches

    if "ingest" not in state:
        raise BenchError("validate needs the ingest stage of the same run")
    loaded = load_batches(config, state["ingest"], run_id)
    return loaded, {
        "rows_inserted": sum(b.rows_inserted for b in loaded),
        "rows_quarantined": sum(b.rows_quarantined for b in loaded),
    }


def _features(config: DecayrecConfig, run_id: str, state: dict) -> tuple[Any, dict]:
    from decayrec.lake.features import build_snapshot

    if not config.lake_path.exists():
        raise BenchError(f"features needs a lake with events ({config.lake_path} is missing)")
    snapshot = build_snapshot(config, config.as_of_time(state["as_of"]))
    return snapshot, {
        "n_users": snapshot.n_users,
        "n_items": snapshot.n_items,
        "n_nonzero": snapshot.n_nonzero,
        "n_events": snapshot.n_events,
    }


def _train(config: DecayrecConfig, run_id: str, state: dict) -> tuple[Any, dict]:
    from decayrec.scoring.lists import train_and_score

    if "features" not in state:
        raise BenchError("train needs the features stage of the same run")
    trained = train_and_score(config, state["features"], run_id)
    return trained, {
        "model": trained.model,
        "device": trained.device,
        "fit_seconds": trained.train_seconds,
        "score_seconds": trained.score_seconds,
        "n_users": trained.n_users,
        "n_rows": trained.n_rows,
        "n_fallback_rows": trained.n_fallback_rows,
    }


def _evaluate(config: DecayrecConfig, run_id: str, state: dict) -> tuple[Any, dict]:
    from decayrec.evaluation.backtest import backtest

    if not config.lake_path.exists():
        raise BenchError(f"evaluate needs a lake with events ({config.lake_path} is missing)")
    result = backtest(config, config.as_of_time(state["as_of"]), "global_time")
    return result, {
        k: result.get(k)
        for k in ("cutoff", "n_eval_users", "n_train_users", "n_train_items", "train_seconds")
    }


def _export(config: DecayrecConfig, run_id: str, state: dict) -> tuple[Any, dict]:
    from decayrec.warehouse import configured_warehouse
    from decayrec.warehouse.base import RunOutcome

    if "train" not in state:
        raise BenchError("export needs the train stage of the same run")
    trained = state["train"]
    warehouse = configured_warehouse(config)
    warehouse.ensure_schema()
    warehouse.start_run(run_id, state["as_of"], trained.model, config.model_dump(mode="json"))
    published = warehouse.publish(
        state["as_of"], pq.read_table(trained.lists_path), run_id, trained.model
    )
    metrics = {"global_time": state["evaluate"]} if "evaluate" in state else {}
    warehouse.finish_run(
        run_id,
        RunOutcome(
            status="succeeded",
            metrics=metrics,
            n_users=trained.n_users,
            n_rows=trained.n_rows,
            n_fallback_rows=trained.n_fallback_rows,
            published=published,
        ),
    )
    return published, {"published": published, "n_rows": trained.n_rows}


CHANGED_SHARE = 0.01  # the incremental stage: share of the users with new events
NEW_EVENTS_PER_USER = 3


def _new_events(snapshot: Any, path: Path, seed: int = 0) -> int:
    """CHANGED_SHARE of the snapshot's users, NEW_EVENTS_PER_USER views each of random items
    on AS_OF's day (seen by the next night only), written to `path`; the number of users."""
    from decayrec_tools.synthetic import EVENTS_SCHEMA

    rng = np.random.default_rng(seed)
    users = pq.read_table(Path(snapshot.path) / "users.parquet")["user_id"].to_numpy(
        zero_copy_only=False
    )
    items = pq.read_table(Path(snapshot.path) / "items.parquet")["item_id"].to_numpy(
        zero_copy_only=False
    )
    chosen = rng.choice(users, max(1, round(CHANGED_SHARE * len(users))), replace=False)
    n = len(chosen) * NEW_EVENTS_PER_USER
    moment = datetime.combine(AS_OF, datetime.min.time(), UTC)
    table = pa.table(
        {
            "user_id": np.repeat(chosen, NEW_EVENTS_PER_USER).tolist(),
            "item_id": rng.choice(items, n).tolist(),
            "event_type": ["view"] * n,
            "event_ts": [moment + timedelta(hours=12, seconds=i) for i in range(n)],
            "value": [None] * n,
        },
        schema=EVENTS_SCHEMA,
    )
    pq.write_table(table, path)
    return len(chosen)


def _incremental(config: DecayrecConfig, run_id: str, state: dict) -> tuple[Any, dict]:
    """The next night, incremental (decayrec.scoring.incremental): the train stage's model
    kept (registered), CHANGED_SHARE of the users with new events; the delta's ingest and
    validation, the features of AS_OF + 1 day and score-incremental (changed users
    re-scored, every other list carried forward), each timed."""
    from decayrec.evaluation.champion import Registry
    from decayrec.lake.features import build_snapshot
    from decayrec.lake.ingest import load_batches, stage_sources
    from decayrec.scoring.incremental import (
        INCREMENTAL,
        REFIT,
        Night,
        incremental_lists,
        published_state,
    )

    if "train" not in state or "features" not in state:
        raise BenchError("incremental needs the features and train stages of the same run")
    trained, snapshot = state["train"], state["features"]
    record = Registry(config.data_dir).register(
        run_id, trained.model_path, config, snapshot.snapshot_id, None
    )
    night = Night(REFIT, "the bench's train stage")
    previous = published_state(config, night, trained, record.model_id, run_id, AS_OF, snapshot)
    delta = Path(config.data_dir) / "new_events.parquet"
    changed = _new_events(snapshot, delta)
    data = config.model_dump(mode="json")
    data["sources"].append({"path": str(delta), "name": "bench-new"})
    tonight = DecayrecConfig.model_validate(data)
    next_run = f"{run_id}-next"
    seconds: dict[str, float] = {}
    began = time.perf_counter()
    load_batches(tonight, stage_sources(tonight, next_run), next_run)
    seconds["ingest_validate_seconds"] = time.perf_counter() - began
    began = time.perf_counter()
    snapshot = build_snapshot(tonight, tonight.as_of_time(AS_OF + timedelta(days=1)))
    seconds["features_seconds"] = time.perf_counter() - began
    began = time.perf_counter()
    lists = incremental_lists(
        tonight, record, snapshot, Night(INCREMENTAL, "bench", previous), next_run
    )
    seconds["score_seconds"] = time.perf_counter() - began
    return lists, {
        "users_with_new_events": changed,
        "night": lists.night_summary(),
        **{k: round(v, 3) for k, v in seconds.items()},
    }


def _gx_audit(config: DecayrecConfig, run_id: str, state: dict) -> tuple[Any, dict]:
    """Great Expectations on the batches whose GX run validation deferred (large and clean):
    what the nightly's gx-audit stage does after the publish."""
    from decayrec.lake.validate import audit_deferred

    summary = audit_deferred(config).summary()
    return summary, summary


STAGE_FUNCTIONS: dict[str, Callable[[DecayrecConfig, str, dict], tuple[Any, dict]]] = {
    "ingest": _ingest,
    "validate": _validate,
    "features": _features,
    "train": _train,
    "evaluate": _evaluate,
    "export": _export,
    "gx-audit": _gx_audit,
    "incremental": _incremental,
}


def _vm_kib(field_name: str) -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _stage_child(stage: str, config_json: str, run_id: str, state: dict, conn: Any) -> None:
    """In the child: run one stage, send back (status, result, detail, seconds, peak)."""
    try:
        config = DecayrecConfig.model_validate_json(config_json)
        start_rss = _vm_kib("VmRSS") / 1024
        began = time.perf_counter()
        result, detail = STAGE_FUNCTIONS[stage](config, run_id, state)
        seconds = time.perf_counter() - began
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        conn.send(("ok", result, detail, seconds, peak, start_rss))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises
        conn.send(("error", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
    finally:
        conn.close()


_CONTEXT: Any = None


def _context() -> Any:
    """A forkserver that has imported the project once: each stage forks from it."""
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = multiprocessing.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(PRELOAD)
    return _CONTEXT


def run_stage_in_child(
    stage: str, config: DecayrecConfig, run_id: str, state: dict
) -> tuple[Any, dict, float, float, float]:
    """Run `stage` in a child process: (result, detail, seconds, peak RSS MiB, start RSS MiB)."""
    ctx = _context()
    parent_conn, child_conn = ctx.Pipe(duplex=False)
    process = ctx.Process(
        target=_stage_child,
        args=(stage, config.model_dump_json(), run_id, state, child_conn),
        name=f"bench-{stage}",
    )
    process.start()
    child_conn.close()
    try:
        message = parent_conn.recv()
    except EOFError:
        process.join()
        raise BenchError(
            f"stage {stage} died without a result (exit code {process.exitcode}; "
            "a negative code is the signal, e.g. -9: killed, out of memory)"
        ) from None
    finally:
        parent_conn.close()
    process.join()
    if message[0] != "ok":
        raise BenchError(f"stage {stage} failed: {message[1]}\n{message[2]}")
    _, result, detail, seconds, peak, start_rss = message
    return result, detail, seconds, peak, start_rss


# -- the bench -----------------------------------------------------------------------


@dataclass
class StageFigures:
    stage: str
    seconds: float
    events_per_s: float
    peak_rss_mib: float
    start_rss_mib: float
    detail: dict[str, Any] = field(default_factory=dict)


def _machine() -> dict[str, Any]:
    import duckdb
    import torch

    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "duckdb": duckdb.__version__,
        "platform": platform.platform(),
        "load_average_at_start": list(os.getloadavg()),
    }


def run_bench(
    n_events: int,
    model: str = "ease",
    out_dir: str | Path | None = None,
    seed: int = 0,
    reuse: bool = True,
    stages: list[str] | tuple[str, ...] = DEFAULT_STAGES,
    data_root: str | Path = DEFAULT_DATA_ROOT,
    n_items: int | None = None,
    flow: bool = False,
    progress: Callable[[str], None] | None = print,
    half_life_days: float | None = None,
) -> dict[str, Any]:
    """Generate or reuse the events, run `stages` in pipeline order, write bench.json and
    bench.md into `out_dir`; return the results."""
    every = STAGES + EXTRA_STAGES
    unknown = [s for s in stages if s not in every]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; the stages are {list(every)}")
    wanted = [s for s in every if s in stages]
    out = Path(out_dir or Path(data_root) / "runs" / f"n{n_events}-{model}").resolve()
    say = progress or (lambda _m: None)
    data = bench_events(n_events, seed, data_root, n_items, reuse)
    say(
        f"events: {data['path']} ({data['n_events']:,} events, {data['n_users']:,} users, "
        f"{data['n_items']:,} items; {'reused' if data['reused'] else 'generated'} "
        f"in {data['seconds']:.1f} s)"
    )
    config = bench_config(out, data["path"], model, half_life_days)
    if "ingest" in wanted and Path(config.data_dir).exists():
        shutil.rmtree(config.data_dir)  # a fresh lake: every event is ingested this run
    out.mkdir(parents=True, exist_ok=True)
    run_id = f"bench-{uuid.uuid4().hex[:12]}"
    state: dict[str, Any] = {"as_of": AS_OF}
    figures: list[StageFigures] = []
    machine = _machine()
    began = time.perf_counter()
    for stage in wanted:
        result, detail, seconds, peak, start_rss = run_stage_in_child(stage, config, run_id, state)
        state[stage] = result
        f = StageFigures(
            stage=stage,
            seconds=round(seconds, 3),
            events_per_s=round(data["n_events"] / max(seconds, 1e-9), 1),
            peak_rss_mib=round(peak, 1),
            start_rss_mib=round(start_rss, 1),
            detail=detail,
        )
        figures.append(f)
        # the figures so far, so that a run stopped later still leaves its measurements
        partial = _results(data, seed, model, config, out, machine, figures, state, began)
        (out / "bench.json").write_text(json.dumps(partial, indent=2, default=str))
        say(
            f"  {stage:<9} {f.seconds:9.2f} s  {f.events_per_s:>14,.0f} events/s  "
            f"peak RSS {f.peak_rss_mib:>9,.0f} MiB"
        )
    results = _results(data, seed, model, config, out, machine, figures, state, began)
    results["complete"] = True
    if flow:
        say("  flow: running the Prefect nightly flow on the same events ...")
        results["flow"] = run_flow(config, out)
        say(
            f"  flow      {results['flow']['wall_seconds']:9.2f} s  "
            f"peak RSS {results['flow']['peak_rss_mib']:>9,.0f} MiB "
            f"(exit {results['flow']['returncode']})"
        )
    (out / "bench.json").write_text(json.dumps(results, indent=2, default=str))
    (out / "bench.md").write_text(markdown_report(results))
    return results


def _results(
    data: dict,
    seed: int,
    model: str,
    config: DecayrecConfig,
    out: Path,
    machine: dict,
    figures: list[StageFigures],
    state: dict,
    began: float,
) -> dict[str, Any]:
    wall = time.perf_counter() - began
    extra = [f for f in figures if f.stage in EXTRA_STAGES]
    figures = [f for f in figures if f.stage not in EXTRA_STAGES]
    evaluation = None
    if "evaluate" in state:
        ev = state["evaluate"]
        evaluation = {
            "protocol": "global_time",
            **{k: v for k, v in ev.items() if k not in ("model", "popularity")},
            "model": ev.get("model"),
            "popularity": ev.get("popularity"),
        }
    results: dict[str, Any] = {
        "n_events": data["n_events"],
        "n_users": data["n_users"],
        "n_items": data["n_items"],
        "seed": seed,
        "model": model,
        "half_life_days": config.decay.half_life_days,
        "as_of": AS_OF.isoformat(),
        "events": data,
        "out_dir": str(out),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "stages": [asdict(f) for f in figures],
        "total": {
            "stage_seconds": round(sum(f.seconds for f in figures), 3),
            "wall_seconds": round(wall, 3),
            "peak_rss_mib": max((f.peak_rss_mib for f in figures), default=0.0),
            "events_per_s": round(data["n_events"] / max(sum(f.seconds for f in figures), 1e-9), 1),
        },
        "evaluation": evaluation,
        "extra_stages": [asdict(f) for f in extra],
        "flow": None,
        "complete": False,
    }
    return results


def run_flow(config: DecayrecConfig, out: Path) -> dict[str, Any]:
    """The real nightly flow (`decayrec run` with the bench config, its own data dir and
    warehouse) on the same events, in a subprocess: wall seconds and peak RSS."""
    import yaml

    flow_config = config.model_copy(
        update={
            "data_dir": out / "flow-data",
            "warehouse_url": f"duckdb:///{out / 'flow-data' / 'warehouse.duckdb'}",
        }
    )
    if Path(flow_config.data_dir).exists():
        shutil.rmtree(flow_config.data_dir)
    path = out / "flow-config.yaml"
    path.write_text(yaml.safe_dump(flow_config.model_dump(mode="json"), sort_keys=False))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("PREFECT_API_URL", None)  # a temporary local server, as `decayrec run` starts
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    log = out / "flow.log"
    began = time.perf_counter()
    with open(log, "w") as fh:
        process = subprocess.Popen(
            [sys.executable, "-m", "decayrec.cli", "run", "--config", str(path)]
            + ["--as-of", AS_OF.isoformat()],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
        )
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - began
    stage_seconds = None
    for line in log.read_text().splitlines():
        if line.startswith("stage seconds: "):
            stage_seconds = json.loads(line[len("stage seconds: ") :])
    return {
        "wall_seconds": round(wall, 3),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "returncode": process.returncode,
        "stage_seconds": stage_seconds,
        "log": str(log),
    }


# -- reports ---------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_report(results: dict[str, Any]) -> str:
    """The bench results as Markdown: the stage table, totals, evaluation, machine."""
    m = results["machine"]
    lines = [
        f"# decayrec bench: {results['n_events']:,} events, model {results['model']}",
        "",
        f"{results['n_users']:,} users, {results['n_items']:,} items in the catalogue, "
        f"seed {results['seed']}, as of {results['as_of']}, decay half-life "
        f"{results.get('half_life_days')} d; "
        f"{m['cpus']} CPUs, {m['memory_gib']} GiB, torch {m['torch']} "
        f"({m['torch_threads']} threads), DuckDB {m['duckdb']}; load average at start "
        f"{', '.join(f'{x:.1f}' for x in m['load_average_at_start'])} (a shared machine: "
        "times are upper bounds).",
        "",
        "| stage | wall s | events/s | peak RSS MiB | RSS at start MiB | detail |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for s in results["stages"]:
        detail = ", ".join(f"{k} {_fmt(v, 3)}" for k, v in s["detail"].items())
        lines.append(
            f"| {s['stage']} | {s['seconds']:.2f} | {s['events_per_s']:,.0f} | "
            f"{s['peak_rss_mib']:,.0f} | {s['start_rss_mib']:,.0f} | {detail} |"
        )
    t = results["total"]
    lines.append(
        f"| **all stages** | **{t['stage_seconds']:.2f}** | {t['events_per_s']:,.0f} | "
        f"**{t['peak_rss_mib']:,.0f}** | | wall with process start-up {t['wall_seconds']:.2f} s |"
    )
    for s in results.get("extra_stages") or []:  # beside the full night, not in it
        detail = ", ".join(f"{k} {_fmt(v, 3)}" for k, v in s["detail"].items())
        when = "after the publish" if s["stage"] == "gx-audit" else "next night"
        lines.append(
            f"| {when}: {s['stage']} | {s['seconds']:.2f} | | {s['peak_rss_mib']:,.0f} | "
            f"{s['start_rss_mib']:,.0f} | {detail} |"
        )
    flow = results.get("flow")
    if flow:
        lines += [
            "",
            f"Prefect nightly flow (`decayrec run`, temporary local server) on the same events: "
            f"**{flow['wall_seconds']:.1f} s**, peak RSS {flow['peak_rss_mib']:,.0f} MiB, "
            f"exit code {flow['returncode']}; its stage seconds: "
            f"`{json.dumps(flow['stage_seconds'])}`.",
        ]
    ev = results.get("evaluation")
    if ev:
        lines += [
            "",
            f"Global-time protocol: cutoff {ev.get('cutoff')}, {ev.get('n_eval_users')} users "
            f"evaluated, {ev.get('n_truth_items')} truth items "
            f"({ev.get('n_truth_dropped_not_in_training')} dropped: not in training).",
            "",
            "| | NDCG@10 | Recall@10 | NDCG@20 | Recall@20 | coverage@10 |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name in ("model", "popularity"):
            r = ev.get(name) or {}
            lines.append(
                f"| {results['model'] if name == 'model' else 'popularity (decayed)'} | "
                f"{_fmt(r.get('ndcg@10'))} | {_fmt(r.get('recall@10'))} | "
                f"{_fmt(r.get('ndcg@20'))} | {_fmt(r.get('recall@20'))} | "
                f"{_fmt(r.get('coverage@10'))} |"
            )
    return "\n".join(lines) + "\n"


def print_report(results: dict[str, Any]) -> None:
    print()
    print(markdown_report(results))
    print(f"results: {results['out_dir']}/bench.json, {results['out_dir']}/bench.md")


# -- the global-time split for peers -------------------------------------------------


@dataclass
class SplitFiles:
    """A global-time split written for peers: training events and truth as Parquet."""

    directory: str
    train_path: str
    truth_path: str
    cutoff: str
    as_of: str
    split: str
    n_train_events: int
    n_truth: int


def _write_query(con: Any, query: str, params: dict[str, Any], path: Path) -> int:
    """Stream a query's rows into a Parquet file (record batches; bounded memory)."""
    reader = con.sql(query, params=params).to_arrow_reader(500_000)
    n = 0
    tmp = path.with_name(f".{path.name}.tmp")
    with pq.ParquetWriter(tmp, reader.schema) as writer:
        for batch in reader:
            writer.write_batch(batch)
            n += batch.num_rows
    os.replace(tmp, path)
    return n


def export_split(
    config: DecayrecConfig,
    as_of: datetime,
    out_dir: str | Path,
    split: str = "test",
) -> SplitFiles:
    """Write decayrec's global-time split of the lake's events before `as_of` to
    `out_dir`: ``train.parquet`` (the events the backtest trains on: before the cutoff,
    event types with a positive weight) and ``truth.parquet`` (user_id, item_id: new
    items of users with history, at or after the cutoff), with the project's SQL
    (sql/evaluation/global_time_cutoff.sql, global_time_truth.sql), as
    decayrec.evaluation.backtest does. split='validation' first removes everything from the test
    cutoff on and splits what is left the same way (what tuning may look at)."""
    from decayrec.evaluation.backtest import split_on
    from decayrec.lake.features import prepare_decay_tables
    from decayrec.lake.session import LakeSession
    from decayrec.sqlfiles import sql

    if split not in ("test", "validation"):
        raise ValueError(f"unknown split {split!r}; expected 'test' or 'validation'")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with LakeSession.connect(config.lake_path, read_only=True) as lake, lake.build() as build:
        prepare_decay_tables(build, config.decay)
        split_on(build, "from events")
        cutoff = _cutoff(build, config, as_of)
        if split == "validation":
            if cutoff is None:
                raise BenchError("no events before the as-of time: nothing to split")
            build.table(
                "validation_events",
                "select * from events where event_ts < $test_start",
                {"test_start": cutoff},
            )
            split_on(build, "from validation_events")
            as_of, cutoff = cutoff, _cutoff(build, config, cutoff)
        if cutoff is None:
            raise BenchError("no events before the as-of time: nothing to split")
        train_path, truth_path = out / "train.parquet", out / "truth.parquet"
        n_train = _write_query(
            build, sql("bench/split_train_events"), {"cutoff": cutoff}, train_path
        )
        n_truth = _write_query(
            build,
            "select user_id, item_id from (" + sql("evaluation/global_time_truth") + ") "
            "order by user_id, item_id",
            {"as_of": as_of, "cutoff": cutoff},
            truth_path,
        )
    files = SplitFiles(
        directory=str(out),
        train_path=str(train_path),
        truth_path=str(truth_path),
        cutoff=cutoff.isoformat(),
        as_of=as_of.isoformat(),
        split=split,
        n_train_events=n_train,
        n_truth=n_truth,
    )
    (out / "split.json").write_text(json.dumps(asdict(files), indent=2))
    return files


def _cutoff(con: Any, config: DecayrecConfig, as_of: datetime) -> datetime | None:
    from decayrec.sqlfiles import sql

    ev = config.evaluation
    if ev.cutoff is not None:
        return ev.cutoff
    return con.execute(
        sql("evaluation/global_time_cutoff"),
        {"as_of": as_of, "test_fraction": ev.test_fraction},
    ).fetchall()[0][0]


def evaluate_lists(
    split: SplitFiles, lists_path: str | Path, ks: list[int] | None = None
) -> dict[str, Any]:
    """NDCG, Recall, MAP, HitRate and coverage (decayrec.evaluation.metrics) of top-K lists
    (Parquet: user_id, rank, item_id) on a split, as decayrec's backtest measures its own
    lists: users with training history and at least one truth item that occurs in
    training are evaluated; truth items not in training are dropped (counted); items the
    user had in training are removed from the list (counted; a peer should not list
    them); the catalogue is the items of the training events."""
    import duckdb

    from decayrec.evaluation.metrics import ranking_metrics
    from decayrec.sqlfiles import sql

    ks = ks or [10, 20]
    k = max(ks)
    con = duckdb.connect()
    try:
        files = {"train": split.train_path, "truth": split.truth_path}
        truth = con.execute(sql("bench/eval_truth"), files).fetchall()
        n_items = con.execute(
            "select count(distinct item_id) from read_parquet($train)", {"train": split.train_path}
        ).fetchall()[0][0]
        rows = con.execute(
            sql("bench/eval_lists"), {**files, "lists": str(lists_path), "k": k}
        ).fetchall()
    finally:
        con.close()
    truth_sets: dict[str, set[str]] = {}
    dropped = 0
    for user_id, item_id, in_training in truth:
        if in_training:
            truth_sets.setdefault(user_id, set()).add(item_id)
        else:
            dropped += 1
    users = sorted(truth_sets)
    position = {u: j for j, u in enumerate(users)}
    item_code: dict[str, int] = {}
    ranked = np.full((len(users), k), -1, dtype=np.int64)
    seen_removed: dict[str, int] = {}
    for user_id, pos, item_id, n_removed in rows:
        j = position.get(user_id)
        if j is None:
            continue
        ranked[j, pos - 1] = item_code.setdefault(item_id, len(item_code))
        seen_removed[user_id] = n_removed
    truth_codes = [{item_code.setdefault(i, len(item_code)) for i in truth_sets[u]} for u in users]
    metrics = ranking_metrics(ranked, truth_codes, ks, int(n_items))
    return {
        "n_eval_users": len(users),
        "n_truth_dropped_not_in_training": dropped,
        "n_users_listed": int((ranked[:, 0] >= 0).sum()),
        "n_seen_items_removed": int(sum(seen_removed.values())),
        "metrics": metrics,
    }


# -- the command ---------------------------------------------------------------------


def bench_command(
    n_events: int,
    model: str = "ease",
    out: str | None = None,
    seed: int = 0,
    reuse: bool = False,
    stages: list[str] | None = None,
    data_root: str | None = None,
    n_items: int | None = None,
    flow: bool = False,
    half_life_days: float | None = None,
) -> int:
    """`decayrec bench`: run, print the table, write bench.json and bench.md."""
    results = run_bench(
        n_events,
        model=model,
        out_dir=out,
        seed=seed,
        reuse=reuse,
        stages=stages or list(DEFAULT_STAGES),
        data_root=data_root or DEFAULT_DATA_ROOT,
        n_items=n_items,
        flow=flow,
        half_life_days=half_life_days,
    )
    print_report(results)
    return 0
