"""Backtests: the nightly run itself, on the events before a cutoff, scored on the lists
it would have published (DESIGN.md, "One computation").

A backtest splits the lake's events before the as-of time by a protocol:

* user_time: for each user with at least `min_user_events` events, the last
  `holdout_items` distinct items by time (ties: larger item id first) are the truth;
  every other event (of every user) is training data;
* global_time: training data are the events before a cutoff (explicit, or the time that
  leaves the last `test_fraction` of events after it); a user's truth is the new items
  they touched at or after it.

Then it runs the night that would have followed the training data: as of midnight (in
`config.timezone`) after the last training event, the nightly's own feature build
(:func:`decayrec.lake.features.compute_features`, the same SQL and decay reference), the
nightly's model (:func:`decayrec.models.make_model`) and the nightly's lists
(:func:`decayrec.scoring.lists.score_lists`), and measures those lists. Truth items never seen
in training are dropped (and counted); a truth user without a list counts as zero.

split='validation' applies the same protocol to the test split's training events, so a
choice made on it never sees the test window (tuning and the gate's comparisons of
settings use it; the gate's figures are the test split's, measured nightly).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from decayrec.config import DecayrecConfig
from decayrec.evaluation.content_report import BacktestBlend
from decayrec.evaluation.metrics import ndcg_line, ranking_metrics
from decayrec.lake.features import compute_features, prepare_decay_tables
from decayrec.lake.session import LakeBuild, LakeSession
from decayrec.models import make_model
from decayrec.scoring.lists import fit_configured, score_lists
from decayrec.sqlfiles import sql

SPLITS = ("test", "validation")
PROTOCOLS = ("user_time", "global_time")


def backtest(
    config: DecayrecConfig,
    as_of: datetime,
    protocol: str,
    split: str = "test",
    lake: LakeSession | None = None,
) -> dict[str, Any]:
    """Split the lake's events before `as_of` by `protocol`, run the night after the
    training data, and measure its lists and the popularity lists. The temp tables live
    in one build of `lake` (a session on config.lake_path; None: one of its own), dropped
    when the backtest ends."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    if lake is None:
        with LakeSession.connect(config.lake_path) as own:
            return backtest(config, as_of, protocol, split, own)
    with lake.build() as build:
        return _backtest(build, config, as_of, protocol, split)


def night_after(config: DecayrecConfig, last_event: datetime) -> datetime:
    """The as-of instant of the night after `last_event`: the next midnight in the
    configured timezone (what a nightly run on that data would use)."""
    local_day = last_event.astimezone(ZoneInfo(config.timezone)).date()
    return config.as_of_time(local_day + timedelta(days=1))


def split_on(build: LakeBuild, events: str) -> None:
    """Let a split see the events of the query `events`: the view `split_events` over
    them and the table macro `split_scope` (sql/evaluation/split_scope.sql) the split SQL
    reads them through. type_params (prepare_decay_tables) must be there when it runs."""
    build.view("split_events", events)
    build.macro("split_scope", sql("evaluation/split_scope"))


def carve_split(
    build: LakeBuild, config: DecayrecConfig, as_of: datetime, protocol: str
) -> dict[str, Any] | None:
    """From the build's view `split_events` (the events this split may see, before
    `as_of`): the temp tables `truth` (user_id, item_id) and `training_events`. Returns the split's
    figures, with `night` the as-of instant of the night after the training data, or None
    when there is nothing to train on."""
    ev = config.evaluation
    split: dict[str, Any] = {}
    if protocol == "user_time":
        build.table(
            "truth",
            sql("evaluation/user_time_holdout"),
            {
                "as_of": as_of,
                "min_user_events": ev.min_user_events,
                "holdout_items": ev.holdout_items,
            },
        )
        build.table("training_events", sql("evaluation/user_time_training"), {"as_of": as_of})
    else:
        cutoff = ev.cutoff
        if cutoff is None:
            cutoff = build.execute(
                sql("evaluation/global_time_cutoff"),
                {"as_of": as_of, "test_fraction": ev.test_fraction},
            ).fetchall()[0][0]
        if cutoff is None:
            return None
        build.table(
            "truth", sql("evaluation/global_time_truth"), {"as_of": as_of, "cutoff": cutoff}
        )
        build.table(
            "training_events",
            "select user_id, item_id, event_type, event_ts from split_events "
            "where event_ts < $cutoff",
            {"cutoff": cutoff},
        )
        split["cutoff"] = cutoff.isoformat()
    last = build.execute(
        "select max(e.event_ts) from training_events as e "
        "join type_params as t on t.event_type = e.event_type where t.weight > 0"
    ).fetchall()[0][0]
    if last is None:
        return None
    return {**split, "night": night_after(config, last)}


def _backtest(
    build: LakeBuild,
    config: DecayrecConfig,
    as_of: datetime,
    protocol: str,
    split: str,
) -> dict[str, Any]:
    prepare_decay_tables(build, config.decay)
    result: dict[str, Any] = {"protocol": protocol, "split": split}
    split_on(build, "from events")
    carved = carve_split(build, config, as_of, protocol)
    if carved is not None and split == "validation":
        # the same protocol on what the test split trains on: nothing of the test window
        build.table("outer_training", "from training_events")
        split_on(build, "from outer_training")
        carved = carve_split(build, config, carved["night"], protocol)
    if carved is None:
        return {**result, "skipped": "no events before the as-of time"}
    night = carved.pop("night")
    result.update(carved, night=night.isoformat())

    # the nightly run of that night, on the training events
    build.view("source_events", "from training_events")
    matrix = compute_features(build, config, night)
    truth_rows = build.execute(
        "select t.user_id, u.user_idx, i.item_idx from truth as t "
        "left join user_index as u on u.user_id = t.user_id "
        "left join item_index as i on i.item_id = t.item_id"
    ).fetchall()
    truth: dict[str, set[int]] = {}
    user_index: dict[str, int | None] = {}
    dropped = 0
    for user_id, user_idx, item_idx in truth_rows:
        if item_idx is None:
            dropped += 1
            continue
        truth.setdefault(user_id, set()).add(int(item_idx))
        user_index[user_id] = user_idx
    # users the night can score first; users without training rows get no list (zero)
    scored = sorted(u for u in truth if user_index[u] is not None)
    unscored = sorted(u for u in truth if user_index[u] is None)
    users = np.array([user_index[u] for u in scored], dtype=np.int64)
    truth_sets = [truth[u] for u in scored] + [truth[u] for u in unscored]
    result.update(
        n_eval_users=len(truth_sets),
        n_eval_users_without_list=len(unscored),
        n_truth_items=len(truth_rows),
        n_truth_dropped_not_in_training=dropped,
        n_train_users=matrix.shape[0],
        n_train_items=matrix.shape[1],
    )
    if not truth_sets:
        return {**result, "skipped": "no user to evaluate"}

    k = max(config.evaluation.ks)
    started = time.perf_counter()
    model, device = make_model(config)
    fit_configured(config, model, matrix)
    result["train_seconds"] = round(time.perf_counter() - started, 3)
    for name, scorer in (("model", model), ("popularity", None)):
        lists, _, _ = score_lists(config, scorer, matrix, device, k, users, explain=False)
        ranked = np.full((len(truth_sets), k), -1, dtype=np.int64)
        ranked[: len(users)] = lists.as_matrix(len(users), k)
        result[name] = ranking_metrics(ranked, truth_sets, config.evaluation.ks, matrix.shape[1])
        if name == "model" and config.content.enabled:
            # the cold-start figures of the blend the lists were scored with
            blend = BacktestBlend(build, config, matrix, model, device)
            result["content"] = blend.report(
                ranked[: len(users)], users, truth_sets[: len(users)], config.evaluation.ks
            )
    return result


def evaluate_all(
    config: DecayrecConfig, as_of: datetime, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """The test-split backtest of every configured protocol (one session, a build each);
    `progress` gets a line as each protocol starts and one with its result."""
    results = {}
    with LakeSession.connect(config.lake_path) as lake:
        for protocol in config.evaluation.protocols:
            if progress is not None:
                progress(f"evaluate {protocol}: backtest of {config.model.name} and popularity")
            started = time.perf_counter()
            results[protocol] = result = backtest(config, as_of, protocol, lake=lake)
            if progress is not None:
                progress(
                    f"evaluate {protocol}: {outcome_line(result)}, "
                    f"{time.perf_counter() - started:.1f} s"
                )
    return results


def outcome_line(result: dict[str, Any]) -> str:
    """A backtest's result in a few words: NDCG@10 of the model and of popularity."""
    if "model" not in result:
        return f"not evaluated: {result.get('skipped', 'no result')}"
    return ndcg_line(
        result["model"].get("ndcg@10"),
        result.get("popularity", {}).get("ndcg@10"),
        result.get("n_eval_users"),
    )
