"""Temporal backtests (DESIGN.md's evaluation protocol), for the model and for popularity.

* global-time: train on events before a cutoff (explicit, or the time that leaves the
  last `test_fraction` of events after it); a user's truth is the new items they touched
  at or after it.
* user-time: for each user with at least `min_user_events` events, the last
  `holdout_items` distinct items are the truth and everything else is training data;
  each user's decay is measured from just after their own last training event.

In both, items a user had in training are never recommended, and truth items that
never occur in training are dropped (and counted).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import duckdb
import numpy as np

from decayrec.config import DecayrecConfig
from decayrec.features import (
    compute_interactions,
    prepare_decay_tables,
    read_matrix,
    sequence_length,
)
from decayrec.metrics import ranking_metrics
from decayrec.scoring import recommend
from decayrec.sqlfiles import connect, sql
from decayrec.train import make_model

SPLITS = ("test", "validation")


def backtest(
    config: DecayrecConfig, as_of: datetime, protocol: str, split: str = "test"
) -> dict[str, Any]:
    """Split the lake's events before `as_of` by `protocol`, train, score, measure.

    split='test' measures on the protocol's test window. split='validation' first
    removes the test window (the user-time holdout, or everything from the global-time
    cutoff on) and applies the same protocol to what is left: tuning uses it, so no
    choice ever sees the test window.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    con = connect(config.lake_path)
    try:
        return _backtest(con, config, as_of, protocol, split)
    finally:
        con.close()


def _carve_truth(
    con: duckdb.DuckDBPyConnection, config: DecayrecConfig, as_of: datetime, protocol: str
) -> datetime | None:
    """Fill the temp table `truth` from `split_events` and point `source_events` at the
    training part; return the time training data ends (None: nothing to split)."""
    ev = config.evaluation
    if protocol == "user_time":
        con.execute(
            "create or replace temp table truth as " + sql("evaluation/user_time_holdout"),
            {
                "as_of": as_of,
                "min_user_events": ev.min_user_events,
                "holdout_items": ev.holdout_items,
            },
        )
        con.execute(
            "create or replace temp table training_events as select e.* from split_events as e "
            "anti join truth as t on t.user_id = e.user_id and t.item_id = e.item_id "
            "where e.event_ts < $as_of",
            {"as_of": as_of},
        )
        con.execute("create or replace temp view source_events as from training_events")
        # each user's decay is measured from just after their own last training event
        con.execute(
            "create or replace temp table reference_times as select user_id, "
            "max(event_ts) + interval 1 second as ref_ts from training_events group by user_id"
        )
        return as_of
    if protocol == "global_time":
        cutoff = ev.cutoff
        if cutoff is None:
            cutoff = con.execute(
                sql("evaluation/global_time_cutoff"),
                {"as_of": as_of, "test_fraction": ev.test_fraction},
            ).fetchall()[0][0]
        if cutoff is None:
            return None
        con.execute(
            "create or replace temp table truth as " + sql("evaluation/global_time_truth"),
            {"as_of": as_of, "cutoff": cutoff},
        )
        con.execute("create or replace temp view source_events as from split_events")
        con.execute(
            "create or replace temp table reference_times (user_id varchar, ref_ts timestamptz)"
        )
        return cutoff
    raise ValueError(f"unknown protocol {protocol!r}")


def _backtest(
    con: duckdb.DuckDBPyConnection,
    config: DecayrecConfig,
    as_of: datetime,
    protocol: str,
    split: str,
) -> dict[str, Any]:
    ev = config.evaluation
    prepare_decay_tables(con, config.decay)
    result: dict[str, Any] = {"protocol": protocol, "split": split}
    con.execute("create or replace temp view split_events as from events")
    if split == "validation":
        test_start = _carve_truth(con, config, as_of, protocol)
        if test_start is None:
            return {**result, "skipped": "no events before the as-of time"}
        # what validation may see: the training part of the test split, nothing after it
        con.execute(
            "create or replace temp table validation_events as "
            "select * from source_events where event_ts < $test_start",
            {"test_start": test_start},
        )
        con.execute("create or replace temp view split_events as from validation_events")
        as_of = test_start
    train_until = _carve_truth(con, config, as_of, protocol)
    if train_until is None:
        return {**result, "skipped": "no events before the as-of time"}
    if protocol == "global_time":
        result["cutoff"] = train_until.isoformat()

    compute_interactions(con, config.decay, train_until)
    matrix = read_matrix(con, train_until, sequence_length(config))
    truth_rows = con.execute(
        "select u.user_idx, i.item_idx from truth as t "
        "join user_index as u on u.user_id = t.user_id "
        "left join item_index as i on i.item_id = t.item_id"
    ).fetchall()
    n_truth_total = con.execute("select count(*) from truth").fetchall()[0][0]
    truth: dict[int, set[int]] = {}
    dropped = 0
    for user_idx, item_idx in truth_rows:
        if item_idx is None:
            dropped += 1
            continue
        truth.setdefault(user_idx, set()).add(item_idx)
    users = np.array(sorted(truth), dtype=np.int64)
    truth_sets = [truth[u] for u in users]
    result.update(
        n_eval_users=len(users),
        n_truth_items=n_truth_total,
        n_truth_dropped_not_in_training=dropped + (n_truth_total - len(truth_rows)),
        n_train_users=matrix.shape[0],
        n_train_items=matrix.shape[1],
    )
    if len(users) == 0:
        return {**result, "skipped": "no user to evaluate"}

    k = max(ev.ks)
    started = time.perf_counter()
    model, device = make_model(config)
    model.fit(matrix)
    result["train_seconds"] = round(time.perf_counter() - started, 3)
    blend = None
    if config.content.enabled:  # cold-start items: catalogue appended, item texts blended in
        from decayrec.content import BacktestBlend

        blend = BacktestBlend(con, config, matrix, model, device)
        matrix = blend.matrix
    for name, scorer in (("model", blend.scorer if blend else model), ("popularity", None)):
        lists = recommend(
            scorer,
            matrix,
            k,
            users=users,
            min_history=config.model.min_history,
            user_batch=config.model.user_batch,
            device=device,
            memory_mb=config.model.score_memory_mb,
        )
        ranked = lists.as_matrix(len(users), k)
        result[name] = ranking_metrics(ranked, truth_sets, ev.ks, matrix.shape[1])
        if blend is not None and name == "model":
            result["content"] = blend.report(ranked, users, truth_sets, ev.ks)
    return result


def evaluate_all(config: DecayrecConfig, as_of: datetime) -> dict[str, Any]:
    return {p: backtest(config, as_of, p) for p in config.evaluation.protocols}
