"""MovieLens-small cut to its most-rated movies, for the Prefect operations tests: the
same users, times and ratings, but a catalogue small enough that each nightly run of a
backfill trains in about a second (the full catalogue is tested in test_nightly_flow.py)."""

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from decayrec.config import DecayrecConfig, movielens_sources

N_MOVIES = 600


def write_movielens_subset(movielens_dir: Path, out: Path, n_movies: int = N_MOVIES) -> Path:
    """ratings.csv of the `n_movies` most-rated movies (and an empty tags.csv) in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    ratings = pcsv.read_csv(movielens_dir / "ratings.csv")
    counts = ratings.group_by("movieId").aggregate([("userId", "count")])
    top = counts.sort_by([("userId_count", "descending"), ("movieId", "ascending")])
    keep = top["movieId"][:n_movies]
    subset = ratings.filter(pc.is_in(ratings["movieId"], value_set=pa.array(keep)))
    pcsv.write_csv(subset, out / "ratings.csv")
    return out


def small_config(subset_dir: Path, data_dir: Path, **updates) -> DecayrecConfig:
    """Ratings only, the user-time protocol only: a run on the subset takes seconds."""
    data = {
        "data_dir": data_dir,
        "sources": movielens_sources(subset_dir)[:1],
        "evaluation": {"protocols": ["user_time"]},
        "use_tuned": False,
    }
    data.update(updates)
    return DecayrecConfig.model_validate(data)


def tiny_events(folder: Path) -> Path:
    """180 views of 30 users in 3 taste groups (a CSV in the canonical columns)."""
    events = folder / "events.csv"
    rows = ["user_id,item_id,event_type,event_ts,value"]
    for user in range(30):
        for item in range(6):
            rows.append(f"u{user},i{(user % 3) * 5 + item},view,{1700000000 + user * 60 + item},")
    events.write_text("\n".join(rows) + "\n")
    return events


def taste_group_events(folder: Path, users: int = 45, group_items: int = 8) -> Path:
    """Views of `users` users in 3 taste groups, 6 of their group's `group_items` items
    each (a rotation: every item is also seen by others of the group), two months apart
    from 2022-01-01 on: a model that learns the groups beats popularity (a CSV in the
    canonical columns)."""
    events = folder / "group_events.csv"
    rows = ["user_id,item_id,event_type,event_ts,value"]
    for user in range(users):
        group = user % 3
        for j in range(6):
            item = group * group_items + (user + j) % group_items
            ts = 1640995200 + j * 60 * 86400 + user * 3600
            rows.append(f"u{user},i{item},view,{ts},")
    events.write_text("\n".join(rows) + "\n")
    return events
