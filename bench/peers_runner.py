"""One peer on one split, inside the peers' virtual environment (bench/.venv-peers).

    bench/.venv-peers/bin/python bench/peers_runner.py --peer sar|als --train TRAIN.parquet
        --lists OUT.parquet [--k 20] [--params JSON] [--threads 2] [--users USERS.parquet]
        [--user-batch 5000]

Reads the training events that decayrec_tools.bench.export_split wrote (user_id, item_id,
type_weight, ts_seconds, ...), fits the peer, writes every user's top-K list (user_id,
rank, item_id; items the user had in training excluded by the peer itself) and prints
one JSON line: seconds to load, fit and list, and this process's peak RSS. It imports
nothing from decayrec: bench/peers.py measures the lists with decayrec.evaluation.metrics.

* sar: Microsoft Recommenders' SAR (recommenders.models.sar.SAR) with its time decay on
  (timedecay_formula=True, half-life `half_life_days`, reference time `time_now` = the
  split's cutoff, as decayrec's); each event's rating is its event type's weight in
  decayrec's config (view 1, click 1.5, cart 3, purchase 5), so SAR's decayed affinity is
  decayrec's decayed weight; similarity `similarity` (jaccard). The users are scored
  `user_batch` at a time through SAR's own recommend_k_items (one call on every user
  builds a dense users x items float64 matrix).
* als: implicit's AlternatingLeastSquares on the CPU (implicit.cpu.als), `threads`
  threads; the user x item matrix holds the summed type weights of each pair (decayed
  with `decay_half_life_days` from the cutoff when that is set); `factors`,
  `regularization`, `alpha`, `iterations`; lists from model.recommend with
  filter_already_liked_items=True, `user_batch` users at a time.

A MemoryError (the parent sets an address-space limit) prints {"error": "out of memory"}
and exits 3.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _users(table, users_path):  # -> numpy array of user ids to list
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if users_path:
        wanted = pc.unique(pq.read_table(users_path, columns=["user_id"])["user_id"])
        known = pc.unique(table["user_id"])
        return np.asarray(pc.filter(wanted, pc.is_in(wanted, value_set=known)).to_pylist())
    return np.asarray(pc.unique(table["user_id"]).to_pylist())


class _ListWriter:
    def __init__(self, path: str) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.pa = pa
        self.schema = pa.schema(
            [("user_id", pa.string()), ("rank", pa.int32()), ("item_id", pa.string())]
        )
        self.writer = pq.ParquetWriter(path, self.schema)
        self.rows = 0

    def write(self, user_id, rank, item_id) -> None:
        pa = self.pa
        batch = pa.table(
            {
                "user_id": pa.array(user_id, pa.string()),
                "rank": pa.array(rank, pa.int32()),
                "item_id": pa.array(item_id, pa.string()),
            },
            schema=self.schema,
        )
        self.writer.write_table(batch)
        self.rows += batch.num_rows

    def close(self) -> None:
        self.writer.close()


def run_sar(args, params: dict) -> dict:
    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq
    from recommenders.models.sar import SAR

    t0 = time.perf_counter()
    table = pq.read_table(args.train, columns=["user_id", "item_id", "type_weight", "ts_seconds"])
    users = _users(table, args.users)
    df = table.to_pandas().rename(columns={"type_weight": "rating", "ts_seconds": "timestamp"})
    del table
    t1 = time.perf_counter()
    model = SAR(
        col_user="user_id",
        col_item="item_id",
        col_rating="rating",
        col_timestamp="timestamp",
        similarity_type=params.get("similarity", "jaccard"),
        time_decay_coefficient=params["half_life_days"],
        time_now=params.get("time_now"),
        timedecay_formula=True,
        normalize=False,
    )
    model.fit(df)
    del df
    t2 = time.perf_counter()
    out = _ListWriter(args.lists)
    for start in range(0, len(users), args.user_batch):
        batch = users[start : start + args.user_batch]
        top = model.recommend_k_items(
            pd.DataFrame({"user_id": batch}), top_k=args.k, sort_top_k=True, remove_seen=True
        )
        rank = top.groupby("user_id", sort=False).cumcount().to_numpy() + 1
        out.write(top["user_id"].to_numpy(), rank.astype(np.int32), top["item_id"].to_numpy())
    out.close()
    t3 = time.perf_counter()
    return {
        "load_seconds": t1 - t0,
        "fit_seconds": t2 - t1,
        "topk_seconds": t3 - t2,
        "n_users_listed": int(len(users)),
        "n_rows": out.rows,
        "n_items": int(model.n_items),
    }


def run_als(args, params: dict) -> dict:
    import numpy as np
    import pyarrow.parquet as pq
    import scipy.sparse as sp
    from implicit.cpu.als import AlternatingLeastSquares

    t0 = time.perf_counter()
    table = pq.read_table(args.train, columns=["user_id", "item_id", "type_weight", "ts_seconds"])
    users = _users(table, args.users)
    user_codes = table["user_id"].dictionary_encode().combine_chunks()
    item_codes = table["item_id"].dictionary_encode().combine_chunks()
    user_ids = np.asarray(user_codes.dictionary.to_pylist(), dtype=object)
    item_ids = np.asarray(item_codes.dictionary.to_pylist(), dtype=object)
    weights = table["type_weight"].to_numpy().astype(np.float32)
    half_life = params.get("decay_half_life_days")
    if half_life:
        age_days = (params["time_now"] - table["ts_seconds"].to_numpy()) / 86400.0
        weights = weights * np.exp2(-age_days / half_life).astype(np.float32)
    ui = sp.coo_matrix(
        (
            weights,
            (
                user_codes.indices.to_numpy().astype(np.int64),
                item_codes.indices.to_numpy().astype(np.int64),
            ),
        ),
        shape=(len(user_ids), len(item_ids)),
    ).tocsr()  # duplicates summed
    ui.sum_duplicates()
    del table, weights
    t1 = time.perf_counter()
    model = AlternatingLeastSquares(
        factors=params["factors"],
        regularization=params["regularization"],
        alpha=params["alpha"],
        iterations=params["iterations"],
        num_threads=args.threads,
        random_state=params.get("seed", 0),
        calculate_training_loss=False,
    )
    model.fit(ui, show_progress=False)
    t2 = time.perf_counter()
    position = {u: j for j, u in enumerate(user_ids)}
    rows = np.array([position[u] for u in users], dtype=np.int64)
    out = _ListWriter(args.lists)
    for start in range(0, len(rows), args.user_batch):
        batch = rows[start : start + args.user_batch]
        ids, scores = model.recommend(batch, ui[batch], N=args.k, filter_already_liked_items=True)
        valid = (ids >= 0) & np.isfinite(scores) & (scores > -1e30)
        rank = np.broadcast_to(np.arange(1, ids.shape[1] + 1), ids.shape)
        who = np.broadcast_to(batch[:, None], ids.shape)
        out.write(user_ids[who[valid]], rank[valid].astype(np.int32), item_ids[ids[valid]])
    out.close()
    t3 = time.perf_counter()
    return {
        "load_seconds": t1 - t0,
        "fit_seconds": t2 - t1,
        "topk_seconds": t3 - t2,
        "n_users_listed": int(len(rows)),
        "n_rows": out.rows,
        "n_items": int(len(item_ids)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--peer", choices=["sar", "als"], required=True)
    parser.add_argument("--train", required=True)
    parser.add_argument("--lists", required=True)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--params", default="{}")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--users", help="Parquet with user_id: list only these users")
    parser.add_argument("--user-batch", type=int, default=5000)
    args = parser.parse_args()
    params = json.loads(args.params)
    began = time.perf_counter()
    try:
        figures = (run_sar if args.peer == "sar" else run_als)(args, params)
    except MemoryError as exc:
        print(json.dumps({"error": "out of memory", "detail": str(exc)[:500]}), flush=True)
        return 3
    figures = {k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}
    figures["seconds"] = round(time.perf_counter() - began, 3)
    figures["peak_rss_mib"] = round(_peak_mib(), 1)
    figures["threads"] = args.threads
    figures["params"] = params
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # implicit warns otherwise
    sys.exit(main())
