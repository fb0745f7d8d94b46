"""decayrec against Microsoft Recommenders' SAR (time decay on) and implicit's ALS, on the
same generated events, the same global-time split and the same metric code.

    .venv/bin/python bench/peers.py --events 1000000 [--model ease] [--seed 0] [--out DIR]
        [--reuse] [--peers sar als] [--tune | --params-from PEERS.json]
        [--mem-limit-gb 14] [--threads 2]

1. The peers' virtual environment, bench/.venv-peers, is created when missing (python3 -m
   venv, pip install -r bench/peers_requirements.txt; about 2 minutes and 1.4 GB) and
   re-installed when the requirements file changes. Nothing of it enters decayrec's own
   environment.
2. decayrec runs its bench (decayrec_tools.bench.run_bench: every nightly stage, in its own
   process, timed and measured) on the events of (events, seed), generated once under
   /tmp/bench-data. --reuse takes the bench.json of an earlier run in the same --out.
3. decayrec_tools.bench.export_split writes decayrec's global-time split of that lake (the
   backtest's training events and its truth, by the project's SQL) to Parquet; with
   --tune also the validation split carved out of the training part the same way.
4. Each peer runs in its own process (bench/peers_runner.py in the peers' environment),
   under an address-space limit (--mem-limit-gb, RLIMIT_AS): load the training events,
   fit, write every training user's top-K list. A peer that runs out of memory is
   reported as such. Its wall time is load + fit + top-K measured inside the process,
   its peak RSS the process's (os.wait4).
5. decayrec_tools.bench.evaluate_lists measures every list with
   decayrec.evaluation.metrics as decayrec's backtest measures its own (items seen in
   training removed, truth items not in training dropped).

Hyperparameters: decayrec runs with its defaults (no tuning). With --tune each peer picks
its hyperparameters by NDCG@10 on the validation split (never the test window), from a
small grid: SAR half-life {30, 90, 365} days (jaccard); ALS factors {64, 128} x alpha
{1, 10} x confidences {summed type weights, decayed with a 90-day half-life}, reg 0.05,
15 iterations. --params-from reuses the choice of an earlier run (e.g. the one at 10^6
for 10^7, where the grid costs more than the comparison). Without either, the defaults
below.

Results: a table on stdout, <out>/peers.json and <out>/peers.md. Times are wall seconds
on a shared 2-core machine: upper bounds.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

from decayrec_tools.bench import (  # noqa: E402
    DEFAULT_DATA_ROOT,
    DEFAULT_STAGES,
    SplitFiles,
    bench_config,
    evaluate_lists,
    export_split,
    run_bench,
)

PEERS_VENV = ROOT / "bench" / ".venv-peers"
REQUIREMENTS = ROOT / "bench" / "peers_requirements.txt"
RUNNER = ROOT / "bench" / "peers_runner.py"
END_TO_END = ("ingest", "validate", "features", "train")  # decayrec: events to top-K lists

DEFAULTS = {
    "sar": {"similarity": "jaccard", "half_life_days": 90.0},
    "als": {
        "factors": 128,
        "regularization": 0.05,
        "alpha": 10.0,
        "iterations": 15,
        "decay_half_life_days": None,
    },
}
GRIDS = {
    "sar": [{"similarity": "jaccard", "half_life_days": h} for h in (30.0, 90.0, 365.0)],
    "als": [
        {
            "factors": f,
            "regularization": 0.05,
            "alpha": a,
            "iterations": 15,
            "decay_half_life_days": d,
        }
        for f, a, d in itertools.product((64, 128), (1.0, 10.0), (None, 90.0))
    ],
}
NAMES = {"sar": "SAR (Recommenders 1.2.1, time decay)", "als": "implicit ALS 0.7.2"}
DECAYREC_HALF_LIVES = (30.0, 90.0, 365.0)  # decayrec's decay.half_life_days grid (--tune)


def ensure_peers_venv(log=print) -> Path:
    """bench/.venv-peers with the pinned peers installed; returns its python."""
    python = PEERS_VENV / "bin" / "python"
    stamp = PEERS_VENV / ".requirements.sha256"
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        return python
    if not python.exists():
        log(f"creating {PEERS_VENV} (python3 -m venv) ...")
        subprocess.run(["python3", "-m", "venv", str(PEERS_VENV)], check=True)
    log(f"installing {REQUIREMENTS.name} into {PEERS_VENV} (a few minutes the first time) ...")
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)],
        check=True,
    )
    stamp.write_text(digest + "\n")
    return python


def _limit_memory(limit_bytes: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    return apply


def run_peer(
    python: Path,
    peer: str,
    split: SplitFiles,
    lists_path: Path,
    params: dict,
    k: int,
    threads: int,
    mem_limit_gb: float,
    users_path: str | None = None,
) -> dict:
    """One peer in its own process under the memory limit; its figures (or the error)."""
    cmd = [
        str(python),
        str(RUNNER),
        "--peer",
        peer,
        "--train",
        split.train_path,
        "--lists",
        str(lists_path),
        "--k",
        str(k),
        "--threads",
        str(threads),
        "--params",
        json.dumps(params),
    ]
    if users_path:
        cmd += ["--users", users_path]
    env = {
        **os.environ,
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "NUMBA_NUM_THREADS": str(threads),
    }
    began = time.perf_counter()
    process = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        preexec_fn=_limit_memory(int(mem_limit_gb * 2**30)),
        text=True,
    )
    stdout, stderr = process.communicate()
    wall = time.perf_counter() - began
    # the child is reaped by communicate(); its peak comes from RUSAGE_CHILDREN only as a
    # running max, so the runner reports its own ru_maxrss.
    result: dict = {"peer": peer, "params": params, "process_wall_seconds": round(wall, 3)}
    last = stdout.strip().splitlines()[-1] if stdout.strip() else ""
    try:
        result.update(json.loads(last))
    except json.JSONDecodeError:
        oom = "MemoryError" in stderr or "Unable to allocate" in stderr or process.returncode < 0
        result["error"] = "out of memory" if oom else f"exit code {process.returncode}"
        result["stderr_tail"] = stderr[-2000:]
    if process.returncode != 0 and "error" not in result:
        result["error"] = f"exit code {process.returncode}"
    return result


def _truth_users(split: SplitFiles, out: Path) -> str:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    users = pc.unique(pq.read_table(split.truth_path, columns=["user_id"])["user_id"])
    path = out / "truth_users.parquet"
    import pyarrow as pa

    pq.write_table(pa.table({"user_id": users}), path)
    return str(path)


def tune_peer(python, peer, split, out, k, threads, mem_limit_gb, log=print) -> dict:
    """The grid point with the best NDCG@10 on the validation split."""
    users = _truth_users(split, out)
    trials = []
    for j, params in enumerate(GRIDS[peer]):
        params = {**params, "time_now": _epoch(split.cutoff)}
        lists = out / f"{peer}-validation-{j}.parquet"
        figures = run_peer(python, peer, split, lists, params, k, threads, mem_limit_gb, users)
        if "error" in figures:
            log(f"  {peer} validation {params}: {figures['error']}")
            trials.append({"params": params, "error": figures["error"]})
            continue
        ndcg = evaluate_lists(split, lists)["metrics"]["ndcg@10"]
        log(f"  {peer} validation {_short(params)}: NDCG@10 {ndcg:.4f} ({figures['seconds']} s)")
        trials.append({"params": params, "ndcg@10": ndcg, "seconds": figures["seconds"]})
        lists.unlink(missing_ok=True)
    ok = [t for t in trials if "ndcg@10" in t]
    best = max(ok, key=lambda t: t["ndcg@10"]) if ok else {"params": DEFAULTS[peer]}
    return {"chosen": best["params"], "trials": trials}


def tune_decayrec(args, out: Path, log=print) -> dict:
    """decayrec's decay half-life by NDCG@10 on the validation split of its own backtest
    (decayrec.evaluation.backtest.backtest(..., split='validation')), on a lake of the same
    events."""
    from decayrec.evaluation.backtest import backtest

    lake_dir = out / "decayrec-tune"
    run_bench(
        args.events,
        model=args.model,
        out_dir=lake_dir,
        seed=args.seed,
        reuse=True,
        stages=["ingest", "validate"],
        data_root=args.data_root,
        n_items=args.items,
        progress=None,
    )
    bench = json.loads((lake_dir / "bench.json").read_text())
    trials = []
    for h in DECAYREC_HALF_LIVES:
        config = bench_config(lake_dir, bench["events"]["path"], args.model, h)
        as_of = config.as_of_time(datetime.fromisoformat(bench["as_of"]).date())
        began = time.perf_counter()
        result = backtest(config, as_of, "global_time", split="validation")
        ndcg = result["model"]["ndcg@10"]
        seconds = round(time.perf_counter() - began, 1)
        log(f"  decayrec validation half_life_days={h}: NDCG@10 {ndcg:.4f} ({seconds} s)")
        trials.append({"params": {"half_life_days": h}, "ndcg@10": ndcg, "seconds": seconds})
    best = max(trials, key=lambda t: t["ndcg@10"])
    return {"chosen": best["params"], "trials": trials}


def _short(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items() if k != "time_now")


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def decayrec_row(bench: dict) -> dict:
    stages = {s["stage"]: s for s in bench["stages"]}
    e2e = [stages[s] for s in END_TO_END if s in stages]
    model = (bench.get("evaluation") or {}).get("model") or {}
    return {
        "name": f"decayrec {bench['model']}",
        "seconds": round(sum(s["seconds"] for s in e2e), 3),
        "model_seconds": round(
            sum(stages[s]["seconds"] for s in ("features", "train") if s in stages), 3
        ),
        "peak_rss_mib": max((s["peak_rss_mib"] for s in e2e), default=None),
        "ndcg@10": model.get("ndcg@10"),
        "recall@10": model.get("recall@10"),
        "coverage@10": model.get("coverage@10"),
    }


def decayrec_bench(args, out_dir: Path, half_life: float | None, stages) -> dict:
    """decayrec's bench of `stages` (and, with --incremental, the next night) into out_dir."""
    return run_bench(
        args.events,
        model=args.model,
        out_dir=out_dir,
        seed=args.seed,
        reuse=True,
        data_root=args.data_root,
        n_items=args.items,
        half_life_days=half_life,
        stages=[*stages, *(["incremental"] if args.incremental else [])],
    )


def incremental_row(bench: dict) -> dict:
    """decayrec's next night, incremental (1 % of the users with new events): the new
    file's ingest and validation, the next day's features and score-incremental."""
    [stage] = [s for s in bench.get("extra_stages", []) if s["stage"] == "incremental"]
    d = stage["detail"]
    return {
        "name": f"decayrec {bench['model']}, incremental night",
        "seconds": round(
            d["ingest_validate_seconds"] + d["features_seconds"] + d["score_seconds"], 3
        ),
        "model_seconds": round(d["features_seconds"] + d["score_seconds"], 3),
        "peak_rss_mib": stage["peak_rss_mib"],
        "ndcg@10": None,  # other lists than the split's (the next day); equal to a full re-score
        "recall@10": None,
        "coverage@10": None,
    }


def median_row(rows: list[dict]) -> dict:
    """One row of the table from repeats: the median of each time and memory figure, the
    repeats' seconds kept; quality figures from the first repeat (the only one evaluated)."""
    row = dict(rows[0])
    for key in ("seconds", "model_seconds", "peak_rss_mib"):
        values = [r[key] for r in rows if r.get(key) is not None]
        row[key] = statistics.median(values) if values else None
    row["seconds_repeats"] = [r["seconds"] for r in rows]
    return row


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--model", choices=["ease", "ials", "itemknn"], default="ease")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--items", type=int, help="catalogue size (default as decayrec bench)")
    parser.add_argument("--out", help="default: <data-root>/peers/n<N>-<model>")
    parser.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT))
    parser.add_argument("--reuse", action="store_true", help="reuse decayrec's bench.json in --out")
    parser.add_argument("--peers", nargs="+", choices=["sar", "als"], default=["sar", "als"])
    parser.add_argument("--tune", action="store_true", help="grid on the validation split")
    parser.add_argument("--params-from", help="peers.json of an earlier run: its chosen params")
    parser.add_argument("--mem-limit-gb", type=float, default=14.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="time decayrec's end-to-end stages and each peer this many times; the tables "
        "show the medians (the first repeat alone runs decayrec's evaluate and export)",
    )
    parser.add_argument(
        "--incremental",
        action="store_true",
        help="also time decayrec's next night, incremental (1 %% of the users with new "
        "events: decayrec bench --stages ... incremental), in every repeat",
    )
    args = parser.parse_args()

    out = Path(args.out or Path(args.data_root) / "peers" / f"n{args.events}-{args.model}")
    out.mkdir(parents=True, exist_ok=True)
    python = ensure_peers_venv()

    chosen = {p: dict(DEFAULTS[p]) for p in args.peers}
    tuning: dict = {}
    earlier = json.loads(Path(args.params_from).read_text()) if args.params_from else None
    half_life = None
    if earlier:
        half_life = earlier.get("chosen", {}).get("decayrec", {}).get("half_life_days")
        tuning["params_from"] = args.params_from
    elif args.tune:
        print("decayrec: decay half-life on the validation split ...")
        tuning["decayrec"] = tune_decayrec(args, out)
        half_life = tuning["decayrec"]["chosen"]["half_life_days"]

    bench_dir = out / "decayrec"
    bench_json = bench_dir / "bench.json"
    bench = json.loads(bench_json.read_text()) if args.reuse and bench_json.exists() else None
    if (
        bench is None
        or bench["n_events"] != args.events
        or bench["model"] != args.model
        or (half_life is not None and bench.get("half_life_days") != half_life)
    ):
        print(f"decayrec bench at {args.events:,} events ({args.model}) ...")
        bench = decayrec_bench(args, bench_dir, half_life, DEFAULT_STAGES)
    repeats = [bench]
    for r in range(2, args.repeats + 1):
        print(f"decayrec bench, repeat {r} of {args.repeats} (end-to-end stages) ...")
        repeats.append(decayrec_bench(args, bench_dir / f"repeat-{r}", half_life, END_TO_END))
    config = bench_config(bench_dir, bench["events"]["path"], args.model, half_life)
    as_of = config.as_of_time(datetime.fromisoformat(bench["as_of"]).date())
    split = export_split(config, as_of, out / "split-test")
    print(
        f"split: cutoff {split.cutoff}, {split.n_train_events:,} training events, "
        f"{split.n_truth:,} truth pairs -> {split.directory}"
    )
    if earlier:
        for p in args.peers:
            if p in earlier.get("chosen", {}):
                chosen[p] = {k: v for k, v in earlier["chosen"][p].items() if k != "time_now"}
    elif args.tune:
        validation = export_split(config, as_of, out / "split-validation", split="validation")
        print(f"validation split: cutoff {validation.cutoff}")
        for p in args.peers:
            tuning[p] = tune_peer(
                python, p, validation, out, args.k, args.threads, args.mem_limit_gb
            )
            chosen[p] = {k: v for k, v in tuning[p]["chosen"].items() if k != "time_now"}

    rows = [median_row([decayrec_row(b) for b in repeats])]
    if args.incremental:
        rows.append(median_row([incremental_row(b) for b in repeats]))
    peer_results = {}
    for p in args.peers:
        params = {**chosen[p], "time_now": _epoch(split.cutoff)}
        lists = out / f"{p}-lists.parquet"
        print(f"{NAMES[p]}: {_short(params)} ...")
        runs = [
            run_peer(python, p, split, lists, params, args.k, args.threads, args.mem_limit_gb)
            for _ in range(args.repeats)
        ]
        failed = [run for run in runs if "error" in run]
        figures = {**(failed or runs)[0], "repeats": runs}  # lists: the last repeat's
        row = {"name": NAMES[p], "params": chosen[p]}
        if "error" in figures:
            row["error"] = (
                f"out of memory at {args.events:,} events (limit {args.mem_limit_gb:g} GB)"
                if figures["error"] == "out of memory"
                else figures["error"]
            )
            print(f"  {row['error']}")
        else:
            evaluation = evaluate_lists(split, lists)
            m = evaluation["metrics"]
            whole = [r["load_seconds"] + r["fit_seconds"] + r["topk_seconds"] for r in runs]
            row.update(
                seconds=round(statistics.median(whole), 3),
                seconds_repeats=[round(w, 3) for w in whole],
                model_seconds=round(
                    statistics.median(r["fit_seconds"] + r["topk_seconds"] for r in runs), 3
                ),
                peak_rss_mib=statistics.median(r["peak_rss_mib"] for r in runs),
                **{key: m.get(key) for key in ("ndcg@10", "recall@10", "coverage@10")},
            )
            figures["evaluation"] = evaluation
        peer_results[p] = figures
        rows.append(row)

    me = rows[0]
    for row in rows[1 + args.incremental :]:
        row["ratio_time"] = _ratio(me["seconds"], row.get("seconds"))
        row["ratio_model_time"] = _ratio(me["model_seconds"], row.get("model_seconds"))
        row["ratio_peak_rss"] = _ratio(me["peak_rss_mib"], row.get("peak_rss_mib"))
        row["ratio_ndcg@10"] = _ratio(me["ndcg@10"], row.get("ndcg@10"))
        if args.incremental:  # the incremental night against the peer's full fit
            row["ratio_incremental_time"] = _ratio(rows[1]["seconds"], row.get("seconds"))
    report = {
        "n_events": bench["n_events"],
        "n_users": bench["n_users"],
        "n_items": bench["n_items"],
        "model": args.model,
        "split": split.__dict__,
        "rows": rows,
        "chosen": {"decayrec": {"half_life_days": bench.get("half_life_days")}, **chosen},
        "tuning": tuning,
        "peers": peer_results,
        "decayrec_bench": str(bench_json),
        "mem_limit_gb": args.mem_limit_gb,
        "threads": args.threads,
        "repeats": args.repeats,
        "load_average": [b["machine"]["load_average_at_start"] for b in repeats],
        "machine": bench["machine"],
    }
    (out / "peers.json").write_text(json.dumps(report, indent=2, default=str))
    text = markdown(report)
    (out / "peers.md").write_text(text)
    print()
    print(text)
    print(f"results: {out / 'peers.json'}, {out / 'peers.md'}")
    return 0


def _f(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def markdown(report: dict) -> str:
    lines = [
        f"# decayrec vs peers: {report['n_events']:,} events, {report['n_users']:,} users, "
        f"{report['n_items']:,} items",
        "",
        f"Global-time split: cutoff {report['split']['cutoff']}, "
        f"{report['split']['n_train_events']:,} training events. decayrec's time is its nightly "
        "stages from the event files to every user's top-K (ingest, validate, features, train "
        "on all events before T); a peer's is load + fit + top-K for every training user on "
        "the split's training events. Model time: decayrec features + train, a peer fit + "
        f"top-K. Peers: {report['threads']} threads, address space limited to "
        f"{report['mem_limit_gb']:g} GB. Ratios are decayrec / peer (time and memory: below 1 "
        "is better for decayrec; NDCG: above 1).",
        "",
        "| | time s | model time s | peak RSS MiB | NDCG@10 | Recall@10 | coverage@10 | "
        "time ratio | model-time ratio | RSS ratio | NDCG@10 ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    if report.get("repeats", 1) > 1:
        lines[-4] += (
            f" Times and memory are medians of {report['repeats']} repeats (each repeat's "
            "time below); quality from the first."
        )
    for r in report["rows"]:
        if "error" in r:
            lines.append(f"| {r['name']} | {r['error']} | | | | | | | | | |")
            continue
        lines.append(
            f"| {r['name']} | {_f(r['seconds'], '.1f')} | {_f(r['model_seconds'], '.1f')} | "
            f"{_f(r['peak_rss_mib'], ',.0f')} | {_f(r['ndcg@10'], '.4f')} | "
            f"{_f(r['recall@10'], '.4f')} | {_f(r['coverage@10'], '.3f')} | "
            f"{_f(r.get('ratio_time'), '.2f')} | {_f(r.get('ratio_model_time'), '.2f')} | "
            f"{_f(r.get('ratio_peak_rss'), '.2f')} | {_f(r.get('ratio_ndcg@10'), '.2f')} |"
        )
    if report.get("repeats", 1) > 1:
        lines += ["", "Each repeat's time (s):"]
        lines += [
            f"- {r['name']}: {', '.join(f'{t:.1f}' for t in r['seconds_repeats'])}"
            for r in report["rows"]
            if r.get("seconds_repeats")
        ]
        loads = "; ".join(", ".join(f"{x:.1f}" for x in la) for la in report["load_average"])
        lines += ["", f"Load average (1, 5, 15 min) at the start of each decayrec repeat: {loads}."]
    incremental = [r for r in report["rows"] if r.get("ratio_incremental_time") is not None]
    if incremental:
        lines += [
            "",
            "The incremental night (1 % of the users with new events) against each peer's "
            "full fit: "
            + "; ".join(f"{r['name']} {r['ratio_incremental_time']:.2f}" for r in incremental)
            + " (time ratio, decayrec / peer).",
        ]
    names = {**NAMES, "decayrec": f"decayrec {report['model']}"}
    lines += [
        "",
        "Hyperparameters: "
        + "; ".join(f"{names[p]}: {_short(v)}" for p, v in report["chosen"].items())
        + (
            " (chosen on the validation split)"
            if any(k in report["tuning"] for k in report["chosen"])
            else ""
        ),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
