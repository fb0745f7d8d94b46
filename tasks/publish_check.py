from datetime import date
from typing import Any

import pyarrow.parquet as pq
from prefect import get_run_logger

from decayrec.config import DecayrecConfig
from decayrec.evaluation.champion import POPULARITY
from decayrec.evaluation.metrics import figure
from decayrec.evaluation.publish_check import check_lists
from decayrec.lake.matrix import Snapshot
from decayrec.scoring.lists import TrainedLists
from decayrec.sqlfiles import sql
from decayrec.warehouse import configured_warehouse
from tasks import io_task


@io_task("publish-check")
def publish_check(
    config: DecayrecConfig,
    as_of: date,
    snapshot: Snapshot,
    trained: TrainedLists,
    gate: dict[str, Any],
) -> dict[str, Any]:
    """Check the lists about to be published against the previous published date's
    (decayrec.evaluation.publish_check); raises PublishCheckFailed when one bound fails."""
    if not config.publish.enabled:
        return {"enabled": False}
    previous = configured_warehouse(config).query(
        sql("warehouse/previous_lists"), {"as_of_date": as_of}
    )
    figures = check_lists(
        pq.read_table(trained.lists_path, columns=["user_id", "item_id", "source"]),
        previous,
        as_of=as_of,
        n_items=snapshot.n_items,
        settings=config.publish,
        model_lists=gate.get("decision") != POPULARITY,
        lists_file=trained.lists_path,
    )
    get_run_logger().info(
        "publish-check for %s passed: %d of %d items listed (coverage %s), fallback share %s, "
        "overlap with %s: %s",
        as_of,
        figures["n_items_listed"],
        figures["n_items_snapshot"],
        figure(figures["coverage"]),
        figure(figures["fallback_share"]),
        figures["previous_date"] or "no previous date",
        figure(figures["overlap"]),
    )
    return {"enabled": True, **figures}
