"""Access to the SQL files in `sql/` and to DuckDB connections set up the same way."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import duckdb

from decayrec.config import check_column_name


def _sql_dir() -> Path:
    """The SQL folder: DECAYREC_SQL_DIR when set; else the checkout's top-level sql/ (a
    source tree or an editable install); else the copy a wheel ships as decayrec/sql/."""
    if os.environ.get("DECAYREC_SQL_DIR"):
        return Path(os.environ["DECAYREC_SQL_DIR"])
    package = Path(__file__).resolve().parent
    checkout = package.parent / "sql"
    return checkout if (checkout / "lake").is_dir() else package / "sql"


SQL_DIR = _sql_dir()


@cache
def sql(name: str) -> str:
    """The text of `sql/<name>.sql`."""
    path = SQL_DIR / f"{name}.sql"
    if not path.exists():
        raise FileNotFoundError(f"SQL file {path} is missing (DECAYREC_SQL_DIR={SQL_DIR})")
    return path.read_text()


def quote_ident(name: str, what: str = "identifier") -> str:
    """Quote an identifier that came from configuration, after checking it is a plain name."""
    check_column_name(name, what)
    return '"' + name + '"'


def escape_ident(name: str) -> str:
    """Quote an identifier read from a data file's header (not from configuration)."""
    return '"' + name.replace('"', '""') + '"'


def connect(path: str | Path | None = None, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection in UTC; `path=None` gives an in-memory database. Only a
    connection that may write creates the file's folder."""
    if path is None:
        con = duckdb.connect()
    else:
        if not read_only:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(str(path), read_only=read_only)
    con.execute("set TimeZone = 'UTC'")
    return con


def run_script(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Run every statement of a DDL file (see :func:`split_statements`)."""
    for statement in split_statements(sql(name)):
        con.execute(statement)


def split_statements(text: str) -> list[str]:
    """The statements of a SQL script: split on ';' outside quotes, comments and $$ bodies;
    comment lines dropped."""
    statements, current, i = [], [], 0
    quote: str | None = None
    while i < len(text):
        ch = text[i]
        if quote is None and text.startswith("--", i):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            continue
        if quote is None and text.startswith("$$", i):
            quote = "$$"
            current.append("$$")
            i += 2
            continue
        if quote == "$$" and text.startswith("$$", i):
            quote = None
            current.append("$$")
            i += 2
            continue
        if quote is None and ch in ("'", '"'):
            quote = ch
        elif quote == ch and ch in ("'", '"'):
            quote = None
        if quote is None and ch == ";":
            statements.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
        i += 1
    statements.append("".join(current).strip())
    return [s for s in statements if s]
