"""The SQL that downstream users run: `sql/queries/<name>.sql`, one documented query each.

Each file opens with a header comment: what it returns, then a `Parameters:` section with
one line per parameter,

    --   $name  what it is (default: VALUE)

(no default: required). Values are passed as text and bound as parameters (the queries
cast them); `decayrec sql NAME --param name=value` runs a query and prints a table, CSV
or JSON (`format_result`). Ids are text; queries that list users or items order them
by length, then as text: numeric ids come out in numeric order (1, 2, 10, 100).
The same file runs on DuckDB and on PostgreSQL (the PostgreSQL writer turns `$name` into
psycopg's `%(name)s`).
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from decayrec.sqlfiles import SQL_DIR
from decayrec.warehouse.base import Warehouse

QUERY_DIR = SQL_DIR / "queries"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_PARAM_LINE = re.compile(
    r"^--\s+\$(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s+(?P<text>.*?)\s*(?:\(default:\s*(?P<default>.*)\))?\s*$"
)


class QueryError(ValueError):
    pass


@dataclass(frozen=True)
class QueryParam:
    name: str
    description: str
    default: str | None  # None: required


@dataclass(frozen=True)
class Query:
    name: str
    path: Path
    text: str
    header: str
    params: list[QueryParam]

    @property
    def summary(self) -> str:
        """What the query returns, in full: the header's lines before `Returns:`,
        `Parameters:` or `Dialects:`, as one paragraph."""
        lines = []
        for line in self.header.splitlines():
            if re.match(r"^(returns|parameters|dialects):", line.strip(), re.I):
                break
            lines.append(line.strip())
        return " ".join(" ".join(lines).split())


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1]
    return value


def parse_query(path: Path) -> Query:
    text = path.read_text()
    header_lines = []
    for line in text.splitlines():
        if not line.startswith("--"):
            break
        header_lines.append(line)
    params, in_params = [], False
    for line in header_lines:
        body = line[2:].strip()
        if body.lower().startswith("parameters:"):
            in_params = True
            continue
        if in_params:
            m = _PARAM_LINE.match(line)
            if m:
                default = m.group("default")
                params.append(
                    QueryParam(
                        m.group("name"),
                        m.group("text"),
                        None if default is None else _unquote(default),
                    )
                )
            elif not line.startswith("--   "):
                in_params = False
    used = set(re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", _strip_comments(text)))
    declared = {p.name for p in params}
    if used != declared:
        raise QueryError(
            f"{path}: the header's parameters {sorted(declared)} differ from the ones the query "
            f"uses {sorted(used)}"
        )
    header = "\n".join(line[2:].strip() for line in header_lines)
    return Query(path.stem, path, text, header, params)


def _strip_comments(text: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in text.splitlines())


def list_queries() -> list[Query]:
    return [parse_query(p) for p in sorted(QUERY_DIR.glob("*.sql"))]


def load_query(name: str) -> Query:
    if not _NAME.match(name):
        raise QueryError(f"query name {name!r}: lowercase letters, digits and '_' only")
    path = QUERY_DIR / f"{name}.sql"
    if not path.exists():
        known = ", ".join(q.name for q in list_queries())
        raise QueryError(f"no query named {name!r} in {QUERY_DIR} (known: {known})")
    return parse_query(path)


def bind(query: Query, given: dict[str, str]) -> dict[str, str]:
    """The parameter values of a run: the given ones, then the defaults."""
    declared = {p.name: p for p in query.params}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise QueryError(
            f"query {query.name} has no parameter {', '.join(unknown)} "
            f"(it takes: {', '.join(declared) or 'none'})"
        )
    values = {}
    for p in query.params:
        if p.name in given:
            values[p.name] = given[p.name]
        elif p.default is not None:
            values[p.name] = p.default
        else:
            raise QueryError(f"query {query.name} needs --param {p.name}=... ({p.description})")
    return values


def run_query(warehouse: Warehouse, name: str, given: dict[str, str] | None = None) -> pa.Table:
    query = load_query(name)
    return warehouse.query(query.text, bind(query, given or {}))


def parse_params(pairs: list[str]) -> dict[str, str]:
    """`["k=v", ...]` from the command line."""
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise QueryError(f"--param takes name=value, got {pair!r}")
        out[name.strip().lstrip("$")] = value
    return out


class NoWarehouse(QueryError):
    """The warehouse a query would read does not exist yet."""


def check_readable(warehouse: Warehouse) -> None:
    """Raise NoWarehouse, one paragraph, when the warehouse holds no lists yet (a DuckDB
    file that does not exist is never created by reading it)."""
    path = getattr(warehouse, "path", None)
    missing = path is not None and not path.is_file()
    if not missing:
        found = warehouse.query(
            "select count(*) as n from information_schema.tables "
            "where table_name = 'recommendations' and table_schema = current_schema()"
        )
        missing = found["n"][0].as_py() == 0
    if missing:
        raise NoWarehouse(
            f"there is no warehouse at {warehouse.url} yet: `decayrec run` creates it with "
            "the first published lists. To read another one, pass --warehouse URL, "
            "--data-dir DIR (its warehouse.duckdb) or --config FILE, or set "
            "DECAYREC_WAREHOUSE_URL; `decayrec sql` resolves the warehouse as `decayrec run` "
            "does (warehouse_url, then warehouse.secret_block, then the environment, then "
            "<data_dir>/warehouse.duckdb)."
        )


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def format_table(table: pa.Table, max_rows: int | None = None) -> str:
    """A plain-text table: a header, a rule, one line per row, then the row count."""
    rows = table.to_pylist()
    shown = rows if max_rows is None else rows[:max_rows]
    names = table.column_names
    cells = [[_cell(row[n]) for n in names] for row in shown]
    widths = [max([len(n), *(len(c[i]) for c in cells)]) for i, n in enumerate(names)]
    numeric = [
        pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
        for t in table.schema.types
    ]

    def line(values: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    out = [line(names), line(["-" * w for w in widths])]
    out += [line(c) for c in cells]
    more = f" ({len(rows) - len(shown)} not shown)" if len(shown) < len(rows) else ""
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''}){more}")
    return "\n".join(out)


FORMATS = ("table", "csv", "json")


def _plain(value: Any) -> Any:
    """A value as JSON holds it: dates and times in ISO 8601, lists element by element."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict | str | int | float | bool) or value is None:
        return value
    return str(value)


def format_result(table: pa.Table, fmt: str = "table", max_rows: int | None = None) -> str:
    """A query's result as a plain-text table (`format_table`), CSV (a header, then one
    line per row; lists as JSON arrays) or JSON (an array of objects)."""
    if fmt == "table":
        return format_table(table, max_rows)
    rows = table.to_pylist()[:max_rows]
    if fmt == "json":
        return json.dumps([{k: _plain(v) for k, v in row.items()} for row in rows], indent=2)
    if fmt != "csv":
        raise QueryError(f"unknown format {fmt!r} (one of: {', '.join(FORMATS)})")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(table.column_names)
    for row in rows:
        writer.writerow(
            json.dumps(_plain(v)) if isinstance(v, list | dict) else _plain(v) for v in row.values()
        )
    return out.getvalue().rstrip("\n")
