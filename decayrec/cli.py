"""The `decayrec` command line: the nightly flow once, a backfill of a date range, a
re-export, tuning, the deployments, synthetic events, benchmarks and warehouse queries.

Every input and config error is found before a Prefect server starts, and is one
paragraph on stderr with exit status 1 (DECAYREC_TRACEBACK=1 prints the traceback too)."""

from __future__ import annotations

import argparse
import copy
import glob
import json
import logging
import os
import sys
import traceback
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from decayrec.config import (
    MODEL_SECTIONS,
    ConfigError,
    DecayrecConfig,
    SourceConfig,
    load_config,
    mask_url,
    model_section,
    movielens_sources,
)

COMMANDS = {  # name: (one line for `decayrec --help`, more for `decayrec NAME --help`)
    "run": ("run the nightly flow once", "ingest, validate, train, evaluate, gate, publish"),
    "demo": ("run the nightly flow on synthetic events with interest drift", ""),
    "backfill": ("run the nightly flow for each date from START to END", "oldest first"),
    "reexport": ("publish a date's lists again from its stored model", "without retraining"),
    "tune": (
        "tune decay and model settings on a validation split",
        "never the test window; the nightly flow then uses the winner",
    ),
    "serve": (
        "serve the nightly, backfill, reexport and tune deployments",
        "against the Prefect API in PREFECT_API_URL until interrupted (the config is stored "
        "with them)",
    ),
    "generate": (
        "write synthetic events with known interest drift to Parquet",
        "and their ground truth",
    ),
    "bench": (
        "time the nightly stages on synthetic events",
        "ingest, validate, features, train, evaluate, export: wall s, events/s and peak RSS "
        "per stage, NDCG@10 on the global-time protocol; writes bench.json and bench.md",
    ),
    "sql": (
        "run a query of sql/queries on the warehouse",
        "prints its result as a table, CSV or JSON; no NAME: list the queries",
    ),
}
FLOW_COMMANDS = ("run", "demo", "backfill", "reexport", "tune")  # they need a Prefect API
SOURCE_COMMANDS = ("run", "backfill", "tune", "serve")  # they take --events / --movielens


class UsageError(ValueError):
    """A command line, config or input that cannot run: the message says which and why."""


def _config_options(p: argparse.ArgumentParser, command: str) -> None:
    p.add_argument("--config", help="YAML config file")
    p.add_argument("--warehouse", help="warehouse URL, e.g. duckdb:///path/file.duckdb")
    if command in ("run", "demo", "tune"):
        p.add_argument("--as-of", metavar="YYYY-MM-DD", help="as-of date (default: today)")
    p.add_argument("--k", type=int, help="items per user")
    p.add_argument("--data-dir", help="where the lake, snapshots and results go")
    p.add_argument(
        "--model",
        metavar="NAME",
        help=f"the model to train: one of {', '.join(MODEL_SECTIONS)} (its settings: the "
        "config's, or the defaults; the tuning winner is then not applied)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        dest="settings",
        metavar="KEY.PATH=VALUE",
        help="override one config setting, e.g. --set model.l2=200 --set "
        "decay.half_life_days=30 (repeatable; values read as YAML; applied after --model)",
    )
    if command in SOURCE_COMMANDS:
        p.add_argument(
            "--events",
            nargs="+",
            default=[],
            metavar="PATH_OR_GLOB",
            help="event files (CSV, Parquet, JSON Lines) with canonical columns",
        )
        p.add_argument("--movielens", metavar="DIR", help="a MovieLens directory")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="decayrec",
        description="decayrec: a nightly batch recommender with dynamic interest decay.",
        epilog="`decayrec COMMAND --help` shows a command's options. Errors are one paragraph "
        "on stderr (exit status 1); DECAYREC_TRACEBACK=1 adds the traceback.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")

    def command(name: str) -> argparse.ArgumentParser:
        line, more = COMMANDS[name]
        return sub.add_parser(name, help=line, description=f"{line}: {more}" if more else line)

    for name in ("run", "demo"):
        _config_options(command(name), name)
    b = command("backfill")
    b.add_argument("start", metavar="START", help="first as-of date YYYY-MM-DD")
    b.add_argument("end", metavar="END", help="last as-of date YYYY-MM-DD (inclusive)")
    b.add_argument(
        "--force", action="store_true", help="rerun days already published, replacing their lists"
    )
    _config_options(b, "backfill")
    r = command("reexport")
    r.add_argument("as_of", metavar="AS_OF", help="the as-of date YYYY-MM-DD to republish")
    r.add_argument(
        "--source-run-id",
        metavar="RUN_ID",
        help="the run whose stored model is used (default: the newest succeeded run of AS_OF)",
    )
    _config_options(r, "reexport")
    t = command("tune")
    _config_options(t, "tune")
    t.add_argument(
        "--budget-seconds",
        type=float,
        default=600.0,
        help="stop starting trials after this many seconds",
    )
    t.add_argument(
        "--protocol",
        choices=["user_time", "global_time"],
        help="validation protocol (default: the first of evaluation.protocols)",
    )
    t.add_argument("--max-trials", type=int, metavar="N", help="stop after N trials")
    _config_options(command("serve"), "serve")
    gen = command("generate")
    gen.add_argument("--events", type=int, required=True, metavar="N", help="number of events")
    gen.add_argument("--out", required=True, metavar="DIR", help="output directory")
    gen.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    gen.add_argument("--chunk-users", type=int, help="users generated and written at a time")
    b = command("bench")
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
        choices=[
            *("ingest", "validate", "features", "train", "evaluate", "export"),
            *("gx-audit", "incremental"),
        ],
        help="run only these stages (in pipeline order; default: all but incremental, the "
        "next night with 1 %% of the users changed, run only when named; gx-audit, Great "
        "Expectations on a large clean batch after the publish, is timed beside the night)",
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
    q = command("sql")
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
    logging.getLogger("decayrec").setLevel(logging.INFO)  # root's WARNING would drop them
    only_file = logging.getLogger(_FILE_ONLY)
    only_file.propagate = False
    only_file.addHandler(file_handler)
    return path


def validation_problems(exc: ValidationError) -> str:
    """A pydantic error as `field.path: problem; ...` (the model's tag left out of paths)."""
    problems = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        if len(loc) > 1 and loc[0] == "model" and loc[1] in MODEL_SECTIONS:
            del loc[1]  # model.ease.l2 -> model.l2
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{'.'.join(loc) or 'the config'}: {message}")
    return "; ".join(problems)


def _date(text: str, what: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise UsageError(f"{what} {text!r} is not a date YYYY-MM-DD ({exc})") from None


def set_setting(data: dict[str, Any], assignment: str) -> None:
    """Apply one `--set key.path=value` to the config's data (value read as YAML)."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"--set {assignment!r}: expected KEY.PATH=VALUE, e.g. --set model.l2=200")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    parts = key.strip().split(".")
    node: Any = data
    for i, part in enumerate(parts):
        path = ".".join(parts[: i + 1])
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise UsageError(f"--set {key}: {path} is not an index of a list of {len(node)}")
            part = int(part)  # type: ignore[assignment]
        elif not isinstance(node, dict):
            raise UsageError(f"--set {key}: {'.'.join(parts[:i])} is a value, not a section")
        elif not last and node.get(part) is None:
            node[part] = {}
        if last:
            node[part] = value
        else:
            node = node[part]


def build_config(args: argparse.Namespace) -> DecayrecConfig:
    """The config of a command line: the config file, the top-level options, the sources,
    --model, then each --set; validated once more after the overrides."""
    try:
        config = load_config(
            args.config, warehouse_url=args.warehouse, k=args.k, data_dir=args.data_dir
        )
    except ValidationError as exc:
        where = f"config file {args.config}" if args.config else "--warehouse, --k, --data-dir"
        raise UsageError(f"{where}: {validation_problems(exc)}") from None
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"config file {args.config}: {exc}") from None
    data = config.model_dump()
    extra: list[SourceConfig] = [SourceConfig(path=p) for p in getattr(args, "events", [])]
    if getattr(args, "movielens", None):
        if not Path(args.movielens).is_dir():
            raise UsageError(
                f"--movielens {args.movielens}: no such directory (it should hold MovieLens' "
                "ratings.csv and tags.csv)"
            )
        extra.extend(movielens_sources(args.movielens))
    data["sources"] += [source.model_dump() for source in extra]
    if args.model:
        try:
            data["model"] = model_section({**data["model"], "name": args.model}).model_dump()
        except (ConfigError, ValidationError) as exc:
            problem = validation_problems(exc) if isinstance(exc, ValidationError) else exc
            raise UsageError(f"--model {args.model}: {problem}") from None
        data["use_tuned"] = False  # the model asked for, not the tuning winner's
    for assignment in args.settings:
        set_setting(data, assignment)
    try:
        return DecayrecConfig.model_validate(data)
    except ValidationError as exc:
        given = [f"--model {args.model}"] if args.model else []
        given += [f"--set {setting}" for setting in args.settings]
        where = " ".join(given) or "the sources"
        raise UsageError(f"{where}: {validation_problems(exc)}") from None


def check_inputs(args: argparse.Namespace, config: DecayrecConfig) -> None:
    """What a flow would fail on later, found now: sources that do not exist (and
    --events globs that match nothing; a config's glob may match nothing on a night
    without new files), no source at all, a warehouse URL of an unknown scheme."""
    from decayrec.lake.ingest import source_files
    from decayrec.warehouse import configured_warehouse

    for path in getattr(args, "events", []):
        if any(ch in path for ch in "*?[") and not any(
            Path(f).is_file() for f in glob.glob(path, recursive=True)
        ):
            raise UsageError(f"--events {path}: no file matches this glob")
    for source in config.sources:
        source_files(source)  # IngestError: the file does not exist
    if args.command in ("run", "backfill", "tune") and not config.sources:
        raise UsageError("no event source: give --events, --movielens or sources in --config")
    if config.warehouse_url or not config.warehouse.secret_block:  # a block needs Prefect
        configured_warehouse(config)  # WarehouseError: unsupported scheme


@dataclass
class Prepared:
    """A command line checked before any Prefect server starts."""

    config: DecayrecConfig
    as_of: date | None = None
    start: date | None = None
    end: date | None = None


def prepare(args: argparse.Namespace) -> Prepared | None:
    """The config and dates of a command that takes a config (None for the others),
    every input checked; raises UsageError (or the input's own error) naming the problem."""
    if args.command not in (*FLOW_COMMANDS, "serve"):
        return None
    prepared = Prepared(build_config(args))
    if getattr(args, "as_of", None):
        prepared.as_of = _date(args.as_of, "--as-of" if args.command != "reexport" else "AS_OF")
    if args.command == "backfill":
        prepared.start, prepared.end = _date(args.start, "START"), _date(args.end, "END")
        if prepared.end < prepared.start:
            raise UsageError(f"backfill: END {prepared.end} is before START {prepared.start}")
    check_inputs(args, prepared.config)
    return prepared


def _failed(args: argparse.Namespace, exc: BaseException, log_path: Path | None) -> int:
    """One paragraph for the operator (the traceback with DECAYREC_TRACEBACK=1)."""
    message = _mask_passwords(" ".join(str(exc).split()), args)
    kind = "" if isinstance(exc, UsageError) else f"{type(exc).__name__}: "
    where = f" (the full log, tracebacks included: {log_path})" if log_path else ""
    if log_path and _LOG_FILE is not None and _LOG_FILE.failed:
        where = f" (the log {log_path} could not be written in full)"
    print(f"decayrec {args.command} failed: {kind}{message}{where}", file=sys.stderr)
    if log_path is not None:
        logging.getLogger(_FILE_ONLY).error(
            "decayrec %s failed: %s", args.command, message, exc_info=exc
        )
    if os.environ.get("DECAYREC_TRACEBACK"):
        traceback.print_exception(exc)
    # Drop the failed frames (and the closed DuckDB handles they still reference)
    # before interpreter exit.
    traceback.clear_frames(exc.__traceback__)
    return 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # No telemetry: this machine (and many production ones) cannot reach the internet.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    # decayrec's own log lines (SASRec's epochs, scoring progress, the incremental night)
    # go to the Prefect API inside a flow run (the run's logs in the UI), and are dropped
    # there, not warned about, outside one (log_to_file sends them to the console and file)
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "decayrec")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
    try:
        prepared = prepare(args)  # before any Prefect server: bad input fails in a second
    except Exception as exc:
        return _failed(args, exc, None)
    from decayrec.process import exit_on_sigterm, prefect_api

    # Commands that run flows get a Prefect API: PREFECT_API_URL, else a temporary server
    # of this process that is stopped on exit, on SIGTERM and Ctrl-C, and dies with it.
    runs_flows = args.command in FLOW_COMMANDS or (args.command == "bench" and args.flow)
    with exit_on_sigterm(), prefect_api(enabled=runs_flows):
        return _command(args, prepared)


def _command(args: argparse.Namespace, prepared: Prepared | None) -> int:
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
        assert prepared is not None
        config, as_of = prepared.config, prepared.as_of
        if args.command == "serve":
            from deployments.serve import serve_all

            serve_all(config)
            return 0
        log_path = log_to_file(config.data_dir, args.command)
        if args.command == "demo":
            from decayrec_tools.synthetic import write_demo_events

            path = write_demo_events(Path(config.data_dir) / "demo" / "events.parquet")
            config = config.model_copy(update={"sources": [SourceConfig(path=str(path))]})
            as_of = as_of or date(2025, 1, 1)
        if args.command == "tune":
            from flows.tune import tune_flow

            result = tune_flow(
                as_of=as_of,
                config=config,
                budget_seconds=args.budget_seconds,
                protocol=args.protocol,
                max_trials=args.max_trials,
            )
            print(json.dumps(result, indent=2, default=str))
            return 0
        if args.command == "backfill":
            from flows.backfill import backfill

            result = backfill(prepared.start, prepared.end, force=args.force, config=config)
            for day in result["days"]:
                run = f" run {day['run_id']}" if day.get("run_id") else ""
                print(f"{day['as_of']}: {day['outcome']}{run}")
            return 0
        if args.command == "reexport":
            from flows.reexport import reexport

            result = reexport(as_of, config=config, source_run_id=args.source_run_id)
            print(
                f"re-exported {result['as_of']} as run {result['run_id']}: {result['n_rows']} "
                f"rows for {result['n_users']} users; published: {result['published']}; "
                f"warehouse: {mask_url(config.resolved_warehouse_url)}"
            )
            return 0
        from flows.nightly import nightly

        summary = nightly(as_of=as_of, config=config)
    except Exception as exc:  # one paragraph, not a traceback, for the operator
        return _failed(args, exc, log_path)
    _report(config, summary)
    return 0


def _report(config: DecayrecConfig, summary: dict[str, Any]) -> None:
    """What the run did (decayrec.report), and one user's published list."""
    from decayrec.report import sample_text, summary_text
    from decayrec.sqlfiles import sql
    from decayrec.warehouse import configured_warehouse

    if "summary" not in summary:  # skipped: another run held the night, or too late
        print(
            f"\nrun {summary['run_id']} for {summary['as_of']}: {summary['status']}: "
            f"{summary.get('error')}"
        )
        return
    print("\n" + summary_text(summary["summary"]))
    sample = configured_warehouse(config).query(sql("ops/report_sample")).to_pylist()
    print(sample_text(sample))


if __name__ == "__main__":
    sys.exit(main())
