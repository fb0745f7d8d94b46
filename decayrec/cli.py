"""The `decayrec` command line: run the nightly flow once, or a demo on synthetic events."""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import sys
import traceback
from datetime import date
from pathlib import Path
from typing import Any

from decayrec.config import (
    DecayrecConfig,
    SourceConfig,
    load_config,
    movielens_sources,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="decayrec", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("run", "run the nightly flow once"),
        ("demo", "generate synthetic events with interest drift and run the nightly flow"),
        ("tune", "tune decay and model parameters on a validation split (never the test window)"),
        (
            "serve",
            "serve the nightly, backfill, reexport and tune deployments against the Prefect "
            "API in PREFECT_API_URL until interrupted (the config is stored with them)",
        ),
    ):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--config", help="YAML config file")
        p.add_argument("--warehouse", help="warehouse URL, e.g. duckdb:///path/file.duckdb")
        p.add_argument("--as-of", type=date.fromisoformat, help="as-of date YYYY-MM-DD")
        p.add_argument("--k", type=int, help="items per user")
        p.add_argument("--data-dir", help="where the lake, snapshots and results go")
        if name == "tune":
            p.add_argument(
                "--budget-seconds",
                type=float,
                default=600.0,
                help="stop starting trials after this many seconds",
            )
            p.add_argument(
                "--protocol",
                choices=["user_time", "global_time"],
                help="validation protocol (default: the first of evaluation.protocols)",
            )
        if name in ("run", "tune", "serve"):
            p.add_argument(
                "--events",
                nargs="+",
                default=[],
                metavar="PATH_OR_GLOB",
                help="event files (CSV, Parquet, JSON Lines) with canonical columns",
            )
            p.add_argument("--movielens", metavar="DIR", help="a MovieLens directory")
    text = "write synthetic events with known interest drift (and their ground truth) to Parquet"
    gen = sub.add_parser("generate", help=text, description=text)
    gen.add_argument("--events", type=int, required=True, metavar="N", help="number of events")
    gen.add_argument("--out", required=True, metavar="DIR", help="output directory")
    gen.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    gen.add_argument("--chunk-users", type=int, help="users generated and written at a time")
    text = (
        "time the nightly stages (ingest, validate, features, train, evaluate, export) on "
        "synthetic events: wall s, events/s and peak RSS per stage, NDCG@10 on the "
        "global-time protocol; writes bench.json and bench.md"
    )
    b = sub.add_parser("bench", help=text, description=text)
    b.add_argument("--events", type=int, required=True, metavar="N", help="number of events")
    b.add_argument("--model", choices=["ease", "ials", "itemknn"], default="ease")
    b.add_argument(
        "--out",
        metavar="DIR",
        help="results, lake and warehouse (default: <data-root>/runs/n<N>-<model>)",
    )
    b.add_argument("--seed", type=int, default=0, help="random seed of the events (default 0)")
    b.add_argument(
        "--reuse",
        action="store_true",
        help="reuse the events generated before for the same N, seed and items",
    )
    b.add_argument(
        "--stages",
        nargs="+",
        metavar="STAGE",
        choices=["ingest", "validate", "features", "train", "evaluate", "export"],
        help="run only these stages (in pipeline order; default: all)",
    )
    b.add_argument(
        "--items",
        type=int,
        metavar="N",
        help="catalogue size (default: events / 500, between 200 and 20,000)",
    )
    b.add_argument(
        "--data-root",
        metavar="DIR",
        help="where generated events are kept (default: $DECAYREC_BENCH_DATA or "
        "/tmp/bench-data; never the repository)",
    )
    b.add_argument(
        "--flow",
        action="store_true",
        help="also time the Prefect nightly flow end to end on the same events",
    )
    b.add_argument(
        "--half-life-days", type=float, help="decay half-life (default: the config's default)"
    )
    text = (
        "run a query of sql/queries on the warehouse and print its result as a table, CSV "
        "or JSON (no NAME: list the queries)"
    )
    q = sub.add_parser("sql", help=text, description=text)
    q.add_argument("name", nargs="?", metavar="NAME", help="query name, e.g. top_items")
    q.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a query parameter (repeatable); the defaults are in the query's header",
    )
    q.add_argument(
        "--warehouse",
        help="warehouse URL (default: resolved as `decayrec run` does: the config's "
        "warehouse_url, its secret block, $DECAYREC_WAREHOUSE_URL, else "
        "<data_dir>/warehouse.duckdb); keep passwords in the environment",
    )
    q.add_argument("--config", help="YAML config file")
    q.add_argument(
        "--data-dir", help="the data directory whose warehouse.duckdb to read (default: config)"
    )
    q.add_argument(
        "--format",
        choices=["table", "csv", "json"],
        default="table",
        help="table (default, for reading), csv or json (for tools and spreadsheets)",
    )
    q.add_argument("--max-rows", type=int, help="print at most this many rows")
    return parser


def _mask_passwords(text: str, args: argparse.Namespace) -> str:
    """Belt and braces: no warehouse password in a message for the terminal."""
    from decayrec.warehouse.base import redact

    for url in (getattr(args, "warehouse", None), os.environ.get("DECAYREC_WAREHOUSE_URL")):
        if url:
            text = redact(text, url)
    return text


def sql_command(args: argparse.Namespace) -> int:
    """`decayrec sql [NAME] [--param k=v ...] [--format table|csv|json]`: one query's
    result; no NAME: the queries, each with its full summary and parameters. Reading
    never creates the warehouse (nor its folder): without one, a one-paragraph error."""
    import textwrap

    from decayrec.warehouse import configured_warehouse
    from decayrec.warehouse.queries import (
        check_readable,
        format_result,
        list_queries,
        parse_params,
        run_query,
    )

    if not args.name:
        for query in list_queries():
            params = " ".join(
                f"${p.name}" + ("" if p.default is None else f"={p.default!r}")
                for p in query.params
            )
            print(query.name)
            print(textwrap.fill(query.summary, 88, initial_indent="    ", subsequent_indent="    "))
            print(f"    parameters: {params or '-'}")
        return 0
    config = load_config(args.config, data_dir=args.data_dir)
    # a URL given here is used as it is (not stored in a config), so it may hold a password
    warehouse = configured_warehouse(config, url=args.warehouse)
    check_readable(warehouse)
    table = run_query(warehouse, args.name, parse_params(args.param))
    print(format_result(table, args.format, args.max_rows))
    return 0


class _LogFile(logging.FileHandler):
    """The run's log file. A write that fails (a full disk) stops the file quietly: the
    console still gets every record's line, and the run's own error is what counts."""

    failed = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.failed:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        self.failed = True


_FILE_ONLY = "decayrec.cli.logfile"  # a logger whose records go to the log file alone
_LOG_FILE: _LogFile | None = None  # this command's log file, once log_to_file made it


class _OneLine(logging.Formatter):
    """The console's formatter with tracebacks left out and each message cut to its first
    line (the full records go to the run's log file)."""

    def __init__(self, inner: logging.Formatter | None, max_chars: int = 2000) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()
        self.max_chars = max_chars

    def format(self, record: logging.LogRecord) -> str:
        short = copy.copy(record)
        short.exc_info, short.exc_text, short.stack_info = None, None, None
        text = self.inner.format(short).strip().splitlines() or [""]
        line = text[0]
        return line if len(line) <= self.max_chars else line[: self.max_chars - 3] + "..."


def log_to_file(data_dir: str | Path, command: str) -> Path:
    """Send every log record (Prefect's included, tracebacks in full) to
    `<data_dir>/logs/<UTC timestamp>-<command>.log`, and keep the console to one line per
    record, without tracebacks. Returns the log file's path."""
    from datetime import UTC, datetime

    from prefect.logging.configuration import ensure_logging_setup

    # Prefect's console handler first: configured later, Prefect would see the file
    # handler on the root logger as the user's and leave its console handler out.
    ensure_logging_setup()

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    path = Path(data_dir) / "logs" / f"{stamp}-{command}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    console = [h for h in root.handlers if not isinstance(h, logging.FileHandler)]
    file_handler = _LogFile(path, encoding="utf-8")
    inner = next((h.formatter for h in console if h.formatter), None)
    file_handler.setFormatter(
        inner or logging.Formatter("%(asctime)s | %(levelname)-7s | %(name)s - %(message)s")
    )
    file_handler.setLevel(logging.DEBUG)
    for handler in console:
        handler.setFormatter(_OneLine(handler.formatter))
    root.addHandler(file_handler)
    global _LOG_FILE
    _LOG_FILE = file_handler
    only_file = logging.getLogger(_FILE_ONLY)
    only_file.propagate = False
    only_file.addHandler(file_handler)
    return path


def build_config(args: argparse.Namespace) -> DecayrecConfig:
    config = load_config(
        args.config, warehouse_url=args.warehouse, k=args.k, data_dir=args.data_dir
    )
    extra: list[SourceConfig] = []
    for path in getattr(args, "events", []) or []:
        extra.append(SourceConfig(path=path))
    if getattr(args, "movielens", None):
        extra.extend(movielens_sources(args.movielens))
    if extra:
        config = config.model_copy(update={"sources": [*config.sources, *extra]})
    return config


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # No telemetry: this machine (and many production ones) cannot reach the internet.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    from decayrec.process import exit_on_sigterm, prefect_api

    # Commands that run flows get a Prefect API: PREFECT_API_URL, else a temporary server
    # of this process that is stopped on exit, on SIGTERM and Ctrl-C, and dies with it.
    runs_flows = args.command in ("run", "demo", "tune") or (args.command == "bench" and args.flow)
    with exit_on_sigterm(), prefect_api(enabled=runs_flows):
        return _command(args)


def _command(args: argparse.Namespace) -> int:
    log_path: Path | None = None
    try:
        if args.command == "sql":
            return sql_command(args)
        if args.command == "generate":
            from decayrec_tools.synthetic import generate_command

            return generate_command(args.events, args.out, args.seed, args.chunk_users)
        if args.command == "bench":
            from decayrec_tools.bench import bench_command

            return bench_command(
                args.events,
                model=args.model,
                out=args.out,
                seed=args.seed,
                reuse=args.reuse,
                stages=args.stages,
                data_root=args.data_root,
                n_items=args.items,
                flow=args.flow,
                half_life_days=args.half_life_days,
            )
        config = build_config(args)
        if args.command in ("run", "demo", "tune"):
            log_path = log_to_file(config.data_dir, args.command)
        as_of = args.as_of
        if args.command == "demo":
            from decayrec_tools.synthetic import write_demo_events

            path = write_demo_events(Path(config.data_dir) / "demo" / "events.parquet")
            config = config.model_copy(update={"sources": [SourceConfig(path=str(path))]})
            as_of = as_of or date(2025, 1, 1)
        if args.command == "serve":
            from deployments.serve import serve_all

            serve_all(config)
            return 0
        if not config.sources:
            raise ValueError("no event source: give --events, --movielens or sources in --config")
        if args.command == "tune":
            from flows.tune import tune_flow

            result = tune_flow(
                as_of=as_of,
                config=config,
                budget_seconds=args.budget_seconds,
                protocol=args.protocol,
            )
            print(json.dumps(result, indent=2, default=str))
            return 0
        from flows.nightly import nightly

        summary = nightly(as_of=as_of, config=config)
    except Exception as exc:  # one paragraph, not a traceback, for the operator
        message = _mask_passwords(" ".join(str(exc).split()), args)
        where = f" (the full log, tracebacks included: {log_path})" if log_path else ""
        if log_path and _LOG_FILE is not None and _LOG_FILE.failed:
            where = f" (the log {log_path} could not be written in full)"
        print(
            f"decayrec {args.command} failed: {type(exc).__name__}: {message}{where}",
            file=sys.stderr,
        )
        if log_path is not None:
            logging.getLogger(_FILE_ONLY).error(
                "decayrec %s failed: %s", args.command, message, exc_info=exc
            )
        if os.environ.get("DECAYREC_TRACEBACK"):
            raise
        # Drop the failed frames (and the closed DuckDB handles they still reference)
        # before interpreter exit.
        traceback.clear_frames(exc.__traceback__)
        return 1
    _report(config, summary)
    return 0


def _report(config: DecayrecConfig, summary: dict[str, Any]) -> None:
    from decayrec.sqlfiles import sql
    from decayrec.warehouse import configured_warehouse

    warehouse = configured_warehouse(config)
    print(
        f"\nrun {summary['run_id']} for {summary['as_of']}: {summary['n_rows']} rows for "
        f"{summary['n_users']} users ({summary['n_fallback_rows']} from the popularity "
        f"fallback); published: {summary['published']}"
    )
    print(f"stage seconds: {json.dumps(summary.get('stage_seconds'))}")
    for protocol, result in (summary.get("metrics") or {}).items():
        if "model" in result:
            m, p = result["model"], result["popularity"]
            print(
                f"{protocol}: {result['n_eval_users']} users  model NDCG@10 {m['ndcg@10']:.4f} "
                f"Recall@10 {m['recall@10']:.4f}  |  popularity NDCG@10 {p['ndcg@10']:.4f} "
                f"Recall@10 {p['recall@10']:.4f}"
            )
        else:
            print(f"{protocol}: {result.get('skipped')}")
    print(f"lake (events, quarantine, load_log): {config.lake_path}")
    print(
        f"warehouse (recommendations, recommendation_runs, recommendations_latest): {warehouse.url}"
    )
    # scores rounded here: PostgreSQL has no round(double precision, integer)
    sample = warehouse.query(sql("ops/report_sample")).to_pylist()
    if sample:
        print(f"list of user {sample[0]['user_id']}:")
        for row in sample:
            score = round(float(row["score"]), 4)
            print(f"  {row['rank']:>3}  {row['item_id']:<12} {score:>10}  {row['source']}")


if __name__ == "__main__":
    sys.exit(main())
