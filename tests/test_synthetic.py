"""The synthetic event generator: determinism, causality, funnels, popularity, drift, streaming."""

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from decayrec.cli import main
from decayrec_tools.synthetic import (
    EVENTS_SCHEMA,
    USERS_PER_BLOCK,
    generate_dataset,
    generate_events,
    write_demo_events,
    write_events,
)

ROOT = Path(__file__).resolve().parents[1]
START = datetime(2024, 1, 1, tzinfo=UTC)
END = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def data():
    return generate_dataset(n_users=3_000, seed=11, n_items=1_000, n_clusters=8)


@pytest.fixture(scope="module")
def con(data):
    con = duckdb.connect()
    con.register("ev", data.events)
    con.register("us", data.users)
    con.register("it", data.items)
    yield con
    con.close()


def test_same_seed_same_bytes_other_seed_other_events(tmp_path):
    a = write_events(tmp_path / "a", n_events=30_000, seed=5)
    b = write_events(tmp_path / "b", n_events=30_000, seed=5)
    c = write_events(tmp_path / "c", n_events=30_000, seed=6)
    for name in ("events_path", "users_path", "items_path"):
        assert getattr(a, name).read_bytes() == getattr(b, name).read_bytes()
    assert a.n_events == c.n_events == 30_000
    assert not pq.read_table(a.events_path).equals(pq.read_table(c.events_path))
    assert generate_events(seed=3).equals(generate_events(seed=3))
    assert not generate_events(seed=3).equals(generate_events(seed=4))


def test_schema_exact_count_and_values(tmp_path):
    out = write_events(tmp_path / "ev.parquet", n_events=12_345, seed=1)
    assert out.events_path == tmp_path / "ev.parquet"
    assert out.users_path == tmp_path / "ev.users.parquet"
    events = pq.read_table(out.events_path)
    assert events.num_rows == out.n_events == 12_345
    assert events.schema.equals(EVENTS_SCHEMA)
    users = pq.read_table(out.users_path)
    assert users.num_rows == out.n_users
    assert sum(users["n_events"].to_pylist()) == 12_345
    assert pq.read_table(out.items_path).num_rows == out.n_items
    assert not list(tmp_path.glob(".*tmp"))  # temporary files renamed away
    kinds = np.asarray(events["event_type"])
    value = events["value"].to_numpy(zero_copy_only=False)
    assert np.isnan(value[kinds != "purchase"]).all()
    bought = value[kinds == "purchase"]
    assert len(bought) > 0 and (bought >= 1).all() and (bought == np.round(bought)).all()


def test_no_event_before_item_release_or_user_arrival(con):
    bad_item, bad_user, outside = con.execute(
        """
        select count(*) filter (where e.event_ts < i.release_ts),
               count(*) filter (where e.event_ts < u.arrival_ts),
               count(*) filter (where e.event_ts < ? or e.event_ts >= ?)
        from ev e join it i using (item_id) join us u using (user_id)
        """,
        [START, END],
    ).fetchone()
    assert (bad_item, bad_user, outside) == (0, 0, 0)
    # new items and new users do appear over time, and new items get used
    late_items, late_used, late_users = con.execute(
        """
        select (select count(*) from it where release_ts > ?),
               (select count(distinct e.item_id) from ev e join it i using (item_id)
                where i.release_ts > ?),
               (select count(*) from us where arrival_ts > ?)
        """,
        [START, START, START],
    ).fetchone()
    assert late_items > 300 and late_used > 100 and late_users > 1_000
    # a user who arrives later starts their first session at their arrival
    assert con.execute(
        """
        select count(*) from us u
        where u.arrival_ts > ? and u.arrival_ts <> (select min(event_ts) from ev e
                                                     where e.user_id = u.user_id)
        """,
        [START],
    ).fetchone() == (0,)


def test_funnel_order_and_counts(con):
    counts = dict(con.execute("select event_type, count(*) from ev group by 1").fetchall())
    assert counts["view"] > counts["click"] > counts["cart"] > counts["purchase"] > 0
    # every step follows the previous step on the same (user, item) within the session
    for step, before in (("purchase", "cart"), ("cart", "click"), ("click", "view")):
        orphans = con.execute(
            """
            select count(*) from ev s
            where s.event_type = ? and not exists (
                select 1 from ev p
                where p.user_id = s.user_id and p.item_id = s.item_id and p.event_type = ?
                  and p.event_ts < s.event_ts
                  and p.event_ts > s.event_ts - interval 30 minutes)
            """,
            [step, before],
        ).fetchone()[0]
        assert orphans == 0, (step, orphans)


def test_power_law_popularity_inside_clusters(con):
    shares = con.execute(
        """
        with per_item as (
            select i.cluster, i.item_id, count(e.item_id) as n
            from it i left join ev e using (item_id) group by all),
        ranked as (
            select cluster, n, row_number() over (partition by cluster order by n desc) as r,
                   count(*) over (partition by cluster) as k
            from per_item)
        select cluster, sum(n) filter (where r <= ceil(0.1 * k)) / sum(n)
        from ranked group by cluster order by cluster
        """
    ).fetchall()
    assert len(shares) == 8
    top = np.array([s for _, s in shares])
    assert top.mean() > 0.55 and top.min() > 0.45, top


def test_fast_drifters_change_cluster_much_more_than_stable_users(con):
    # per user: the share of consecutive active weeks whose modal cluster differs
    rows = con.execute(
        """
        with weekly as (
            select e.user_id, date_trunc('week', e.event_ts) as w, mode(i.cluster) as c
            from ev e join it i using (item_id) where e.event_type = 'view' group by all),
        changes as (
            select user_id, c <> lag(c) over (partition by user_id order by w) as changed
            from weekly)
        select u.segment, u.drift_per_year, avg(changed::int) as change_rate
        from changes join us u using (user_id)
        where changed is not null group by all having count(*) >= 3
        """
    ).fetchall()
    rate = {seg: np.mean([r for s, _, r in rows if s == seg]) for seg in ("stable", "fast")}
    assert rate["fast"] > 4 * rate["stable"], rate
    assert rate["stable"] < 0.15 < 0.35 < rate["fast"], rate
    drift = np.array([d for _, d, _ in rows])
    change = np.array([r for _, _, r in rows])
    spearman = np.corrcoef(drift.argsort().argsort(), change.argsort().argsort())[0, 1]
    assert spearman > 0.3, spearman
    # the realised switches match the drift speeds: Poisson with rate drift · active years
    ratio = con.execute(
        """
        select sum(n_switches) / sum(drift_per_year * epoch(? - arrival_ts) / (365.25 * 86400))
        from us
        """,
        [END],
    ).fetchone()[0]
    assert 0.9 < ratio < 1.1, ratio


def test_chunk_size_changes_row_groups_not_events(tmp_path):
    small = write_events(tmp_path / "small", n_events=150_000, seed=2, chunk_users=1)
    big = write_events(tmp_path / "big", n_events=150_000, seed=2, chunk_users=10**6)
    small_file, big_file = pq.ParquetFile(small.events_path), pq.ParquetFile(big.events_path)
    assert small_file.metadata.num_row_groups > 1 == big_file.metadata.num_row_groups
    assert small_file.read().equals(big_file.read())
    assert pq.read_table(small.users_path).equals(pq.read_table(big.users_path))
    assert pq.read_table(small.items_path).equals(pq.read_table(big.items_path))
    with duckdb.connect() as con:
        described = con.execute(
            "describe select * from read_parquet(?)", [str(small.events_path)]
        ).fetchall()
        n = con.execute("select count(*) from read_parquet(?)", [str(small.events_path)])
        assert n.fetchone() == (150_000,)
    assert [(name, kind) for name, kind, *_ in described] == [
        ("user_id", "VARCHAR"),
        ("item_id", "VARCHAR"),
        ("event_type", "VARCHAR"),
        ("event_ts", "TIMESTAMP WITH TIME ZONE"),
        ("value", "DOUBLE"),
    ]


def test_a_users_events_do_not_depend_on_how_many_users_follow():
    few = generate_dataset(n_users=USERS_PER_BLOCK + 10, seed=4, n_items=500, n_clusters=6)
    many = generate_dataset(n_users=3 * USERS_PER_BLOCK, seed=4, n_items=500, n_clusters=6)
    assert many.events.slice(0, few.events.num_rows).equals(few.events)
    assert many.users.slice(0, few.users.num_rows).equals(few.users)


def test_demo_events_are_written_once_for_2000_users_in_2024(tmp_path):
    path = write_demo_events(tmp_path / "demo" / "events.parquet")
    events = pq.read_table(path)
    assert 80_000 < events.num_rows < 140_000
    assert len(set(events["user_id"].to_pylist())) == 2_000
    stamps = events["event_ts"]
    assert pa.compute.min(stamps).as_py() >= START and pa.compute.max(stamps).as_py() < END
    before = path.read_bytes()
    assert write_demo_events(path, seed=99) == path
    assert path.read_bytes() == before


def test_cli_generate_prints_throughput_and_peak_rss(tmp_path, capsys):
    assert main(["generate", "--events", "20000", "--out", str(tmp_path), "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "events/s" in out and "peak RSS" in out
    assert pq.read_metadata(tmp_path / "events.parquet").num_rows == 20_000


def test_peak_memory_does_not_grow_with_the_number_of_events(tmp_path):
    def peak_mib(n_events: int) -> float:
        code = (
            "import resource, sys\n"
            "from decayrec_tools.synthetic import write_events\n"
            "write_events(sys.argv[1], n_events=int(sys.argv[2]), chunk_users=1024)\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
        )
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        result = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / str(n_events)), str(n_events)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return float(result.stdout.split()[-1])

    small, large = peak_mib(100_000), peak_mib(1_500_000)
    assert large - small < 40, (small, large)
