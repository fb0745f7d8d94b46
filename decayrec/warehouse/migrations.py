"""The warehouses' numbered migrations: `sql/<folder>/migrations/NNN_name.sql`, applied in
order; `schema_migrations` records which ones a warehouse has."""

import re
from dataclasses import dataclass

from decayrec.sqlfiles import SQL_DIR, split_statements
from decayrec.warehouse.errors import WarehouseError

_MIGRATION_FILE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")

APPLIED_VERSIONS = "select version from schema_migrations"
SCHEMA_VERSION = "select coalesce(max(version), 0) from schema_migrations"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: list[str]


def migrations(folder: str) -> list[Migration]:
    """The migrations of `sql/<folder>/migrations/` (files NNN_name.sql), in order."""
    found = []
    for path in sorted((SQL_DIR / folder / "migrations").glob("*.sql")):
        m = _MIGRATION_FILE.match(path.name)
        if not m:
            raise WarehouseError(f"{path}: migration files are named NNN_name.sql")
        found.append(Migration(int(m.group(1)), m.group(2), split_statements(path.read_text())))
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise WarehouseError(f"sql/{folder}/migrations: versions must run 1, 2, 3...: {versions}")
    return found


def pending_migrations(folder: str, applied: set[int], up_to: int | None) -> list[Migration]:
    """The migrations of `folder` not yet applied, up to version `up_to` (None: all)."""
    return [
        m
        for m in migrations(folder)
        if m.version not in applied and (up_to is None or m.version <= up_to)
    ]
