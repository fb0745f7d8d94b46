"""Sanity bounds on the lists about to be published (configuration: `publish:`).

Tonight's lists (user_id, rank, item_id, score, source) are compared with the lists of
the newest date published before them:

- fallback share: rows whose source is 'fallback' / rows, at most
  `publish.max_fallback_share`;
- catalogue coverage: distinct listed items / items in tonight's snapshot, at least
  `publish.min_coverage_ratio` times the previous date's coverage (the previous date's
  distinct items over the same snapshot's items);
- overlap: the share of the previous date's (user, item) pairs still listed tonight, over
  the users listed on both dates, at least `publish.min_overlap`.

Popularity lists that the gate chose to publish (its floor, decision publish_popularity)
skip the fallback and coverage bounds: every row of those is a fallback and they list few
items by construction, and the gate has already recorded why. Their figures are still
measured and recorded. A failed bound raises PublishCheckFailed: the run is not
published and the previous date's lists stay live.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from decayrec.config import PublishConfig

FALLBACK = "fallback"


class PublishCheckFailed(RuntimeError):
    """Tonight's lists fail a publish bound; they must not be published."""


def _share(value: float) -> str:
    """A share for a message: two decimals, or two significant digits below 0.01."""
    return f"{value:.2f}" if value == 0 or value >= 0.01 else f"{value:.2g}"


def _distinct(column: pa.ChunkedArray | pa.Array) -> int:
    return len(pc.unique(column))


def _overlap(lists: pa.Table, previous: pa.Table) -> tuple[float | None, int]:
    """The share of the previous lists' (user, item) pairs present in `lists`, over the users
    in both; None when no user is in both. Also returns how many users are in both."""
    users_now = pc.unique(lists["user_id"])
    kept = previous.filter(pc.is_in(previous["user_id"], value_set=users_now))
    n_common = _distinct(kept["user_id"])
    if kept.num_rows == 0:
        return None, 0
    pairs_prev = kept.select(["user_id", "item_id"]).group_by(["user_id", "item_id"]).aggregate([])
    pairs_now = lists.select(["user_id", "item_id"]).group_by(["user_id", "item_id"]).aggregate([])
    still = pairs_prev.join(pairs_now, keys=["user_id", "item_id"], join_type="inner")
    return still.num_rows / pairs_prev.num_rows, n_common


def check_lists(
    lists: pa.Table,
    previous: pa.Table,
    *,
    as_of: date,
    n_items: int,
    settings: PublishConfig,
    model_lists: bool = True,
    lists_file: str | None = None,
) -> dict[str, Any]:
    """The publish check of `lists` (for `as_of`) against `previous` (the newest earlier
    date's published lists: as_of_date, user_id, item_id, source; empty when none), with
    `n_items` items in tonight's snapshot. Returns the figures and the bounds checked;
    raises PublishCheckFailed, one paragraph naming each failed bound, when one fails.
    `model_lists` is False for popularity lists the gate chose: no fallback or coverage
    bound then."""
    n_rows = lists.num_rows
    n_fallback = int(pc.sum(pc.equal(lists["source"], FALLBACK)).as_py() or 0) if n_rows else 0
    fallback_share = n_fallback / n_rows if n_rows else 0.0
    n_listed_items = _distinct(lists["item_id"]) if n_rows else 0
    coverage = n_listed_items / n_items if n_items else 0.0
    previous_date = previous["as_of_date"][0].as_py() if previous.num_rows else None
    figures: dict[str, Any] = {
        "n_rows": n_rows,
        "n_fallback_rows": n_fallback,
        "fallback_share": round(fallback_share, 6),
        "n_items_listed": n_listed_items,
        "n_items_snapshot": n_items,
        "coverage": round(coverage, 6),
        "previous_date": previous_date.isoformat() if previous_date else None,
        "previous_coverage": None,
        "coverage_ratio": None,
        "overlap": None,
        "overlap_users": 0,
        "fallback_bound_applied": model_lists,
        "coverage_bound_applied": model_lists,
        "max_fallback_share": settings.max_fallback_share,
        "min_coverage_ratio": settings.min_coverage_ratio,
        "min_overlap": settings.min_overlap,
    }
    failures = []
    if model_lists and fallback_share > settings.max_fallback_share:
        failures.append(
            f"fallback share {_share(fallback_share)} ({n_fallback} of {n_rows} rows with "
            f"source '{FALLBACK}') exceeds publish.max_fallback_share "
            f"{_share(settings.max_fallback_share)}"
        )
    if previous_date is not None:
        n_previous_items = _distinct(previous["item_id"])
        previous_coverage = n_previous_items / n_items if n_items else 0.0
        figures["previous_coverage"] = round(previous_coverage, 6)
        ratio = coverage / previous_coverage if previous_coverage else None
        figures["coverage_ratio"] = None if ratio is None else round(ratio, 6)
        if model_lists and ratio is not None and ratio < settings.min_coverage_ratio:
            failures.append(
                f"catalogue coverage {coverage:.3f} ({n_listed_items} of {n_items} items) is "
                f"{ratio:.2f} times the {previous_coverage:.3f} ({n_previous_items} items) of "
                f"{previous_date}, below publish.min_coverage_ratio "
                f"{settings.min_coverage_ratio:.2f}"
            )
        overlap, n_common = _overlap(lists, previous)
        figures["overlap"] = None if overlap is None else round(overlap, 6)
        figures["overlap_users"] = n_common
        if overlap is not None and settings.min_overlap > 0 and overlap < settings.min_overlap:
            failures.append(
                f"overlap {_share(overlap)} with {previous_date} (share of its (user, item) "
                f"pairs still listed, over {n_common} users listed on both dates) is below "
                f"publish.min_overlap {_share(settings.min_overlap)}"
            )
    figures["passed"] = not failures
    if failures:
        where = f" ({lists_file})" if lists_file else ""
        live = (
            f"the lists of {previous_date} stay live"
            if previous_date is not None
            else "no earlier lists are published"
        )
        raise PublishCheckFailed(
            f"the lists for {as_of}{where} fail the publish check: "
            + "; ".join(failures)
            + f"; they are not published and {live}"
        )
    return figures
