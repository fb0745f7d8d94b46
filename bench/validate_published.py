"""The published lists' NDCG@10 on a VALIDATION split: ../shared/eval/score_published.py's
measure, one split further in.

The split of ../shared/eval (split.py) is applied twice: its training events are split
again, by the same protocol, into validation-training events and validation truth. The
real nightly (`decayrec run`, this checkout's code) runs on the validation-training
events in a fresh data directory, and the lists its train stage wrote
(runs/<run_id>/lists.parquet) are scored with ../shared/eval/metrics.py. In a fresh data
directory they are the lists the run publishes (no champion: the gate promotes them;
nothing published before: the publish check passes), so the run is stopped there
(SIGTERM) instead of spending another training on each backtest; `--whole-run` lets it
finish and scores `recommendations_latest` instead. Tune here, never on the test split;
check the winner once with score_published.py.

`--blend-weights 0,0.3,...` (a sasrec run with `model.seq_blend` set) also re-scores the
run's saved model and snapshot with each item-item weight w through the nightly's own
scoring (`score_lists`): every weight from one training.

  PYTHONPATH=$PWD .venv/bin/python bench/validate_published.py --model sasrec \
      [--set model.seq_dropout=0.3 ...] [--blend-weights 0,0.2,0.4] [--out results.jsonl]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parents[1]
EVAL = ROOT.parent / "shared" / "eval"


def published(warehouse: Path) -> dict[int, list[int]]:
    con = duckdb.connect(str(warehouse), read_only=True)
    rows = con.sql(
        "select user_id, item_id from recommendations_latest order by user_id, rank"
    ).fetchall()
    con.close()
    recs: dict[int, list[int]] = {}
    for user, item in rows:
        recs.setdefault(int(user), []).append(int(item))
    return recs


def rescored(work: Path, config_path: Path, weights: list[float]) -> dict[float, dict]:
    """Each weight's lists from the run's saved model and snapshot, as the nightly scores."""
    import torch

    from decayrec.config import load_config
    from decayrec.lake.matrix import load_snapshot, read_snapshot
    from decayrec.models import model_class
    from decayrec.models.blend import Blend
    from decayrec.scoring.lists import score_lists

    config = load_config(config_path)
    data = work / "data"
    (meta,) = list((data / "snapshots").glob("*/snapshot.json"))
    matrix = load_snapshot(read_snapshot(meta, data))
    # the train stage's model (a run stopped there), else the registry's (a whole run)
    (path,) = list((data / "runs").glob("*/model.pt")) or list((data / "models").glob("*/model.pt"))
    model = model_class("sasrec").load(path)
    blend = model.blend
    out = {}
    for w in weights:
        model.blend = None if w == 0 else Blend(blend.companion, w)
        lists, m, _ = score_lists(config, model, matrix, torch.device("cpu"), explain=False)
        table = lists.to_arrow(m).to_pandas().sort_values(["user_id", "rank"])
        out[w] = {
            int(u): [int(i) for i in g["item_id"]] for u, g in table.groupby("user_id", sort=False)
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="movielens-small")
    ap.add_argument("--protocol", choices=["user-last-k", "global-time"], default="user-last-k")
    ap.add_argument("--model", default="ease")
    ap.add_argument("--set", action="append", default=[], metavar="DOTTED=JSON")
    ap.add_argument("--blend-weights", default="")
    ap.add_argument("--whole-run", action="store_true", help="run every stage, score the table")
    ap.add_argument("--rescore", metavar="WORKDIR", help="score an earlier run's work directory")
    ap.add_argument("--test", action="store_true", help="the outer (test) split: final check only")
    ap.add_argument("--out", default="/tmp/s15/validation.jsonl")
    a = ap.parse_args()
    sys.path.insert(0, str(EVAL))
    from metrics import evaluate
    from score_published import raw_with_ratings, set_path
    from split import load, make_split

    outer = make_split(load(a.dataset), a.protocol)
    split = outer if a.test else make_split(outer.train, a.protocol)
    raw = raw_with_ratings(a.dataset)
    key = ["user", "item", "ts"]
    train = raw.merge(split.train[key].drop_duplicates(), on=key)
    work = Path(a.rescore or tempfile.mkdtemp(prefix=f"validate-{a.dataset}-"))
    events = work / "events.csv"
    train.assign(event_type="rating").rename(
        columns={"user": "user_id", "item": "item_id", "ts": "event_ts", "rating": "value"}
    )[["user_id", "item_id", "event_type", "event_ts", "value"]].to_csv(events, index=False)
    as_of = (dt.datetime.fromtimestamp(split.now, dt.UTC) + dt.timedelta(days=1)).date()
    cfg: dict = {"data_dir": str(work / "data"), "k": 20, "model": {"name": a.model}}
    # the published lists do not depend on the backtests: one protocol keeps the run short
    cfg["evaluation"] = {"protocols": ["user_time"]}
    for s in a.set:
        key, value = s.split("=", 1)
        set_path(cfg, key, value)
    config_path = work / "config.yaml"
    if not a.rescore:
        config_path.write_text(yaml.safe_dump(cfg))
    warehouse = work / "warehouse.duckdb"
    command = [sys.executable, "-m", "decayrec.cli", "run", "--config", str(config_path)]
    command += ["--events", str(events), "--as-of", as_of.isoformat()]
    command += ["--warehouse", f"duckdb:///{warehouse}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    log = open(work / ("rescore.log" if a.rescore else "run.log"), "w")
    lists_file = next((work / "data" / "runs").glob("*/lists.parquet"), None) if a.rescore else None
    run = (
        None
        if a.rescore
        else subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, text=True)
    )
    while run is not None and run.poll() is None:
        time.sleep(2)
        found = list((work / "data" / "runs").glob("*/lists.parquet"))
        if found and not a.whole_run:
            time.sleep(2)  # the file is written whole (parquet), then the task ends
            lists_file = found[0]
            run.send_signal(signal.SIGTERM)
            run.wait(timeout=120)
            break
    run_s = time.perf_counter() - started
    log.close()
    if lists_file is None and run is not None and run.returncode:
        sys.exit(f"run failed: {(work / 'run.log').read_text()[-800:]}")
    n_items = split.info["n_train_items"]
    if lists_file is None:
        recs = published(warehouse)
    else:
        table = pq.read_table(lists_file).to_pandas().sort_values(["user_id", "rank"])
        recs = {
            int(u): [int(i) for i in g["item_id"]] for u, g in table.groupby("user_id", sort=False)
        }
    train_line = [x for x in (work / "run.log").read_text().splitlines() if "trained in" in x]
    results = {"published": evaluate(recs, split.truth, n_catalog=n_items)}
    if a.blend_weights:
        weights = [float(w) for w in a.blend_weights.split(",")]
        for w, lists in rescored(work, config_path, weights).items():
            results[f"w={w:g}"] = evaluate(lists, split.truth, n_catalog=n_items)
    for name, m in results.items():
        res = {
            "split": "test" if a.test else "validation",
            "model": a.model,
            "sets": a.set,
            "lists": name,
            "ndcg@10": round(m["ndcg@10"], 4),
            "recall@10": round(m["recall@10"], 4),
            "run_s": round(run_s, 1),
            "train": train_line[-1].split(" - ")[-1] if train_line else None,
            "load": round(os.getloadavg()[0], 2),
            "workdir": str(work),
        }
        print(json.dumps(res))
        with open(a.out, "a") as f:
            f.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
