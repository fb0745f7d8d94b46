"""The warehouse: where the lists and the run history are published, and the one door to
it, `configured_warehouse(config)`.

A warehouse is chosen by URL: `duckdb:///path/file.duckdb` is the embedded default
(decayrec.warehouse.duckdb_warehouse), `postgresql://user@host:port/db` the real warehouse
(decayrec.warehouse.postgres). Both hold the same tables and views, created and upgraded
by the numbered migrations (decayrec.warehouse.migrations), and publish through the same
steps (decayrec.warehouse.base, with the run outcome and the errors in
decayrec.warehouse.errors). decayrec.warehouse.queries runs the documented queries of
`sql/queries/`.
"""

from decayrec.config import DecayrecConfig, WarehouseConfig
from decayrec.warehouse.base import Warehouse
from decayrec.warehouse.duckdb_warehouse import DuckDBWarehouse
from decayrec.warehouse.errors import WarehouseError

POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")


def configured_warehouse(config: DecayrecConfig, url: str | None = None) -> Warehouse:
    """The warehouse a config points at (URL from the config, a Prefect Secret block or the
    environment; see DecayrecConfig.resolved_warehouse_url) with its settings
    (config.warehouse: schema_name, history, retries, timeouts). The one way code opens a
    warehouse. `url`, when given, replaces the config's URL (a URL typed on the command
    line, which may hold a password and so is never stored in a config); the settings
    still come from the config."""
    return _open(url or config.resolved_warehouse_url, config.warehouse)


def _open(url: str, settings: WarehouseConfig) -> Warehouse:
    """The warehouse of a URL: duckdb:///path/file.duckdb or postgresql://user:pw@host/db."""
    scheme = url.split(":", 1)[0].lower()
    if scheme == "duckdb":
        return DuckDBWarehouse(url, settings)
    if scheme in POSTGRES_SCHEMES:
        from decayrec.warehouse.postgres import PostgresWarehouse  # psycopg: only when used

        return PostgresWarehouse(url, settings)
    raise WarehouseError(
        f"unsupported warehouse URL scheme {scheme!r} (expected duckdb:///path/file.duckdb "
        "or postgresql://user@host:port/database)"
    )
