"""The content side of a backtest: how the cold-start blend the lists were scored with
does on cold and rare truth items, beside the same fitted model without the blend."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from decayrec.content import ColdStartBlend, content_blend, interactions_per_item
from decayrec.evaluation.metrics import ranking_metrics
from decayrec.lake.matrix import InteractionMatrix
from decayrec.scoring.recommend import configured_lists

if TYPE_CHECKING:
    from decayrec.config import DecayrecConfig
    from decayrec.lake.session import LakeBuild


def _count_hits(ranked: np.ndarray, sets: list[set[int]], k: int) -> tuple[int, int, float]:
    """(hits in the top k, truth items, micro recall = hits / sum min(|set|, k))."""
    hits = sum(len(set(ranked[u, :k].tolist()) & s) for u, s in enumerate(sets) if s)
    total = sum(len(s) for s in sets)
    denom = sum(min(len(s), k) for s in sets)
    return hits, total, hits / denom if denom else 0.0


class BacktestBlend:
    """The content side of a backtest (decayrec.evaluation.backtest): the extended matrix, the
    blended scorer, and the figures the protocol's warm metrics cannot show.

    Truth items never seen in training are dropped by the protocol; here they are mapped
    to their appended catalogue columns ("cold"), and truth items seen by fewer than
    min_interactions training users are "rare". `report` gives, per setting: the warm
    metrics of the model without the blend on the same fitted model, hits and recall@K on
    cold and on rare truth items, and the metrics over all truth items (warm + cold).
    """

    def __init__(
        self,
        build: LakeBuild,
        config: DecayrecConfig,
        matrix: InteractionMatrix,
        model: Any,
        device: torch.device | str,
    ) -> None:
        self.config = config
        self.model = model
        self.device = device
        self.base = matrix
        self.matrix, self.scorer, self.embeddings = content_blend(config, matrix, model, device)
        index = {item: j for j, item in enumerate(self.matrix.item_ids)}
        self.truth_items: dict[int, set[int]] = {}
        from decayrec.sqlfiles import sql

        for user_idx, item_id in build.execute(sql("content/truth_items")).fetchall():
            j = index.get(item_id)
            if j is not None:
                self.truth_items.setdefault(user_idx, set()).add(j)

    def _lists(self, scorer: Any, users: np.ndarray, k: int) -> np.ndarray:
        lists = configured_lists(
            self.config, scorer, self.matrix, self.device, k, users, explain=False
        )
        return lists.as_matrix(len(users), k)

    def figures(
        self, ranked: np.ndarray, users: np.ndarray, ks: list[int], min_interactions: int
    ) -> dict[str, Any]:
        """Cold and rare hits of `ranked` (lists of `users`), and metrics on all truth."""
        n_base = self.base.shape[1]
        counts = interactions_per_item(self.base)
        every = [self.truth_items.get(int(u), set()) for u in users]
        cold = [{j for j in s if j >= n_base} for s in every]
        rare = [{j for j in s if j < n_base and counts[j] < min_interactions} for s in every]
        out: dict[str, Any] = {}
        for k in ks:
            for name, sets in (("cold", cold), ("rare", rare)):
                hits, total, recall = _count_hits(ranked, sets, k)
                out[f"{name}_hits@{k}"] = hits
                out[f"{name}_recall@{k}"] = recall
                out[f"n_{name}_truth"] = total
        all_truth = ranking_metrics(ranked, every, ks, self.matrix.shape[1])
        out.update({f"all_{key}": v for key, v in all_truth.items() if key != "n_users"})
        return out

    def report(
        self, ranked: np.ndarray, users: np.ndarray, truth_sets: list[set[int]], ks: list[int]
    ) -> dict[str, Any]:
        """`ranked`: the blended lists the backtest measured. Adds the unblended model on
        the same fit, and every (min_interactions, weight) of content.backtest_grid."""
        k = ranked.shape[1]
        m = self.scorer.min_interactions
        n_items = self.matrix.shape[1]
        # the same fitted model on the same extended matrix, content off
        unblended = ColdStartBlend(
            self.model,
            np.zeros((n_items, 1), dtype=np.float32),
            np.zeros(n_items),
            0,
            0.0,
            base_items=self.base.shape[1],
        )
        plain = self._lists(unblended, users, k)
        out: dict[str, Any] = {
            "catalogue_items": len(self.embeddings.item_ids),
            "appended_items": n_items - self.base.shape[1],
            "embedded": self.embeddings.embedded,
            "embed_seconds": round(self.embeddings.seconds, 3),
            "min_interactions": m,
            "weight": self.scorer.weight,
            "blend": self.figures(ranked, users, ks, m),
            "without_blend": {
                **ranking_metrics(plain, truth_sets, ks, n_items),
                **self.figures(plain, users, ks, m),
            },
        }
        grid = []
        for gm, gw in self.config.content.backtest_grid:
            _, scorer, _ = content_blend(self.config, self.base, self.model, self.device, gm, gw)
            lists = self._lists(scorer, users, k)
            grid.append(
                {
                    "min_interactions": gm,
                    "weight": gw,
                    **ranking_metrics(lists, truth_sets, ks, n_items),
                    **self.figures(lists, users, ks, gm),
                }
            )
        if grid:
            out["grid"] = grid
        return out
