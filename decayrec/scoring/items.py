"""The items a run publishes beside its lists (the warehouse's `items` table): each item's
catalogue entry, its first and latest event and users in the lake before the as-of time,
and its decayed popularity as of the run (the snapshot's).

The catalogue is the content settings' (decayrec.content.resolve_catalogue: content.catalogue,
else the movies.csv beside a MovieLens ratings source): the first text column is the
title, the others go to `attributes` (JSON). Without a catalogue the items still have
their ids and figures. A catalogue that is configured but cannot be read fails the run
with the catalogue's own error; the implicit MovieLens movies.csv, when absent, is left out
with a warning.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from decayrec.config import DecayrecConfig
from decayrec.content import ContentError, catalogue_columns, resolve_catalogue
from decayrec.lake.matrix import Snapshot
from decayrec.lake.session import LakeSession
from decayrec.sqlfiles import sql

log = logging.getLogger(__name__)


def catalogue_entries(config: DecayrecConfig) -> pl.DataFrame | None:
    """item_id, title, attributes (JSON text of the other text columns) from the
    configured catalogue; None without one."""
    try:
        content = resolve_catalogue(config)
    except ContentError:
        return None  # no catalogue configured and no MovieLens source
    if config.content.catalogue is None and not Path(content.catalogue).is_file():
        log.warning("items: %s is missing, items are published without titles", content.catalogue)
        return None
    frame = catalogue_columns(content.catalogue, content.id_column, content.text_columns)
    title, *others = content.text_columns
    attributes = pl.struct(others).struct.json_encode() if others else pl.lit(None, dtype=pl.Utf8)
    return frame.select(
        pl.col(content.id_column).alias("item_id"),
        pl.col(title).alias("title"),
        attributes.alias("attributes"),
    )


def item_table(config: DecayrecConfig, snapshot: Snapshot) -> pa.Table:
    """The items of a run (decayrec.warehouse.base.ITEM_SCHEMA's columns): every item of
    the catalogue, the lake or the snapshot, with what is known of it."""
    as_of = datetime.fromisoformat(snapshot.as_of_time)
    with LakeSession.connect(config.lake_path) as lake:
        seen = lake.con.sql(sql("features/item_seen"), params={"as_of": as_of}).pl()
    scored = pl.from_arrow(
        pq.read_table(Path(snapshot.path) / "items.parquet", columns=["item_id", "popularity"])
    )
    items = seen.join(scored, on="item_id", how="full", coalesce=True)
    catalogue = catalogue_entries(config)
    if catalogue is None:
        items = items.with_columns(
            pl.lit(None, dtype=pl.Utf8).alias("title"),
            pl.lit(None, dtype=pl.Utf8).alias("attributes"),
        )
    else:
        items = catalogue.join(items, on="item_id", how="full", coalesce=True)
    columns = ["item_id", "title", "attributes", "first_seen", "last_seen", "n_users"]
    return items.select(*columns, "popularity").sort("item_id").to_arrow()
