"""A warehouse password, in any form a URL can hold it, is refused in a config and masked
wherever the URL is shown; `decayrec run` against PostgreSQL shows it nowhere."""

import json

import psycopg
import pytest

from decayrec.cli import main
from decayrec.config import DecayrecConfig, mask_url, url_password, url_passwords
from decayrec.warehouse.base import redact
from tests.ops_data import tiny_events

# (URL, its passwords as written, the masked URL)
WITH_PASSWORDS = [
    ("postgresql://u:hunter2@db:5432/recs", ["hunter2"], "postgresql://u:***@db:5432/recs"),
    ("postgresql://:hunter2@db/recs", ["hunter2"], "postgresql://:***@db/recs"),
    ("postgresql://u:se/cr/et@db/recs", ["se/cr/et"], "postgresql://u:***@db/recs"),
    ("postgresql://u:s@c:r@t@db:5432/recs", ["s@c:r@t"], "postgresql://u:***@db:5432/recs"),
    ("postgresql://u:s%40c%2Fr%3At@db/recs", ["s%40c%2Fr%3At"], "postgresql://u:***@db/recs"),
    (
        "postgresql://u:se?cr#et@db/recs?sslmode=require",
        ["se?cr#et"],
        "postgresql://u:***@db/recs?sslmode=require",
    ),
    ("postgresql://db/recs?password=hunter2", ["hunter2"], "postgresql://db/recs?password=***"),
    (
        "postgresql://db/recs?user=u&PassWord=s%26cret&sslmode=require",
        ["s%26cret"],
        "postgresql://db/recs?user=u&PassWord=***&sslmode=require",
    ),
    (
        "postgresql://u:one@db/recs?application_name=a@b&sslpassword=two",
        ["one", "two"],
        "postgresql://u:***@db/recs?application_name=a@b&sslpassword=***",
    ),
    (
        "postgresql:///recs?host=/var/run/postgresql&PASSWORD=hunter2",
        ["hunter2"],
        "postgresql:///recs?host=/var/run/postgresql&PASSWORD=***",
    ),
]

WITHOUT_PASSWORDS = [
    "postgresql://u@db:5432/recs",
    "postgresql://db:5432/recs",
    "postgresql://u:@db/recs",
    "postgresql://user@tenant@db:5432/recs",
    "postgresql://db/recs?application_name=a@b&passfile=/home/u/.pgpass",
    "duckdb:////srv/decayrec/warehouse.duckdb",
]


@pytest.mark.parametrize(("url", "passwords", "masked"), WITH_PASSWORDS)
def test_every_password_form_is_found_masked_and_refused(url, passwords, masked):
    assert url_passwords(url) == passwords
    assert url_password(url) == passwords[0]
    assert mask_url(url) == masked
    for password in passwords:
        assert password not in mask_url(url)
    with pytest.raises(ValueError) as info:
        DecayrecConfig(warehouse_url=url)
    message = str(info.value)
    assert f"warehouse_url {masked} holds a password" in message
    assert "DECAYREC_WAREHOUSE_URL" in message
    for password in passwords:
        assert password not in message
    # and a flow parameter is a DecayrecConfig too: a dict holding the URL is refused
    with pytest.raises(ValueError):
        DecayrecConfig.model_validate({"warehouse_url": url})


@pytest.mark.parametrize("url", WITHOUT_PASSWORDS)
def test_urls_without_a_password_are_kept_as_they_are(url):
    assert url_passwords(url) == [] and url_password(url) is None
    assert mask_url(url) == url
    assert DecayrecConfig(warehouse_url=url).warehouse_url == url


def test_redact_removes_raw_and_percent_decoded_passwords():
    url = "postgresql://u:s%40cret@db/recs?sslpassword=k3y"
    text = f"connecting to {url} failed: password 's@cret' rejected, key k3y; s%40cret"
    out = redact(text, url)
    assert "s@cret" not in out and "s%40cret" not in out and "k3y" not in out
    assert "postgresql://u:***@db/recs?sslpassword=***" in out


def test_cli_run_into_postgresql_reports_and_records_no_password(
    tmp_path, prefect_harness, postgres_server, postgres_url, monkeypatch, capfd
):
    password = postgres_server.password
    assert password in postgres_url
    monkeypatch.setenv("DECAYREC_WAREHOUSE_URL", postgres_url)
    data_dir = tmp_path / "data"
    argv = ["run", "--events", str(tiny_events(tmp_path)), "--as-of", "2024-01-01"]
    code = main([*argv, "--k", "3", "--data-dir", str(data_dir)])
    captured = capfd.readouterr()
    assert code == 0, captured.err[-2000:]
    assert mask_url(postgres_url) in captured.out  # the report names the warehouse, masked
    assert "list of user u0:" in captured.out  # the sample list (scores rounded in Python)
    assert password not in captured.out and password not in captured.err

    with psycopg.connect(postgres_url) as con:
        runs = con.execute(
            "select status, params::text, metrics::text, error from recommendation_runs"
        ).fetchall()
        n_rows = con.execute("select count(*) from recommendations_latest").fetchone()[0]
    assert [r[0] for r in runs] == ["succeeded"] and n_rows == 90
    assert password not in json.dumps(runs, default=str)

    files = [*(data_dir / "models").glob("*/meta.json"), *(data_dir / "runs").rglob("*.json")]
    assert any(f.name == "meta.json" for f in files)
    for path in files:
        assert password not in path.read_text(), path
