"""Training the configured model on a snapshot and scoring every user."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from decayrec.config import DecayrecConfig
from decayrec.lake.features import build_snapshot, sequence_length
from decayrec.lake.matrix import InteractionMatrix, Snapshot, load_snapshot
from decayrec.models import AlignedScorer, Model, make_model
from decayrec.models.device import pick_device
from decayrec.models.record import ModelRecord
from decayrec.scoring.recommend import SOURCE_FALLBACK, Lists, Scorer, configured_lists

log = logging.getLogger(__name__)


@dataclass
class TrainedLists:
    """A trained model and the lists it produced, on disk."""

    run_dir: str
    model_path: str
    lists_path: str
    model: str
    device: str
    train_seconds: float
    score_seconds: float
    n_users: int
    n_rows: int
    n_fallback_rows: int
    night: str = "refit"  # or "incremental": the kept model, changed users re-scored
    n_rescored: int | None = None  # users scored tonight (None: every user)
    n_carried: int = 0  # users whose lists were carried forward from the live run

    @property
    def n_scored(self) -> int:
        """Users scored tonight."""
        return self.n_users if self.n_rescored is None else self.n_rescored

    def night_stats(self) -> dict[str, Any]:
        """The night's kind and counts, for the run's record and summary."""
        return {
            "summary": self.night_summary(),
            "rescored": self.n_scored,
            "carried": self.n_carried,
        }

    def night_summary(self) -> str:
        """'refit', or 'incremental: N of M users re-scored, K carried'."""
        if self.night != "incremental":
            return self.night
        return (
            f"incremental: {self.n_scored} of {self.n_users} users re-scored, "
            f"{self.n_carried} carried"
        )


def run_dir(config: DecayrecConfig, run_id: str) -> Path:
    """runs/<run_id>/ in the data directory, created."""
    path = Path(config.data_dir) / "runs" / run_id
    path.mkdir(parents=True, exist_ok=True)
    return path


def fit_configured(config: DecayrecConfig, model: Model, matrix: InteractionMatrix) -> Model:
    """Fit `model` on `matrix`, with what the configuration gives it besides the matrix:
    the items' text vectors for a model that starts from them (sasrec's seq_item_init:
    'text', or 'auto' when the items have a catalogue)."""
    init = getattr(model, "item_init", "id")
    if init != "id":
        from decayrec.content import (
            ContentError,
            align_embeddings,
            item_embeddings,
            resolve_catalogue,
        )

        try:  # item_embeddings says when the catalogue file is missing
            content = resolve_catalogue(config)
            embeddings = item_embeddings(content, config.data_dir)
        except ContentError as exc:
            if init == "text":
                raise ContentError(f"model.seq_item_init = text: {exc}") from None
            log.info("%s: item embeddings start at random (%s)", model.name, exc)
        else:
            model.item_text = align_embeddings(embeddings, matrix.item_ids)
            known = int((model.item_text != 0).any(1).sum())
            log.info(
                "%s: item embeddings start from the text of %d of %d items (%s)",
                model.name,
                known,
                matrix.shape[1],
                content.catalogue,
            )
    return model.fit(matrix)


def fit_model(config: DecayrecConfig, matrix: InteractionMatrix, run_id: str):
    """Fit the configured model and save it as runs/<run_id>/model.pt; returns (model,
    device, run_dir, model_path, fit seconds)."""
    directory = run_dir(config, run_id)
    # a killed training resumes from its checkpoint when the same data comes back
    model, device = make_model(config, Path(config.data_dir) / "checkpoints")
    started = time.perf_counter()
    fit_configured(config, model, matrix)
    seconds = time.perf_counter() - started
    model_path = directory / "model.pt"
    model.save(model_path)
    return model, device, directory, model_path, seconds


def train_and_score(config: DecayrecConfig, snapshot: Snapshot, run_id: str) -> TrainedLists:
    """Fit the model on the snapshot, write it and every user's top-K list to the run dir."""
    matrix = load_snapshot(snapshot)
    model, device, run_dir, model_path, train_seconds = fit_model(config, matrix, run_id)
    return score_and_write(
        config, model, matrix, device, run_dir, model_path, "lists.parquet", train_seconds
    )


def kept_model(
    config: DecayrecConfig, record: ModelRecord, snapshot: Snapshot
) -> tuple[DecayrecConfig, InteractionMatrix, torch.device, AlignedScorer]:
    """A registered model ready to score `snapshot`: `config` with the model's own settings,
    the snapshot's matrix (rebuilt with sequences when the model reads events and the
    snapshot has none), the device and the model with its items matched to the matrix's."""
    model_config = record.config(config)
    if sequence_length(model_config) and not snapshot.has_sequences:
        snapshot = build_snapshot(model_config, datetime.fromisoformat(snapshot.as_of_time))
    matrix = load_snapshot(snapshot)
    device = pick_device(config.model.device)
    return model_config, matrix, device, AlignedScorer(record.load(device), matrix.item_ids)


def score_saved_model(
    config: DecayrecConfig, record: ModelRecord, snapshot: Snapshot, run_id: str
) -> TrainedLists:
    """Every user's top-K list of an already trained (registered) model, re-scored on the
    snapshot: its items are matched to the snapshot's by id (AlignedScorer). A model that
    needs what the snapshot lacks (event sequences) gets a snapshot of the same events
    and as-of time built with its own settings."""
    kept = kept_model(config, record, snapshot)
    return kept_lists(config, run_id, record, kept, f"lists_{record.model_id}.parquet")


def kept_lists(
    config: DecayrecConfig,
    run_id: str,
    record: ModelRecord,
    kept: tuple[DecayrecConfig, InteractionMatrix, torch.device, AlignedScorer],
    lists_name: str,
    **options: Any,
) -> TrainedLists:
    """`score_and_write` with a kept model (`kept_model`'s result) into runs/<run_id>/
    `lists_name`; `options`: its users, carry and night figures."""
    model_config, matrix, device, model = kept
    directory, path = run_dir(config, run_id), record.model_path
    return score_and_write(
        model_config, model, matrix, device, directory, path, lists_name, 0.0, **options
    )


def score_lists(
    config: DecayrecConfig,
    model: Scorer | None,
    matrix: InteractionMatrix,
    device: torch.device,
    k: int | None = None,
    users: np.ndarray | None = None,
    explain: bool = True,
) -> tuple[Lists, InteractionMatrix, str]:
    """Top-k lists (k: config.k) of `users` (default: all) exactly as the nightly run
    publishes them: the cold-start blend when content is on, seen items excluded, the
    model where it scores, decayed popularity otherwise (`model=None`: popularity
    alone). Returns the lists, the matrix they index (extended by the blend) and the
    scorer's name. Backtests call this too, so they measure what is published (they skip
    the reasons: `explain=False`)."""
    name = "popularity" if model is None else model.name
    if model is not None and config.content.enabled:
        from decayrec.content import content_blend

        matrix, model, _ = content_blend(config, matrix, model, device)
    return configured_lists(config, model, matrix, device, k, users, explain), matrix, name


def score_and_write(
    config: DecayrecConfig,
    model: Scorer | None,
    matrix: InteractionMatrix,
    device: torch.device,
    directory: Path,
    model_path: Path | None,
    lists_name: str,
    train_seconds: float,
    users: np.ndarray | None = None,
    carry: Callable[[pa.Table, InteractionMatrix], pa.Table] | None = None,
    **night: Any,
) -> TrainedLists:
    """Score `users` (default: all), `carry` adds the other users' lists (the incremental
    night, decayrec.scoring.incremental), write the lists to the run dir."""
    started = time.perf_counter()
    lists, scored, name = score_lists(config, model, matrix, device, users=users)
    table = lists.to_arrow(scored)
    if carry is not None:
        table = carry(table, matrix)
    lists_path = directory / lists_name
    pq.write_table(table, lists_path)
    return TrainedLists(
        run_dir=str(directory),
        model_path=str(model_path) if model_path else "",
        lists_path=str(lists_path),
        model=name,
        device=str(device),
        train_seconds=round(train_seconds, 3),
        score_seconds=round(time.perf_counter() - started, 3),
        n_users=len(pc.unique(table["user_id"])),
        n_rows=table.num_rows,
        n_fallback_rows=int(pc.sum(pc.equal(table["source"], SOURCE_FALLBACK)).as_py() or 0),
        **night,
    )


def popularity_lists(config: DecayrecConfig, snapshot: Snapshot, run_id: str) -> TrainedLists:
    """Every user's decayed-popularity list on the snapshot (what the gate publishes when
    no model clears the popularity floor and there is no champion)."""
    device = pick_device(config.model.device)
    directory = run_dir(config, run_id)
    matrix = load_snapshot(snapshot)
    return score_and_write(
        config, None, matrix, device, directory, None, "lists_popularity.parquet", 0
    )
