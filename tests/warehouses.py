"""The warehouses tests publish to, each opened through the one door
(decayrec.warehouse.configured_warehouse)."""

from dataclasses import dataclass
from typing import Any

from decayrec.config import DecayrecConfig, WarehouseConfig
from decayrec.warehouse import configured_warehouse
from decayrec.warehouse.base import Warehouse

SCHEMA = "recs"  # the non-public PostgreSQL schema of the schema_name runs


def open_url(url: str, **settings: Any) -> Warehouse:
    """The warehouse of `url` with these warehouse settings (config.warehouse)."""
    return configured_warehouse(DecayrecConfig(warehouse=WarehouseConfig(**settings)), url)


@dataclass(frozen=True)
class WarehouseTarget:
    """An empty warehouse: its URL (password included) and the PostgreSQL schema of its
    tables (None: the server's default, public)."""

    url: str
    schema_name: str | None = None

    @property
    def postgresql(self) -> bool:
        return self.url.startswith("postgresql")

    def settings(self, **update: Any) -> WarehouseConfig:
        return WarehouseConfig(schema_name=self.schema_name, **update)

    def open(self, **settings: Any) -> Warehouse:
        return open_url(self.url, schema_name=self.schema_name, **settings)

    def connect_options(self) -> dict[str, str]:
        """psycopg.connect keywords of a reader of this warehouse's schema."""
        return {"options": f"-c search_path={self.schema_name}"} if self.schema_name else {}

    def publishing(self, config: DecayrecConfig, env: Any) -> DecayrecConfig:
        """`config` publishing here: a DuckDB URL in the config; a PostgreSQL URL (it holds
        a password, which a config refuses) through $DECAYREC_WAREHOUSE_URL, set on `env`
        (a pytest MonkeyPatch), and the schema in config.warehouse."""
        data = config.model_dump()
        if self.postgresql:
            env.setenv("DECAYREC_WAREHOUSE_URL", self.url)
            data["warehouse"] = {**data["warehouse"], "schema_name": self.schema_name}
        else:
            data["warehouse_url"] = self.url
        return DecayrecConfig.model_validate(data)
