"""Synthetic interaction events with known interest drift, for the demo, tests and benchmarks.

The generative model
--------------------
Time runs over a window ``[start, end)``; every event falls inside it.

**Items.** ``n_items`` items are spread uniformly at random over ``n_clusters`` clusters
(topics). Inside its cluster an item has a popularity rank ``r`` (1 = most popular, a
random permutation, independent of release) and a Zipf weight ``r ** -zipf_exponent``.
A share ``initial_item_share`` of the items is in the catalogue from ``start``; the others
are released at a uniform random time in the window (the first item of each cluster is
always there from ``start``). An item is never drawn before its release: a draw at time
``t`` from cluster ``c`` picks among the items of ``c`` released at or before ``t``, with
probability proportional to their Zipf weights.

**Users.** A share ``initial_user_share`` of the users is there from ``start``; the others
arrive at a uniform random time and their first session starts at their arrival. Each
user belongs to one segment of ``drift_mix`` (name, share, mean cluster switches per
year), e.g. slow "stable" users and "fast" drifters; their drift speed is the segment's
mean times a log-normal jitter (``drift_sigma``, mean 1). From arrival to ``end`` a
user's interest is one cluster at a time: they start in a uniform random cluster and
switch to a uniformly chosen *other* cluster at the events of a Poisson process whose
rate is their drift speed. The drift speed (``drift_per_year``) and the realised number
of switches (``n_switches``) are written out as ground truth.

**Sessions.** A user has ``1 + Poisson(sessions_per_year · activity · active years)``
sessions at uniform random times after arrival; ``activity`` is a per-user log-normal
factor (``activity_sigma``, mean 1), so a few users are much more active than most. A
session holds ``1 + Poisson(views_per_session - 1)`` views ``view_gap_seconds`` apart on
average (exponential gaps). Each view is of an item of the cluster the user is in at the
start of the session, or, with probability ``explore_share``, of a uniformly chosen
cluster (exploration). Each view continues down the funnel view → click → cart →
purchase with the probabilities ``funnel_continue``; each step comes 1 s + an exponential
``step_gap_seconds`` after the previous one. A purchase has a quantity ``value`` ≥ 1
(geometric with success probability ``purchase_quantity_p``); other events have a null
value. Events that would fall at or after ``end`` are dropped.

**Determinism and streaming.** Users are generated in blocks of :data:`USERS_PER_BLOCK`
consecutive users, each block from its own random stream derived from ``(seed, block)``;
the item catalogue comes from a stream of its own. A user's events therefore depend on
the seed, the parameters and their index only, never on how the output is chunked, and
the same seed and parameters give byte-identical files. :func:`write_events` streams
chunks of blocks to Parquet, so memory does not grow with the number of events.

Output columns (canonical events): ``user_id`` (string ``u<n>``), ``item_id`` (string
``i<n>``), ``event_type`` (view, click, cart, purchase), ``event_ts`` (timestamp[us,
UTC]), ``value`` (float64, null except purchases). Within a chunk events are sorted by
user, then time. Sidecars: users (``user_id, arrival_ts, drift_per_year, n_switches,
segment, n_sessions, n_events``) and items (``item_id, cluster, release_ts,
popularity_rank, n_events``).
"""

from __future__ import annotations

import itertools
import math
import os
import resource
import time
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

FUNNEL = ("view", "click", "cart", "purchase")
USERS_PER_BLOCK = 1024  # the unit of randomness: part of what a seed means
_US_PER_YEAR = 365.25 * 86_400 * 1_000_000
_TARGET_CHUNK_EVENTS = 500_000

EVENTS_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("event_ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("value", pa.float64()),
    ]
)
USERS_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("arrival_ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("drift_per_year", pa.float64(), nullable=False),
        pa.field("n_switches", pa.int64(), nullable=False),
        pa.field("segment", pa.string(), nullable=False),
        pa.field("n_sessions", pa.int64(), nullable=False),
        pa.field("n_events", pa.int64(), nullable=False),
    ]
)
ITEMS_SCHEMA = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("cluster", pa.int32(), nullable=False),
        pa.field("release_ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("popularity_rank", pa.int32(), nullable=False),
        pa.field("n_events", pa.int64(), nullable=False),
    ]
)


@dataclass(frozen=True)
class SyntheticParams:
    """Every knob of the generative model (see the module docstring); all have defaults.

    ``n_items`` and ``n_clusters`` left as None are derived from the expected number of
    events: about one item per 100 events (at least 200, at most 2,000,000) and
    ``sqrt(n_items) / 4`` clusters (at least 2).
    """

    start: datetime = datetime(2024, 1, 1, tzinfo=UTC)
    end: datetime = datetime(2025, 1, 1, tzinfo=UTC)
    n_items: int | None = None
    n_clusters: int | None = None
    zipf_exponent: float = 1.1
    initial_item_share: float = 0.5
    initial_user_share: float = 0.4
    sessions_per_year: float = 12.0
    activity_sigma: float = 0.8
    views_per_session: float = 4.0
    view_gap_seconds: float = 45.0
    step_gap_seconds: float = 20.0
    funnel_continue: tuple[float, float, float] = (0.3, 0.3, 0.5)
    purchase_quantity_p: float = 0.7
    explore_share: float = 0.05
    drift_mix: tuple[tuple[str, float, float], ...] = (
        ("stable", 0.6, 0.5),
        ("drifter", 0.25, 3.0),
        ("fast", 0.15, 12.0),
    )
    drift_sigma: float = 0.25

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("start and end must be timezone-aware datetimes")
        if self.end <= self.start:
            raise ValueError("end must be after start")
        shares = [
            self.zipf_exponent >= 0,
            0 <= self.initial_item_share <= 1,
            0 <= self.initial_user_share <= 1,
            0 <= self.explore_share <= 1,
            0 < self.purchase_quantity_p <= 1,
            all(0 <= p <= 1 for p in self.funnel_continue) and len(self.funnel_continue) == 3,
            self.sessions_per_year >= 0 and self.views_per_session >= 1,
            self.view_gap_seconds >= 0 and self.step_gap_seconds >= 0,
            self.activity_sigma >= 0 and self.drift_sigma >= 0,
            len(self.drift_mix) > 0 and all(s >= 0 and r >= 0 for _, s, r in self.drift_mix),
            sum(s for _, s, _ in self.drift_mix) > 0,
        ]
        if not all(shares):
            raise ValueError(f"invalid synthetic parameters: {self}")
        if self.n_clusters is not None and self.n_clusters < 2:
            raise ValueError("n_clusters must be at least 2")
        if self.n_items is not None and self.n_clusters is not None:
            if self.n_items < self.n_clusters:
                raise ValueError("n_items must be at least n_clusters")

    @property
    def span_us(self) -> int:
        return _to_us(self.end) - _to_us(self.start)

    def expected_events_per_user(self) -> float:
        """Expected events of one user (before the few dropped at ``end``)."""
        years = self.span_us / _US_PER_YEAR
        active = self.initial_user_share * years + (1 - self.initial_user_share) * years / 2
        p1, p2, p3 = self.funnel_continue
        per_view = 1 + p1 + p1 * p2 + p1 * p2 * p3
        return (1 + self.sessions_per_year * active) * self.views_per_session * per_view

    def resolved(self, expected_events: float) -> SyntheticParams:
        """These parameters with n_items and n_clusters filled in."""
        n_items = self.n_items
        if n_items is None:
            n_items = int(min(max(round(expected_events / 100), 200), 2_000_000))
            if self.n_clusters is not None:
                n_items = max(n_items, self.n_clusters)
        n_clusters = self.n_clusters or max(2, round(math.sqrt(n_items) / 4))
        return replace(self, n_items=n_items, n_clusters=n_clusters)


@dataclass(frozen=True)
class SyntheticData:
    """An in-memory synthetic data set: events and the users' and items' ground truth."""

    events: pa.Table
    users: pa.Table
    items: pa.Table


@dataclass(frozen=True)
class GeneratedData:
    """What :func:`write_events` wrote."""

    events_path: Path
    users_path: Path
    items_path: Path
    n_events: int
    n_users: int
    n_items: int
    n_clusters: int


def _to_us(moment: datetime) -> int:
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _params(overrides: dict[str, Any]) -> SyntheticParams:
    known = {f.name for f in fields(SyntheticParams)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"unknown synthetic parameter(s): {', '.join(unknown)}")
    return SyntheticParams(**overrides)


def _offsets(lengths: np.ndarray) -> np.ndarray:
    """Start of each segment in the concatenation of segments of these lengths."""
    out = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=out[1:])
    return out


def _ids(prefix: str, numbers: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(prefix, pc.cast(pa.array(numbers), pa.string()), "")


class _Catalogue:
    """Items, their clusters, release times and Zipf weights, with a time-aware sampler."""

    def __init__(self, params: SyntheticParams, seed: int) -> None:
        assert params.n_items is not None and params.n_clusters is not None
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
        n, n_clusters = params.n_items, params.n_clusters
        span = params.span_us
        self.width = span + 1  # composite keys cluster * width + time are exact int64
        if n_clusters * self.width >= 2**62:
            raise ValueError("too many clusters for this time window")
        cluster = rng.integers(0, n_clusters, n)
        cluster[:n_clusters] = np.arange(n_clusters)  # no cluster is empty
        initial = rng.random(n) < params.initial_item_share
        release = np.where(initial, 0, (rng.random(n) * span).astype(np.int64))
        by_rank = np.lexsort((rng.random(n), cluster))
        size = np.bincount(cluster, minlength=n_clusters)
        offset = _offsets(size)
        rank = np.empty(n, dtype=np.int64)
        rank[by_rank] = np.arange(n) - np.repeat(offset, size) + 1
        order = np.lexsort((release, cluster))  # sampler layout: by cluster, then release
        release[order[offset]] = 0  # the first item of every cluster is there from start
        weight = rank[order].astype(np.float64) ** -params.zipf_exponent
        self.cluster = cluster.astype(np.int32)
        self.release = release
        self.rank = rank.astype(np.int32)
        self.order = order
        self.offset = offset
        self.key = cluster[order] * self.width + release[order]
        self.cumweight = np.concatenate([[0.0], np.cumsum(weight)])
        self.ids = _ids("i", np.arange(n))

    def sample(self, cluster: np.ndarray, at: np.ndarray, u: np.ndarray) -> np.ndarray:
        """One item per draw: from ``cluster``, released at or before ``at``, by weight."""
        lo = self.offset[cluster]
        hi = np.searchsorted(self.key, cluster * self.width + at, side="right")
        low, high = self.cumweight[lo], self.cumweight[hi]
        pos = np.searchsorted(self.cumweight, low + u * (high - low), side="right") - 1
        return self.order[np.clip(pos, lo, hi - 1)]

    def table(self, start_us: int, n_events: np.ndarray) -> pa.Table:
        return pa.table(
            {
                "item_id": self.ids,
                "cluster": self.cluster,
                "release_ts": pa.array(start_us + self.release, pa.timestamp("us", tz="UTC")),
                "popularity_rank": self.rank,
                "n_events": n_events,
            },
            schema=ITEMS_SCHEMA,
        )


@dataclass
class _Block:
    """The events (sorted by user, then time) and users of consecutive user indices."""

    first_user: int
    user: np.ndarray  # local user index, int64
    item: np.ndarray
    kind: np.ndarray  # index into FUNNEL
    ts: np.ndarray  # µs since start
    value: np.ndarray
    arrival: np.ndarray
    drift: np.ndarray
    n_switches: np.ndarray
    segment: np.ndarray
    n_sessions: np.ndarray

    def head(self, n_users: int, n_events: int) -> _Block:
        """The first n_users users, keeping at most n_events events (the earliest ones)."""
        n_events = min(n_events, int(np.searchsorted(self.user, n_users)))
        if n_events < len(self.user):
            n_users = min(n_users, int(self.user[n_events - 1]) + 1) if n_events else 0
        return _Block(
            self.first_user,
            *(a[:n_events] for a in (self.user, self.item, self.kind, self.ts, self.value)),
            *(a[:n_users] for a in (self.arrival, self.drift, self.n_switches)),
            self.segment[:n_users],
            self.n_sessions[:n_users],
        )


def _block(params: SyntheticParams, cat: _Catalogue, seed: int, block: int) -> _Block:
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, block)))
    n = USERS_PER_BLOCK
    n_clusters = int(params.n_clusters or 0)
    span = params.span_us
    width = span + 1
    local = np.arange(n)

    # users: segment, drift speed, arrival, activity
    shares = np.array([s for _, s, _ in params.drift_mix], dtype=np.float64)
    rates = np.array([r for _, _, r in params.drift_mix], dtype=np.float64)
    cum = np.cumsum(shares / shares.sum())
    segment = np.minimum(np.searchsorted(cum, rng.random(n), side="right"), len(cum) - 1)
    sigma = params.drift_sigma
    drift = rates[segment] * rng.lognormal(-sigma * sigma / 2, sigma, n)
    initial = rng.random(n) < params.initial_user_share
    arrival = np.where(initial, 0, (rng.random(n) * span).astype(np.int64))
    active = span - arrival
    years = active / _US_PER_YEAR
    sigma = params.activity_sigma
    activity = rng.lognormal(-sigma * sigma / 2, sigma, n)
    n_sessions = 1 + rng.poisson(params.sessions_per_year * activity * years)
    n_switches = rng.poisson(drift * years)

    # interest: a cluster sequence per user, switching at Poisson times
    sw_user = np.repeat(local, n_switches)
    sw_t = arrival[sw_user] + (rng.random(len(sw_user)) * active[sw_user]).astype(np.int64)
    sw_key = np.sort(sw_user * width + sw_t)
    sw_offset = _offsets(n_switches)
    seq_len = n_switches + 1
    seq_offset = _offsets(seq_len)
    steps = rng.integers(1, n_clusters, int(seq_len.sum()))
    steps[seq_offset] = rng.integers(0, n_clusters, n)
    total = np.cumsum(steps)
    base = total[seq_offset] - steps[seq_offset]
    sequence = (total - np.repeat(base, seq_len)) % n_clusters

    # sessions: uniform after arrival; a new user's first session is at their arrival
    s_user = np.repeat(local, n_sessions)
    s_t = arrival[s_user] + (rng.random(len(s_user)) * active[s_user]).astype(np.int64)
    first = _offsets(n_sessions)
    s_t[first] = np.where(initial, s_t[first], arrival)
    n_before = np.searchsorted(sw_key, s_user * width + s_t, side="right") - sw_offset[s_user]
    s_cluster = sequence[seq_offset[s_user] + n_before]

    # views: close together in a session, from the session's cluster or exploring
    n_views = 1 + rng.poisson(params.views_per_session - 1, len(s_user))
    v_session = np.repeat(np.arange(len(s_user)), n_views)
    gaps = rng.exponential(params.view_gap_seconds * 1e6, len(v_session))
    v_first = _offsets(n_views)
    gaps[v_first] = 0.0
    since = np.cumsum(gaps)
    since -= np.repeat(since[v_first], n_views)
    v_t = s_t[v_session] + since.astype(np.int64)
    v_user = s_user[v_session]
    v_cluster = s_cluster[v_session]
    explore = rng.random(len(v_t)) < params.explore_share
    v_cluster[explore] = rng.integers(0, n_clusters, int(explore.sum()))
    v_item = cat.sample(v_cluster, v_t, rng.random(len(v_t)))

    # funnel: view -> click -> cart -> purchase
    users, items, kinds, stamps = [v_user], [v_item], [np.zeros(len(v_t), np.int8)], [v_t]
    idx, t = np.arange(len(v_t)), v_t
    for step, p in enumerate(params.funnel_continue, start=1):
        keep = rng.random(len(idx)) < p
        idx = idx[keep]
        gap = 1e6 + rng.exponential(params.step_gap_seconds * 1e6, len(idx))
        t = t[keep] + gap.astype(np.int64)
        users.append(v_user[idx])
        items.append(v_item[idx])
        kinds.append(np.full(len(idx), step, np.int8))
        stamps.append(t)
    quantity = rng.geometric(params.purchase_quantity_p, len(idx)).astype(np.float64)
    value = np.concatenate([np.full(sum(len(k) for k in kinds[:-1]), np.nan), quantity])

    user = np.concatenate(users)
    ts = np.concatenate(stamps)
    inside = ts < span
    key = (user * width + ts)[inside]
    order = np.argsort(key, kind="stable")
    return _Block(
        first_user=block * n,
        user=user[inside][order],
        item=np.concatenate(items)[inside][order],
        kind=np.concatenate(kinds)[inside][order],
        ts=ts[inside][order],
        value=value[inside][order],
        arrival=arrival,
        drift=drift,
        n_switches=n_switches,
        segment=segment,
        n_sessions=n_sessions,
    )


def _blocks(
    params: SyntheticParams, cat: _Catalogue, seed: int, n_users: int | None, n_events: int | None
) -> Iterator[_Block]:
    """Blocks of users until n_users users or exactly n_events events."""
    users_left = n_users if n_users is not None else math.inf
    events_left = n_events if n_events is not None else math.inf
    block = 0
    while users_left > 0 and events_left > 0:
        out = _block(params, cat, seed, block)
        out = out.head(int(min(users_left, USERS_PER_BLOCK)), int(min(events_left, 2**62)))
        users_left -= len(out.arrival)
        events_left -= len(out.user)
        block += 1
        yield out


def _tables(
    blocks: list[_Block], params: SyntheticParams, cat: _Catalogue
) -> tuple[pa.Table, pa.Table]:
    """Events and users tables of consecutive blocks."""
    start = _to_us(params.start)
    first = blocks[0].first_user
    n_users = sum(len(b.arrival) for b in blocks)
    user = np.concatenate([b.user + (b.first_user - first) for b in blocks])
    kind = np.concatenate([b.kind for b in blocks])
    value = np.concatenate([b.value for b in blocks])
    user_ids = _ids("u", np.arange(first, first + n_users))
    events = pa.table(
        {
            "user_id": user_ids.take(pa.array(user)),
            "item_id": cat.ids.take(pa.array(np.concatenate([b.item for b in blocks]))),
            "event_type": pa.array(FUNNEL).take(pa.array(kind)),
            "event_ts": pa.array(
                start + np.concatenate([b.ts for b in blocks]), pa.timestamp("us", tz="UTC")
            ),
            "value": pa.array(value, pa.float64(), mask=np.isnan(value)),
        },
        schema=EVENTS_SCHEMA,
    )
    segments = pa.array([name for name, _, _ in params.drift_mix])
    users = pa.table(
        {
            "user_id": user_ids,
            "arrival_ts": pa.array(
                start + np.concatenate([b.arrival for b in blocks]), pa.timestamp("us", tz="UTC")
            ),
            "drift_per_year": np.concatenate([b.drift for b in blocks]),
            "n_switches": np.concatenate([b.n_switches for b in blocks]),
            "segment": segments.take(pa.array(np.concatenate([b.segment for b in blocks]))),
            "n_sessions": np.concatenate([b.n_sessions for b in blocks]),
            "n_events": np.bincount(user, minlength=n_users),
        },
        schema=USERS_SCHEMA,
    )
    return events, users


def _setup(
    n_users: int | None, n_events: int | None, params: dict[str, Any]
) -> tuple[SyntheticParams, int | None]:
    if (n_users is None) == (n_events is None):
        raise ValueError("give exactly one of n_users and n_events")
    if (n_users is not None and n_users < 1) or (n_events is not None and n_events < 1):
        raise ValueError("n_users and n_events must be positive")
    base = _params(params)
    expected = n_events if n_events is not None else n_users * base.expected_events_per_user()
    return base.resolved(float(expected)), n_users


def generate_dataset(
    n_users: int | None = None, *, n_events: int | None = None, seed: int = 7, **params: Any
) -> SyntheticData:
    """Events, users and items in memory: ``n_users`` users, or exactly ``n_events`` events.

    With neither, 2,000 users. ``params`` override fields of :class:`SyntheticParams`. For
    small data only; use :func:`write_events` for large data.
    """
    if n_users is None and n_events is None:
        n_users = 2_000
    resolved, n_users = _setup(n_users, n_events, params)
    cat = _Catalogue(resolved, seed)
    blocks = list(_blocks(resolved, cat, seed, n_users, n_events))
    events, users = _tables(blocks, resolved, cat)
    item_events = np.bincount(np.concatenate([b.item for b in blocks]), minlength=len(cat.rank))
    return SyntheticData(events, users, cat.table(_to_us(resolved.start), item_events))


def generate_events(
    n_users: int | None = None, *, n_events: int | None = None, seed: int = 7, **params: Any
) -> pa.Table:
    """Events in memory (columns user_id, item_id, event_type, event_ts, value).

    See :func:`generate_dataset`; this returns only its events table.
    """
    return generate_dataset(n_users, n_events=n_events, seed=seed, **params).events


def _paths(path: Path) -> tuple[Path, Path, Path]:
    if path.suffix == ".parquet":
        return path, path.with_suffix(".users.parquet"), path.with_suffix(".items.parquet")
    return path / "events.parquet", path / "users.parquet", path / "items.parquet"


def write_events(
    path: str | Path,
    n_events: int | None = None,
    *,
    seed: int = 0,
    n_users: int | None = None,
    chunk_users: int | None = None,
    **params: Any,
) -> GeneratedData:
    """Stream synthetic events to Parquet in chunks of users, with bounded memory.

    ``path`` is a directory (``events.parquet``, ``users.parquet`` and ``items.parquet``
    are written in it) or a file name ending in ``.parquet`` (the events; the sidecars go
    beside it as ``<stem>.users.parquet`` and ``<stem>.items.parquet``). Give exactly
    ``n_events`` events or ``n_users`` users. ``chunk_users`` users are generated and
    written at a time (rounded up to a multiple of :data:`USERS_PER_BLOCK`; default: about
    500,000 events a chunk); it changes row groups and memory, never the events.
    ``params`` override fields of :class:`SyntheticParams`. Files are written under a
    temporary name and renamed at the end, so a crash leaves no partial file.
    """
    resolved, n_users = _setup(n_users, n_events, params)
    cat = _Catalogue(resolved, seed)
    if chunk_users is None:
        chunk_users = int(_TARGET_CHUNK_EVENTS / max(resolved.expected_events_per_user(), 1.0))
    blocks_per_chunk = max(1, math.ceil(chunk_users / USERS_PER_BLOCK))
    events_path, users_path, items_path = _paths(Path(path))
    events_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = [p.with_name(f".{p.name}.{os.getpid()}.tmp") for p in (events_path, users_path)]
    item_events = np.zeros(len(cat.rank), dtype=np.int64)
    n_written = n_users_written = 0
    try:
        with (
            pq.ParquetWriter(tmp[0], EVENTS_SCHEMA) as events_out,
            pq.ParquetWriter(tmp[1], USERS_SCHEMA) as users_out,
        ):
            blocks = _blocks(resolved, cat, seed, n_users, n_events)
            while chunk := list(itertools.islice(blocks, blocks_per_chunk)):
                events, users = _tables(chunk, resolved, cat)
                events_out.write_table(events)
                users_out.write_table(users)
                for b in chunk:
                    item_events += np.bincount(b.item, minlength=len(item_events))
                n_written += events.num_rows
                n_users_written += users.num_rows
        tmp_items = items_path.with_name(f".{items_path.name}.{os.getpid()}.tmp")
        pq.write_table(cat.table(_to_us(resolved.start), item_events), tmp_items)
        os.replace(tmp[1], users_path)
        os.replace(tmp_items, items_path)
        os.replace(tmp[0], events_path)  # last: its presence means the set is complete
    finally:
        for leftover in tmp:
            leftover.unlink(missing_ok=True)
    return GeneratedData(
        events_path=events_path,
        users_path=users_path,
        items_path=items_path,
        n_events=n_written,
        n_users=n_users_written,
        n_items=int(resolved.n_items or 0),
        n_clusters=int(resolved.n_clusters or 0),
    )


def write_demo_events(path: str | Path, seed: int = 7) -> Path:
    """Write the demo events (2,000 users, 1,000 items, 8 clusters, all of 2024) once.

    An existing file is kept. The users' and items' ground truth go beside it.
    """
    path = Path(path)
    if not path.exists():
        write_events(path, n_users=2_000, seed=seed, n_items=1_000, n_clusters=8)
    return path


def generate_command(
    n_events: int, out: str | Path, seed: int = 0, chunk_users: int | None = None
) -> int:
    """``decayrec generate``: write the files, print their paths, events/s and peak RSS."""
    began = time.perf_counter()
    data = write_events(out, n_events=n_events, seed=seed, chunk_users=chunk_users)
    seconds = time.perf_counter() - began
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"events: {data.events_path} ({data.n_events} rows)")
    print(f"users:  {data.users_path} ({data.n_users} rows)")
    print(f"items:  {data.items_path} ({data.n_items} rows, {data.n_clusters} clusters)")
    print(
        f"{data.n_events} events in {seconds:.1f} s: {data.n_events / seconds:,.0f} events/s, "
        f"peak RSS {peak_mib:,.0f} MiB"
    )
    return 0
