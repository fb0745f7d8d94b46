"""A time-aware sequential Transformer, in the spirit of TiSASRec (Li, Wang & McAuley,
WSDM 2020) on top of SASRec (Kang & McAuley, ICDM 2018).

A user's history is their last L events, oldest first: items i_1..i_L at times t_1..t_L.
Position p is asked "what comes next?" at a reference time r_p: the time of the next
event while training, the run's as-of time (the user's reference time) when
recommending. With E the item embeddings (tied with the output layer), P learned
position embeddings counted from the newest event (position = recency rank) and G a
learned embedding of how long the user has been away:

    h^0_p = sqrt(d) E[i_p] + P[L - p] + G[b(r_p - t_p)]

then `layers` pre-norm blocks of causal multi-head self-attention and a feed-forward
layer, whose attention logits carry a learned bias per head for the time between the
query's reference time and each key's event:

    a_pj = q_p . k_j / sqrt(d_head) + B_head[b(r_p - t_j)]        for j <= p

b(dt) = 0 for dt < 1 minute, else 1 + floor(log2(dt / 1 minute)), capped at
`time_buckets` - 1: log-time buckets from a minute to decades. B is decay learned from
the data (how much an item seen five minutes ago matters against one seen five years
ago, per head) rather than only the kernel imposed on the matrix.

Scores: s_p(i) = h^L_p . E[i]. Training: next-event prediction at every position with
cross-entropy over all items (with `targets` n > 1, position p learns each of the next n
events: the mean of their cross-entropies), or (catalogues above `full_softmax_items`) a sampled
softmax over `negatives` uniform shared negatives, accidental hits masked; targets the
prefix already holds are skipped (lists never repeat a seen item). Early stopping: each
user's last `holdout` events are held out for validation (their new items are the
targets, as in the user-time protocol); training stops when validation NDCG@10 has not
improved for `patience` epochs and keeps the best epoch's weights. With a
`checkpoint_dir` every epoch is checkpointed (weights, optimiser, random states), so a
killed training resumes where it stopped and ends with the same weights.

Every epoch cuts each user's training events into windows of L + 1 afresh: the newest
window, then stride-L windows shifted by a random 0..L-1 events, so every event is a
target every epoch in ever other contexts. `final_epochs` more epochs after the best
validation epoch train on every event, the held-out ones included (the newest
transitions are the most telling). `time_bias` off (the default) drops G and B: plain
SASRec, which on MovieLens-small validation scored twice the time-aware variant (its
timestamps are rating times, not consumption times). With `away_quantile`, the time away
at scoring is capped at that quantile of the gaps between training events, so scoring
never asks about absences training never saw. With `item_init` 'text' ('auto': when the
items have a catalogue), E starts from the items' text vectors (their top-d principal
components, the texts the content module embeds) instead of at random (Harte et al.,
RecSys 2023).

Recommending: softmax over items at the newest position and the reference time;
probabilities are positive, so the model's rows outrank popularity's fallback. With a
`blend` (decayrec/models/blend.py) they are mixed with an item-item model's scores,
fitted on the same decayed matrix after the network. Users
with new events get fresh lists without retraining: the lists only read the events.
Device-agnostic; bf16 autocast on CUDA, float32 on CPU.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from decayrec.config import DecayrecConfig, model_section
from decayrec.lake.matrix import EventSequences, InteractionMatrix
from decayrec.models.base import Explanation, Input, Model, closest_in_embedding
from decayrec.models.blend import Blend
from decayrec.models.device import entry_ranges, last_events
from decayrec.models.files import (
    ModelFileError,
    model_file_errors,
    read_model_file,
    saved_item_ids,
    write_model_file,
)
from decayrec.progress import Progress

log = logging.getLogger(__name__)

MINUTE = 60.0


def log_time_bucket(dt: torch.Tensor, n_buckets: int) -> torch.Tensor:
    """Log-time bucket of a time difference in seconds (0 below a minute)."""
    minutes = (dt / MINUTE).clamp_min(1.0)
    bucket = torch.floor(torch.log2(minutes)).long() + 1
    bucket = torch.where(dt < MINUTE, torch.zeros_like(bucket), bucket)
    return bucket.clamp(0, n_buckets - 1)


class _Block(nn.Module):
    """Pre-norm causal self-attention with a time bias, then a feed-forward layer."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.attn_norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ff_norm = nn.LayerNorm(dim)
        self.ff = nn.Sequential(
            nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, length, dim = h.shape
        q, k, v = self.qkv(self.attn_norm(h)).split(dim, dim=2)
        q, k, v = (t.view(b, length, self.heads, -1).transpose(1, 2) for t in (q, k, v))
        a = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias.to(q.dtype), dropout_p=self.dropout if self.training else 0.0
        )
        h = h + self.drop(self.out(a.transpose(1, 2).reshape(b, length, dim)))
        return h + self.drop(self.ff(self.ff_norm(h)))


class _Network(nn.Module):
    def __init__(
        self,
        n_items: int,
        dim: int,
        layers: int,
        heads: int,
        length: int,
        buckets: int,
        dropout: float,
        timed: bool = True,
    ) -> None:
        super().__init__()
        self.dim, self.heads, self.buckets, self.timed = dim, heads, buckets, timed
        self.items = nn.Embedding(n_items + 1, dim, padding_idx=0)  # row 0: padding
        self.positions = nn.Embedding(length, dim)
        self.away = nn.Embedding(buckets, dim)
        self.time_bias = nn.Embedding(buckets, heads)
        nn.init.normal_(self.items.weight, std=dim**-0.5)
        nn.init.zeros_(self.time_bias.weight)
        with torch.no_grad():
            self.items.weight[0].zero_()
        self.blocks = nn.ModuleList(_Block(dim, heads, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, items: torch.Tensor, times: torch.Tensor, refs: torch.Tensor) -> torch.Tensor:
        """Hidden states (batch x L x dim) of item indices (-1 = padding), their event
        times and each position's reference time (seconds)."""
        b, length = items.shape
        pad = items < 0
        recency = torch.arange(length - 1, -1, -1, device=items.device)
        h = self.items(items + 1) * math.sqrt(self.dim) + self.positions(recency)[None]
        if self.timed:
            h = h + self.away(log_time_bucket(refs - times, self.buckets))
            dt = refs[:, :, None] - times[:, None, :]  # query p, key j
            bias = self.time_bias(log_time_bucket(dt, self.buckets)).permute(0, 3, 1, 2)
        else:  # the ablation: order only, as SASRec
            bias = h.new_zeros(b, self.heads, length, length)
        h = self.drop(h)
        causal = torch.ones(length, length, dtype=torch.bool, device=items.device).tril()
        allowed = causal[None] & ~pad[:, None, :]
        allowed = allowed | torch.eye(length, dtype=torch.bool, device=items.device)[None]
        bias = bias.masked_fill(~allowed[:, None], float("-inf"))
        for block in self.blocks:
            h = block(h, bias)
        return self.norm(h)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return h @ self.items.weight[1:].T


class TimeSASRec(Model):
    name = "sasrec"
    input = Input.SEQUENCES
    reasons = ("close to {items} in your history, as the sequence model sees items",)
    settings = {
        "dim": "seq_dim",
        "layers": "seq_layers",
        "heads": "seq_heads",
        "max_len": "seq_len",
        "dropout": "seq_dropout",
        "epochs": "seq_epochs",
        "patience": "seq_patience",
        "holdout": "seq_holdout",
        "batch_size": "seq_batch",
        "lr": "seq_lr",
        "full_softmax_items": "seq_full_softmax_items",
        "negatives": "seq_negatives",
        "final_epochs": "seq_final_epochs",
        "away_quantile": "seq_away_quantile",
        "time_bias": "seq_time_bias",
        "targets": "seq_targets",
        "item_init": "seq_item_init",
        "blend_with": "seq_blend",
        "blend_weight": "seq_blend_weight",
    }

    def __init__(
        self,
        dim: int = 64,
        layers: int = 2,
        heads: int = 2,
        max_len: int = 50,
        dropout: float = 0.2,
        epochs: int = 200,
        patience: int = 5,
        batch_size: int = 128,
        lr: float = 1e-3,
        full_softmax_items: int = 20_000,
        negatives: int = 2048,
        time_buckets: int = 24,
        eval_users: int = 5000,
        holdout: int = 1,
        final_epochs: int = 0,
        away_quantile: float | None = None,
        time_bias: bool = False,
        targets: int = 1,
        item_init: str = "auto",
        blend_with: str = "none",
        blend_weight: float = 0.65,
        seed: int = 0,
        device: torch.device | str = "cpu",
        checkpoint_dir: str | Path | None = None,
        on_epoch_end: Callable[[int, float], None] | None = None,
    ) -> None:
        if dim % heads:
            raise ValueError(f"sasrec: dim {dim} is not divisible by heads {heads}")
        self.hyper = {
            "dim": dim,
            "layers": layers,
            "heads": heads,
            "max_len": max_len,
            "dropout": dropout,
            "time_buckets": time_buckets,
            "time_bias": time_bias,
            "away_cap": None,  # seconds; set by fit from away_quantile
        }
        if targets < 1:
            raise ValueError(f"sasrec: targets must be at least 1, not {targets}")
        if item_init not in ("auto", "id", "text"):
            raise ValueError(f"sasrec: item_init is 'auto', 'id' or 'text', not {item_init!r}")
        self.final_epochs, self.away_quantile, self.targets = final_epochs, away_quantile, targets
        self.item_init = item_init
        self.blend_with, self.blend_weight = blend_with, blend_weight
        # the items' text vectors, rows aligned to the matrix's columns (zero rows: no
        # text), given by the caller (decayrec.scoring.lists) when there is a catalogue
        self.item_text: np.ndarray | None = None
        self.epochs, self.patience, self.batch_size, self.lr = epochs, patience, batch_size, lr
        self.full_softmax_items, self.negatives = full_softmax_items, negatives
        self.eval_users, self.holdout, self.seed = eval_users, holdout, seed
        self.device = torch.device(device)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.on_epoch_end = on_epoch_end
        self.item_ids: np.ndarray | None = None
        self.net: _Network | None = None
        self.history: list[dict[str, float]] = []
        self.blend: Blend | None = None  # the item-item half of a blend (models/blend.py)

    @classmethod
    def from_config(
        cls, config: DecayrecConfig, device: torch.device, checkpoint_dir: Path | None = None
    ) -> TimeSASRec:
        """The configured model; with `seq_blend`, its blend with that item-item model,
        built from that model's own defaults and this run's decay and shared settings."""
        model = super().from_config(config, device, checkpoint_dir)
        if model.blend_with != "none":
            section = {**config.model.model_dump(), "name": model.blend_with}
            other = config.model_copy(update={"model": model_section(section)})
            companion = Blend.companion_class(model.blend_with).from_config(other, device)
            model.blend = Blend(companion, model.blend_weight)
        return model

    # ---- training -------------------------------------------------------------------

    def fit(self, matrix: InteractionMatrix) -> TimeSASRec:
        seqs = matrix.sequences
        if seqs is None:
            raise ValueError(
                "sasrec needs each user's event sequence: the snapshot has none (build it "
                "with model.name = sasrec)"
            )
        torch.manual_seed(self.seed)
        n_items = matrix.shape[1]
        self.item_ids = matrix.item_ids
        self._event_items, self._event_times = seqs.items, seqs.times
        train_end, valid_users, valid_targets = self._split(seqs)
        self.hyper["away_cap"] = self._away_cap(seqs, train_end)
        self.net = self._new_network(n_items)
        if self.item_init == "text" or (self.item_init == "auto" and self.item_text is not None):
            self._init_items_from_text(n_items)
        optimiser = torch.optim.Adam(self.net.parameters(), lr=self.lr)
        shuffle = torch.Generator().manual_seed(self.seed)
        state = {"epoch": 0, "best": -1.0, "best_state": None, "bad": 0, "history": []}
        fingerprint = self._fingerprint(seqs, n_items)
        resumed = self._resume(fingerprint, optimiser, shuffle)
        if resumed is not None:
            state = resumed
        # a line per epoch; patience may stop training before `epochs`: the ETA is a bound
        with Progress(
            "sasrec epoch", self.epochs, log, unit="epoch", done=state["epoch"], bound=True
        ) as progress:
            while state["epoch"] < self.epochs and state["bad"] < self.patience:
                windows = self._windows(seqs, train_end, shuffle)
                loss = self._train_epoch(windows, n_items, optimiser, shuffle)
                score = self._validate(seqs, train_end, valid_users, valid_targets)
                state["epoch"] += 1
                state["history"].append({"epoch": state["epoch"], "loss": loss, "ndcg@10": score})
                if score >= state["best"]:  # ties: the later, longer-trained epoch
                    state["best"], state["bad"] = score, 0
                    state["best_state"] = copy.deepcopy(self.net.state_dict())
                else:
                    state["bad"] += 1
                self._checkpoint(fingerprint, state, optimiser, shuffle)
                progress.update(
                    1,
                    f"loss {loss:.4f}, validation NDCG@10 {score:.4f} (best {state['best']:.4f}, "
                    f"{state['bad']} of {self.patience} epochs without gain)",
                )
                if self.on_epoch_end is not None:
                    self.on_epoch_end(state["epoch"], score)
        if state["best_state"] is not None:
            self.net.load_state_dict(state["best_state"])
        # then the held-out events too: the newest transitions are the most telling
        for epoch in range(self.final_epochs if len(valid_users) else 0):
            loss = self._train_epoch(
                self._windows(seqs, seqs.ptr[1:], shuffle), n_items, optimiser, shuffle
            )
            log.info("sasrec final epoch %d on every event: loss %.4f", epoch + 1, loss)
            state["history"].append({"epoch": state["epoch"] + epoch + 1, "loss": loss})
        self.history = state["history"]
        self.net.eval()
        if self.blend is not None:
            self.blend.fit(matrix)
        if self.checkpoint_dir is not None:
            (self.checkpoint_dir / "sasrec.ckpt").unlink(missing_ok=True)
        return self

    def _new_network(self, n_items: int) -> _Network:
        h = self.hyper
        return _Network(
            n_items,
            h["dim"],
            h["layers"],
            h["heads"],
            h["max_len"],
            h["time_buckets"],
            h["dropout"],
            h["time_bias"],
        ).to(self.device)

    def _init_items_from_text(self, n_items: int) -> None:
        """E's rows from the items' text vectors: their top-dim principal components
        (exact SVD: deterministic), scaled to the random start's spread; items without
        text keep the random row."""
        assert self.net is not None
        text = self.item_text
        if text is None or text.shape[0] != n_items:
            raise ValueError(
                "sasrec: seq_item_init = text needs the items' text vectors, one per item "
                "(an item catalogue: content.catalogue, or movies.csv beside a MovieLens "
                "ratings source)"
            )
        vectors = torch.from_numpy(np.asarray(text, dtype=np.float32))
        has_text = vectors.norm(dim=1) > 0
        if int(has_text.sum()) < 2:
            return
        centred = vectors[has_text] - vectors[has_text].mean(0)
        q = min(self.hyper["dim"], *centred.shape)
        _, _, vh = torch.linalg.svd(centred, full_matrices=False)
        projected = centred @ vh[:q].T
        projected = projected / projected.std().clamp_min(1e-12) * self.hyper["dim"] ** -0.5
        rows = torch.nonzero(has_text).squeeze(1) + 1  # row 0: padding
        with torch.no_grad():
            weight = self.net.items.weight
            weight[rows] = 0.0  # dimensions beyond the texts' q components start at 0
            weight[rows, :q] = projected.to(weight)

    def _split(self, seqs: EventSequences) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """Per user the end of the training events, the validation users and their
        targets: a user with at least `holdout` + 2 events holds out their last `holdout`
        events, whose items not seen before them are the targets (as in the user-time
        protocol); users left without a target keep every event for training."""
        starts, ends = seqs.ptr[:-1], seqs.ptr[1:]
        train_end = ends.copy()
        users, targets = [], []
        for user in np.nonzero(ends - starts >= self.holdout + 2)[0].tolist():
            cut = int(ends[user]) - self.holdout
            before = seqs.items[starts[user] : cut]
            new = np.setdiff1d(seqs.items[cut : ends[user]], before)
            if len(new):
                users.append(user)
                targets.append(new)
                train_end[user] = cut
        return train_end, np.array(users, dtype=np.int64), targets

    def _away_cap(self, seqs: EventSequences, train_end: np.ndarray) -> float | None:
        """The `away_quantile` quantile of the gaps between a user's consecutive
        training events (seconds): scoring never asks about a longer absence than
        training saw often (None: no cap)."""
        if self.away_quantile is None:
            return None
        index = np.arange(len(seqs.times) - 1)
        user = np.searchsorted(seqs.ptr, index, side="right") - 1
        within = index + 1 < train_end[user]
        gaps = np.diff(seqs.times)[within]
        return float(np.quantile(gaps, self.away_quantile)) if len(gaps) else None

    def _windows(
        self, seqs: EventSequences, train_end: np.ndarray, rng: torch.Generator
    ) -> np.ndarray:
        """Event indices of one epoch's training windows (n x (L + targets), -1 =
        padding): per user the window whose inputs end just before their newest training
        event, then windows of L + 1 with stride L starting a random 0..L-1 events later
        than a cut from the newest would (fresh each epoch): every event is a target
        every epoch, in ever other contexts. Each window runs on by `targets` - 1 events
        (the later targets of its last positions), padded past the user's training end."""
        length, extra = self.hyper["max_len"], self.targets - 1
        starts = seqs.ptr[:-1]
        offsets = torch.randint(length, (len(starts),), generator=rng).numpy()
        # windows after the first end at train_end + offset - k L, k >= 1, while >= 2 events
        more = np.maximum((train_end - starts + offsets - 2) // length, 0)
        more = np.where(train_end - starts >= 2, more, 0)
        first = np.nonzero(train_end - starts >= 2)[0]
        user = np.repeat(np.arange(len(starts)), more)
        k = np.arange(len(user)) - np.repeat(np.cumsum(more) - more, more) + 1
        ends = np.concatenate([train_end[first], (train_end + offsets)[user] - k * length])
        lows = np.concatenate([starts[first], starts[user]])
        highs = np.concatenate([train_end[first], train_end[user]])
        index = ends[:, None] - (length + 1) + np.arange(length + 1 + extra)[None]
        inside = (index >= lows[:, None]) & (index < highs[:, None])
        return np.where(inside, index, -1).astype(np.int64)

    def _train_epoch(
        self,
        windows: np.ndarray,
        n_items: int,
        optimiser: torch.optim.Optimizer,
        shuffle: torch.Generator,
    ) -> float:
        assert self.net is not None
        self.net.train()
        seqs_items, seqs_times = self._event_items, self._event_times
        order = torch.randperm(len(windows), generator=shuffle).numpy()
        total, count = 0.0, 0
        length = self.hyper["max_len"]
        prefix = torch.ones(length, length, dtype=torch.bool, device=self.device).tril()
        for start in range(0, len(order), self.batch_size):
            batch = windows[order[start : start + self.batch_size]]
            pad = batch < 0
            items = torch.from_numpy(np.where(pad, -1, seqs_items[np.where(pad, 0, batch)]))
            times = torch.from_numpy(np.where(pad, 0.0, seqs_times[np.where(pad, 0, batch)]))
            items, times = items.to(self.device), times.to(self.device)
            inputs, in_times = items[:, :length], times[:, :length]
            refs = times[:, 1 : length + 1]
            # targets of position p: the next `targets` events (batch x L x targets)
            targets = items[:, 1:].unfold(1, self.targets, 1)
            # skip padding, and targets the prefix already holds
            seen = (inputs[:, None, None, :] == targets[..., None]) & prefix[None, :, None, :]
            use = (targets >= 0) & (inputs >= 0)[..., None] & ~seen.any(3)
            rows = use.any(2)
            if not bool(rows.any()):
                continue
            with self._autocast():
                h = self.net(inputs, in_times, refs)[rows]
                loss = self._loss(h, targets[rows], use[rows], n_items)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            n = int(use.sum())
            total += float(loss.detach()) * n
            count += n
        return total / max(count, 1)

    def _loss(
        self, h: torch.Tensor, targets: torch.Tensor, use: torch.Tensor, n_items: int
    ) -> torch.Tensor:
        """Mean cross-entropy of the used targets (rows x targets) of hidden states h."""
        assert self.net is not None
        index = targets.clamp_min(0)
        if n_items <= self.full_softmax_items:
            log_p = torch.log_softmax(self.net.logits(h).float(), dim=1).gather(1, index)
        else:
            # sampled softmax: each target against shared uniform negatives (accidental
            # hits masked); uniform sampling needs no logQ correction (it is the same for all)
            negatives = torch.randint(n_items, (self.negatives,), device=h.device)
            table = self.net.items.weight[1:]
            positive = (h[:, None, :] * table[index]).sum(2).float()
            negative = (h @ table[negatives].T).float()
            hit = negatives[None, None, :] == index[..., None]
            rest = negative[:, None, :].expand(-1, index.shape[1], -1)
            rest = rest.masked_fill(hit, float("-inf"))
            log_p = positive - torch.logaddexp(positive, torch.logsumexp(rest, 2))
        return -(log_p * use).sum() / use.sum()

    def _validate(
        self, seqs: EventSequences, train_end: np.ndarray, users: np.ndarray, targets: list
    ) -> float:
        """NDCG@10 of the validation users' held-out items, scored from the events before
        them a second after the last (as the user-time backtest does), items seen before
        excluded; on up to `eval_users` users (a fixed sample)."""
        if len(users) == 0:
            return 0.0
        chosen = np.arange(len(users))
        if len(users) > self.eval_users:
            rng = np.random.default_rng(self.seed)
            chosen = np.sort(rng.choice(len(users), self.eval_users, replace=False))
        discount = 1.0 / np.log2(np.arange(10) + 2.0)
        total = 0.0
        for start in range(0, len(chosen), 1024):
            picked = chosen[start : start + 1024]
            batch = users[picked]
            ends = train_end[batch]
            items, times, _ = last_events(seqs, batch, self.hyper["max_len"], ends=ends)
            scores = self.score_events(items, times, seqs.times[ends - 1] + 1.0)
            starts = seqs.ptr[batch]
            seen = entry_ranges(starts, ends)
            rows = np.repeat(np.arange(len(batch)), ends - starts)
            scores[torch.from_numpy(rows), torch.from_numpy(seqs.items[seen])] = float("-inf")
            top = torch.topk(scores, min(10, scores.shape[1]), dim=1).indices.cpu().numpy()
            for row, n in enumerate(picked.tolist()):
                hits = np.isin(top[row], targets[n])
                ideal = discount[: min(len(targets[n]), 10)].sum()
                total += float((hits * discount[: len(hits)]).sum() / ideal)
        return total / len(chosen)

    # ---- checkpoints ----------------------------------------------------------------

    def _fingerprint(self, seqs: EventSequences, n_items: int) -> str:
        digest = hashlib.sha256()
        for array in (seqs.ptr, seqs.items, seqs.times, seqs.ref_times):
            digest.update(np.ascontiguousarray(array).tobytes())
        settings = (
            self.hyper,
            self.epochs,
            self.batch_size,
            self.lr,
            self.seed,
            self.holdout,
            self.final_epochs,
            self.away_quantile,
            self.targets,
            self.item_init,
            n_items,
        )
        digest.update(repr(settings).encode())
        return digest.hexdigest()[:16]

    def _checkpoint(
        self,
        fingerprint: str,
        state: dict,
        optimiser: torch.optim.Optimizer,
        shuffle: torch.Generator,
    ) -> None:
        if self.checkpoint_dir is None:
            return
        assert self.net is not None
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        path = self.checkpoint_dir / "sasrec.ckpt"
        partial = path.with_suffix(".partial")
        write_model_file(
            {
                "fingerprint": fingerprint,
                "state": state,
                "net": self.net.state_dict(),
                "optimiser": optimiser.state_dict(),
                "shuffle": shuffle.get_state(),
                "torch_rng": torch.get_rng_state(),
            },
            partial,
        )
        partial.replace(path)  # atomic: a kill never leaves half a checkpoint

    def _resume(
        self, fingerprint: str, optimiser: torch.optim.Optimizer, shuffle: torch.Generator
    ) -> dict | None:
        if self.checkpoint_dir is None:
            return None
        path = self.checkpoint_dir / "sasrec.ckpt"
        if not path.exists():
            return None
        try:
            saved = read_model_file(path, map_location=self.device)
            if saved.get("fingerprint") != fingerprint:
                return None  # another data snapshot or other settings: start afresh
            assert self.net is not None
            with model_file_errors(path):
                self.net.load_state_dict(saved["net"])
                optimiser.load_state_dict(saved["optimiser"])
                shuffle.set_state(saved["shuffle"].cpu())
                torch.set_rng_state(saved["torch_rng"].cpu())
                return saved["state"]
        except ModelFileError as exc:
            log.warning("%s Training starts afresh.", exc)
            return None

    # ---- scoring --------------------------------------------------------------------

    def score_users(self, matrix: InteractionMatrix, users: np.ndarray) -> torch.Tensor:
        """Next-item probabilities (users x items) from each user's last events at their
        reference time; users without events get zeros (the popularity fallback)."""
        if matrix.sequences is None:
            raise ValueError("sasrec needs the snapshot's event sequences; it has none")
        probs = self.score_events(*last_events(matrix.sequences, users, self.hyper["max_len"]))
        return probs if self.blend is None else self.blend.mix(probs, matrix, users)

    @torch.no_grad()
    def explain(self, x: torch.Tensor, items: torch.Tensor, top: int = 3) -> Explanation:
        """The user's items whose embeddings (the tied item embeddings E) are closest
        (cosine) to the recommended item's."""
        assert self.net is not None, "the model is not fitted"
        return closest_in_embedding(x, items, self.net.items.weight[1:], top)

    @torch.no_grad()
    def score_events(self, items: np.ndarray, times: np.ndarray, refs: np.ndarray) -> torch.Tensor:
        """Probabilities (batch x items) of left-padded event batches (items -1 = none)."""
        assert self.net is not None, "the model is not fitted"
        was_training = self.net.training
        self.net.eval()
        item_t = torch.from_numpy(np.asarray(items, dtype=np.int64)).to(self.device)
        time_t = torch.from_numpy(np.asarray(times, dtype=np.float64)).to(self.device)
        ref_t = torch.from_numpy(np.asarray(refs, dtype=np.float64)).to(self.device)
        # every position's reference time is the next event's time; the newest's is the
        # user's reference time (as in training)
        if self.hyper.get("away_cap") is not None:  # no absence longer than training saw
            ref_t = torch.minimum(ref_t, time_t.max(1).values + self.hyper["away_cap"])
        next_times = torch.cat([time_t[:, 1:], ref_t[:, None]], 1)
        with self._autocast():
            h = self.net(item_t, time_t, next_times)[:, -1]
            probs = torch.softmax(self.net.logits(h).float(), dim=1)
        probs = torch.where((item_t >= 0).any(1, keepdim=True), probs, torch.zeros_like(probs))
        self.net.train(was_training)
        return probs

    def _autocast(self) -> torch.autocast:
        return torch.autocast(
            device_type=self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"
        )

    # ---- persistence ----------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        assert self.net is not None and self.item_ids is not None
        return {
            "hyper": self.hyper,
            "item_ids": [str(i) for i in self.item_ids],
            "state": self.net.state_dict(),
            "history": self.history,
            "blend": None if self.blend is None else self.blend.state(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], device: torch.device | str) -> TimeSASRec:
        h = state["hyper"]
        model = cls(
            dim=int(h["dim"]),
            layers=int(h["layers"]),
            heads=int(h["heads"]),
            max_len=int(h["max_len"]),
            dropout=float(h["dropout"]),
            time_buckets=int(h["time_buckets"]),
            time_bias=bool(h.get("time_bias", True)),
            device=device,
        )
        model.hyper["away_cap"] = h.get("away_cap")
        model.item_ids = saved_item_ids(state)
        model.net = model._new_network(len(model.item_ids))
        weights = state["state"]
        for key, tensor in weights.items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise ValueError(f"network weights {key!r} are not finite")
        model.net.load_state_dict(weights)  # strict: every name and shape must match
        model.net.eval()
        model.history = list(state["history"])
        if state.get("blend") is not None:
            model.blend = Blend.from_state(state["blend"], device)
        return model
