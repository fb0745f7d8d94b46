"""Both warehouses (DuckDB file, real PostgreSQL in public and in a schema of its own):
atomic, idempotent publish, history, migrations, the A/B bucket, readers during publishes,
identifiers and credentials."""

import threading
import time
from datetime import date, timedelta

import duckdb
import psycopg
import pyarrow as pa
import pytest

from decayrec.config import ConfigError, DecayrecConfig, WarehouseConfig, mask_url
from decayrec.sqlfiles import SQL_DIR
from decayrec.warehouse import configured_warehouse
from decayrec.warehouse.base import RunOutcome, ab_bucket
from decayrec.warehouse.errors import (
    InjectedFailure,
    WarehouseConnectionLost,
    WarehouseError,
    WarehouseUnavailable,
)
from decayrec.warehouse.migrations import split_statements
from tests.warehouses import open_url


def lists(users, items, source="model"):
    rows = [(u, r + 1, it, 1.0 / (r + 1)) for u in users for r, it in enumerate(items)]
    return pa.table(
        {
            "user_id": [r[0] for r in rows],
            "rank": pa.array([r[1] for r in rows], pa.int32()),
            "item_id": [r[2] for r in rows],
            "score": [r[3] for r in rows],
            "source": [source] * len(rows),
        }
    )


@pytest.fixture()
def warehouse(warehouse_target):
    wh = warehouse_target.open()
    wh.ensure_schema()
    return wh


def read(wh, query, params=None):
    return wh.query(query, params).to_pylist()


def all_rows(wh):
    return read(
        wh,
        "select as_of_date, user_id, rank, item_id, score, source, model, run_id, generated_at "
        "from recommendations order by as_of_date, user_id, rank",
    )


def test_publish_replaces_a_date_and_latest_follows_the_newest(warehouse):
    d1, d2 = date(2024, 1, 1), date(2024, 1, 2)
    assert warehouse.publish(d1, lists(["a", "b"], ["x", "y"]), "run-1", "ease") is True
    assert warehouse.publish(d1, lists(["a", "b"], ["y", "z"]), "run-2", "ease") is True
    rows = read(
        warehouse, "select user_id, rank, item_id, run_id from recommendations order by 1, 2"
    )
    assert [(r["user_id"], r["rank"], r["item_id"], r["run_id"]) for r in rows] == [
        ("a", 1, "y", "run-2"),
        ("a", 2, "z", "run-2"),
        ("b", 1, "y", "run-2"),
        ("b", 2, "z", "run-2"),
    ]
    warehouse.publish(d2, lists(["a"], ["q", "r"]), "run-3", "ease")
    latest = read(warehouse, "select distinct as_of_date from recommendations_latest")
    assert latest == [{"as_of_date": d2}]
    assert read(warehouse, "select count(*) as n from recommendations") == [{"n": 6}]


def test_identical_lists_are_not_rewritten(warehouse):
    d = date(2024, 1, 1)
    warehouse.publish(d, lists(["a"], ["x", "y"]), "run-1", "ease")
    before = all_rows(warehouse)
    assert warehouse.publish(d, lists(["a"], ["x", "y"]), "run-2", "ease") is False
    assert all_rows(warehouse) == before
    # a changed score is a change
    changed = lists(["a"], ["x", "y"]).set_column(3, "score", pa.array([0.9, 0.1]))
    assert warehouse.publish(d, changed, "run-3", "ease") is True


def test_a_publish_that_fails_midway_leaves_the_old_lists(warehouse):
    d = date(2024, 1, 1)
    warehouse.publish(d, lists(["a", "b"], ["x", "y"]), "run-1", "ease")
    broken = lists(["a", "b"], ["p", "q"])
    # a NULL item_id violates NOT NULL inside the publish transaction
    broken = broken.set_column(2, "item_id", pa.array(["p", "q", "p", None]))
    with pytest.raises((duckdb.ConstraintException, WarehouseError), match="(?i)null"):
        warehouse.publish(d, broken, "run-2", "ease")
    rows = read(
        warehouse, "select item_id, run_id from recommendations_latest order by user_id, rank"
    )
    assert [(r["item_id"], r["run_id"]) for r in rows] == [("x", "run-1"), ("y", "run-1")] * 2


def test_an_injected_failure_after_staging_leaves_the_previous_lists(warehouse_target):
    ok = warehouse_target.open()
    ok.ensure_schema()
    ok.publish(date(2024, 1, 1), lists(["a", "b"], ["x", "y"]), "run-1", "ease")
    before = all_rows(ok)
    failing = warehouse_target.open(fail_after_staging=True, history_days=1)
    for day in (date(2024, 1, 1), date(2024, 1, 2)):  # a rerun and a new date
        with pytest.raises(InjectedFailure, match="after staging 4 rows"):
            failing.publish(day, lists(["a", "b"], ["p", "q"]), "run-2", "ease")
    assert all_rows(ok) == before
    assert ok.publish(date(2024, 1, 2), lists(["a", "b"], ["p", "q"]), "run-3", "ease") is True
    assert {r["run_id"] for r in read(ok, "select run_id from recommendations_latest")} == {"run-3"}


def test_history_keeps_the_configured_number_of_days(warehouse_target):
    wh = warehouse_target.open(history_days=3)
    wh.ensure_schema()
    start = date(2024, 1, 1)
    for offset in range(6):
        wh.publish(start + timedelta(days=offset), lists(["a"], ["x"]), f"run-{offset}", "ease")
    dates = read(wh, "select distinct as_of_date from recommendations order by as_of_date")
    assert [r["as_of_date"] for r in dates] == [start + timedelta(days=d) for d in (3, 4, 5)]
    # a gap: publishing 10 days later keeps only that date
    wh.publish(start + timedelta(days=15), lists(["a"], ["x"]), "run-15", "ease")
    assert read(wh, "select distinct as_of_date from recommendations") == [
        {"as_of_date": start + timedelta(days=15)}
    ]


def test_run_history_records_success_and_failure(warehouse):
    d = date(2024, 1, 1)
    warehouse.start_run("r1", d, "ease", {"l2": 100})
    warehouse.finish_run("r1", RunOutcome(status="succeeded", metrics={"ndcg@10": 0.5}, n_rows=4))
    warehouse.start_run("r2", d, "ease", {"l2": 100})
    warehouse.finish_run("r2", RunOutcome(status="failed", failed_task="train", error="boom"))
    rows = read(
        warehouse,
        "select run_id, status, metrics->>'ndcg@10' as ndcg, n_rows, failed_task, error, "
        "finished_at is not null as finished from recommendation_runs order by run_id",
    )
    assert rows == [
        {
            "run_id": "r1",
            "status": "succeeded",
            "ndcg": "0.5",
            "n_rows": 4,
            "failed_task": None,
            "error": None,
            "finished": True,
        },
        {
            "run_id": "r2",
            "status": "failed",
            "ndcg": None,
            "n_rows": None,
            "failed_task": "train",
            "error": "boom",
            "finished": True,
        },
    ]


def test_tables_views_and_columns_are_the_same_in_both(warehouse):
    columns = read(
        warehouse,
        "select table_name, column_name from information_schema.columns "
        "where table_name in ('recommendations', 'recommendation_runs', 'recommendations_latest',"
        " 'schema_migrations') and table_schema = current_schema() "
        "order by table_name, ordinal_position",
    )
    by_table = {}
    for row in columns:
        by_table.setdefault(row["table_name"], []).append(row["column_name"])
    list_columns = [
        "as_of_date",
        "user_id",
        "rank",
        "item_id",
        "score",
        "source",
        "model",
        "run_id",
        "generated_at",
        "reason",
        "because_items",
        "score_pct",
    ]
    assert by_table["recommendations"] == list_columns
    assert by_table["recommendations_latest"] == list_columns
    assert by_table["recommendation_runs"][:4] == ["run_id", "as_of_date", "status", "started_at"]
    assert len(by_table["recommendation_runs"]) == 17
    assert by_table["schema_migrations"] == ["version", "name", "applied_at"]


def test_migrations_upgrade_a_warehouse_in_place_without_losing_rows(warehouse_target):
    wh = warehouse_target.open()
    wh.ensure_schema(up_to=1)
    assert wh.schema_version() == 1
    with wh._transaction() as cur:  # rows as the release of version 1 wrote them
        for user, rank, item in [("a", 1, "x"), ("a", 2, "y"), ("b", 1, "x")]:
            cur.execute(
                f"insert into recommendations values ('2024-01-01', '{user}', {rank}, "
                f"'{item}', 0.5, 'model', 'ease', 'run-1', now())"
            )
    wh.start_run("r1", date(2024, 1, 1), "ease", {})
    before = all_rows(wh)
    wh.ensure_schema()
    wh.ensure_schema()  # idempotent
    assert wh.schema_version() == 4
    assert all_rows(wh) == before
    assert read(wh, "select count(*) as n from recommendations_latest where reason is null") == [
        {"n": 3}
    ]
    assert read(wh, "select count(*) as n from recommendation_runs") == [{"n": 1}]
    assert read(wh, "select version, name from schema_migrations order by version") == [
        {"version": 1, "name": "initial"},
        {"version": 2, "name": "ab_bucket"},
        {"version": 3, "name": "user_decay"},
        {"version": 4, "name": "explained_lists"},
    ]
    assert read(wh, "select ab_bucket('s', 'u1') as b") == [{"b": ab_bucket("s", "u1")}]
    if warehouse_target.schema_name:  # every table in the configured schema
        with psycopg.connect(warehouse_target.url) as con:
            in_public = con.execute(
                "select count(*) from information_schema.tables where table_schema = 'public'"
            ).fetchone()
        assert in_public == (0,)


def test_a_duckdb_warehouse_of_the_release_before_migrations_is_upgraded(tmp_path):
    # the released schema.sql is migration 1, word for word: build a warehouse with it
    path = tmp_path / "released.duckdb"
    released = (SQL_DIR / "warehouse/migrations/001_initial.sql").read_text()
    with duckdb.connect(str(path)) as con:
        for statement in split_statements(released):
            con.execute(statement)
        con.execute(
            "insert into recommendations values ('2024-01-01', 'a', 1, 'x', 0.5, 'model', 'ease',"
            " 'run-0', now())"
        )
    wh = open_url(f"duckdb:///{path}")
    wh.ensure_schema()
    assert wh.schema_version() == 4
    assert read(wh, "select user_id, item_id, run_id from recommendations_latest") == [
        {"user_id": "a", "item_id": "x", "run_id": "run-0"}
    ]


def test_ab_buckets_agree_between_duckdb_postgresql_and_python(tmp_path, postgres_url):
    ids = (
        [str(i) for i in range(3000)]
        + [f"user-{i}" for i in range(1000)]
        + [
            "",
            "é",
            "ユーザー",
            "o'brien",
            "a;b",
            "x" * 200,
        ]
    )
    ids_table = pa.table({"user_id": ids})
    expected = {u: ab_bucket("exp-2024", u) for u in ids}
    assert set(expected.values()) == set(range(100))  # every bucket is used
    duck = open_url(f"duckdb:///{tmp_path}/wh.duckdb")
    duck.ensure_schema()
    with duckdb.connect(str(duck.path)) as con:
        con.register("ids", ids_table)
        from_duckdb = dict(
            con.execute(
                "select user_id, ab_bucket($salt, user_id) from ids", {"salt": "exp-2024"}
            ).fetchall()
        )
    pg = open_url(postgres_url)
    pg.ensure_schema()
    with psycopg.connect(postgres_url) as con:
        from_postgres = dict(
            con.execute(
                "select u, ab_bucket(%s, u) from unnest(%s::text[]) as u", ["exp-2024", ids]
            ).fetchall()
        )
    assert from_duckdb == expected
    assert from_postgres == expected
    # the salt matters: another experiment splits users differently
    assert sum(ab_bucket("other", u) == b for u, b in expected.items()) < len(ids) * 0.05


def _reader(target, stop, seen, problems, k, max_reads=5000, max_seconds=60):
    """Query recommendations_latest on its own connection until told to stop."""
    query = (
        "select user_id, count(*) as n, count(distinct as_of_date) as n_dates, "
        "min(as_of_date) as as_of_date, count(distinct run_id) as n_runs, min(run_id) as run_id "
        "from recommendations_latest group by user_id"
    )
    if not target.postgresql:
        con = duckdb.connect(target.url[len("duckdb:///") :])
        run = lambda: con.execute(query).fetchall()  # noqa: E731
    else:
        con = psycopg.connect(target.url, autocommit=True, **target.connect_options())
        run = lambda: con.execute(query).fetchall()  # noqa: E731
    deadline = time.monotonic() + max_seconds
    try:
        for _ in range(max_reads):
            if stop.is_set() or time.monotonic() > deadline:
                break
            rows = run()
            runs = {r[5] for r in rows}
            dates = {r[3] for r in rows}
            if not rows or len(runs) != 1 or len(dates) != 1:
                problems.append(f"mixed or empty snapshot: runs {runs}, dates {dates}")
            for user, n, n_dates, _, n_runs, _ in rows:
                if n != k or n_dates != 1 or n_runs != 1:
                    problems.append(f"user {user}: {n} rows, {n_dates} dates, {n_runs} runs")
            seen.append((runs.pop() if len(runs) == 1 else None, len(rows)))
    finally:
        con.close()


def test_readers_see_complete_old_or_complete_new_lists_during_publishes(warehouse_target):
    k, n_users = 10, 3000
    wh = warehouse_target.open(history_days=2)
    wh.ensure_schema()
    users = [f"u{i}" for i in range(n_users)]
    plan = []  # (as_of_date, run_id, users): new dates, reruns of a date, fewer users
    for step in range(6):
        day = date(2024, 1, 1) + timedelta(days=step // 2)
        plan.append((day, f"run-{step}", users[: n_users - 500 * (step % 2)]))
    first_day, first_run, first_users = plan[0]
    wh.publish(first_day, lists(first_users, [f"i{r}" for r in range(k)]), first_run, "ease")
    stop, seen, problems = threading.Event(), [], []
    reader = threading.Thread(target=_reader, args=(warehouse_target, stop, seen, problems, k))
    reader.start()
    try:
        for step, (day, run_id, step_users) in enumerate(plan[1:], start=1):
            items = [f"i{step * 7 + r}" for r in range(k)]
            assert wh.publish(day, lists(step_users, items), run_id, "ease") is True
        n_before = len(seen)
        deadline = time.monotonic() + 30
        while len(seen) < n_before + 2 and time.monotonic() < deadline and reader.is_alive():
            time.sleep(0.01)
    finally:
        stop.set()
        reader.join(timeout=60)
    assert not reader.is_alive()
    assert problems == []
    sizes = {run_id: len(u) for _, run_id, u in plan}
    assert all(n == sizes[run_id] for run_id, n in seen)  # every snapshot complete
    assert seen[-1][0] == "run-5"
    assert len({run_id for run_id, _ in seen}) >= 2


def test_the_postgres_schema_comes_from_the_config_and_is_checked(postgres_url):
    wh = open_url(postgres_url, schema_name="recs_v2")
    wh.ensure_schema()
    wh.publish(date(2024, 1, 1), lists(["a"], ["x"]), "run-1", "ease")
    with psycopg.connect(postgres_url) as con:
        assert con.execute("select count(*) from recs_v2.recommendations_latest").fetchone() == (1,)
        assert con.execute(
            "select count(*) from information_schema.tables where table_schema = 'public' "
            "and table_name = 'recommendations'"
        ).fetchone() == (0,)
    assert read(wh, "select item_id from recommendations_latest") == [{"item_id": "x"}]


@pytest.mark.parametrize(
    "bad", ['recs"; drop table recommendations; --', "a;b", "a'b", "a.b", "a b", "1abc", ""]
)
def test_identifiers_with_quotes_or_semicolons_are_refused(bad, postgres_url):
    with pytest.raises(ValueError, match="not a plain SQL identifier"):
        WarehouseConfig(schema_name=bad)
    with pytest.raises(ValueError, match="not a plain SQL identifier"):
        DecayrecConfig.model_validate({"warehouse": {"schema_name": bad}})
    # settings that skipped validation are checked again by the writer
    with pytest.raises(ConfigError, match="not a plain SQL identifier"):
        unchecked = WarehouseConfig.model_construct(schema_name=bad)
        configured_warehouse(DecayrecConfig.model_construct(warehouse=unchecked), postgres_url)


def test_values_are_bound_never_pasted(warehouse):
    warehouse.publish(date(2024, 1, 1), lists(["a", "o'brien"], ["x"]), "run-1", "ease")
    hostile = "a' or '1'='1"
    assert read(warehouse, "select * from recommendations where user_id = $u", {"u": hostile}) == []
    rows = read(
        warehouse, "select item_id from recommendations where user_id = $u", {"u": "o'brien"}
    )
    assert rows == [{"item_id": "x"}]


def test_unreachable_postgres_fails_clearly_after_the_retries(postgres_server):
    from decayrec_tools.pg_local import free_port

    url = f"postgresql://decayrec:{postgres_server.password}@127.0.0.1:{free_port()}/nowhere"
    wh = open_url(url, connect_retries=2, retry_backoff_seconds=0.2)
    started = time.monotonic()
    with pytest.raises(WarehouseUnavailable) as info:
        wh.ensure_schema()
    elapsed = time.monotonic() - started
    message = str(info.value)
    assert "is unreachable: 3 connection attempts failed" in message
    assert "Connection refused" in message or "connection" in message.lower()
    assert elapsed >= 0.2 + 0.4  # the backoff waited before each retry
    assert postgres_server.password not in message
    assert "decayrec:***@127.0.0.1" in message


def test_a_connection_lost_during_a_publish_writes_nothing_and_is_retried(postgres_url):
    from decayrec.warehouse.postgres import PUBLISH_LOCK
    from tasks import PERMANENT_ERRORS

    wh = open_url(postgres_url)
    wh.ensure_schema()
    wh.publish(date(2024, 1, 1), lists(["a", "b"], ["x", "y"]), "run-1", "ease")
    before = all_rows(wh)
    errors = []

    def publish():
        try:
            wh.publish(date(2024, 1, 2), lists(["a", "b"], ["p", "q"]), "run-2", "ease")
        except Exception as exc:
            errors.append(exc)

    with psycopg.connect(postgres_url, autocommit=True) as holder:
        # hold the publish lock: the publisher waits inside its transaction
        holder.execute("select pg_advisory_lock(%s)", [PUBLISH_LOCK])
        publisher = threading.Thread(target=publish)
        publisher.start()
        deadline, pid = time.monotonic() + 30, None
        while pid is None and time.monotonic() < deadline:
            row = holder.execute(
                "select pid from pg_stat_activity where application_name = 'decayrec' "
                "and wait_event_type = 'Lock'"
            ).fetchone()
            pid = row[0] if row else time.sleep(0.02)
        assert pid is not None, "the publisher never waited for the lock"
        holder.execute("select pg_terminate_backend(%s)", [pid])
        publisher.join(timeout=30)
    assert len(errors) == 1 and isinstance(errors[0], WarehouseConnectionLost)
    assert not isinstance(errors[0], PERMANENT_ERRORS)  # the export task retries it
    assert "***" in str(errors[0]) or "terminat" in str(errors[0])
    assert all_rows(wh) == before
    assert wh.publish(date(2024, 1, 2), lists(["a", "b"], ["p", "q"]), "run-3", "ease") is True


def test_the_password_never_shows_in_urls_reprs_or_errors(postgres_server, postgres_url):
    password = postgres_server.password
    assert password in postgres_url
    wh = open_url(postgres_url)
    assert password not in wh.url and password not in repr(wh) and "***" in wh.url
    assert mask_url(postgres_url) == wh.url
    wrong = open_url(postgres_url.replace(password, password + "-wrong"), connect_retries=0)
    with pytest.raises(WarehouseUnavailable) as info:
        wrong.ensure_schema()
    assert "password authentication failed" in str(info.value)
    assert password not in str(info.value)
    wh.ensure_schema()
    with pytest.raises(WarehouseError) as info:
        wh.query("select * from no_such_table")
    assert "no_such_table" in str(info.value) and password not in str(info.value)
    # a config refuses a URL with a password, and does not echo it
    with pytest.raises(ValueError) as info:
        DecayrecConfig(warehouse_url=postgres_url)
    assert password not in str(info.value) and "DECAYREC_WAREHOUSE_URL" in str(info.value)


def test_unknown_warehouse_urls_are_refused():
    with pytest.raises(WarehouseError, match="unsupported warehouse URL scheme 'mysql'"):
        open_url("mysql://x")
    with pytest.raises(WarehouseError, match="duckdb:///path/file.duckdb"):
        open_url("duckdb:///")
