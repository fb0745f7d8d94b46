"""One owner of the lake's temp tables.

The lake's SQL hands intermediate results from one statement to the next in DuckDB temp
tables and views (`source_events`, `type_params`, `user_memory`, `interactions`, `truth`,
`training_events`, `parsed_batch`, ...). Left on a connection they are hidden globals: a
query reads whatever an earlier call happened to leave there. Here a :class:`LakeSession`
owns the connection, and every temp object is made inside a :class:`LakeBuild`:

    with LakeSession.connect(config.lake_path) as lake:
        with lake.build() as build:
            build.view("source_events", "from events")
            matrix = compute_features(build, config, as_of)

A build creates each object with `create or replace`, remembers it, and drops all of
them when it ends (also when it raises); a session holds one build at a time, and a build
starts only on a connection with no temp object left, so SQL reads only what its own
build made and a second build cannot see the first one's tables.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any, Self

import duckdb

from decayrec.sqlfiles import connect

# every temp object of a connection (DuckDB keeps them in the catalog `temp`)
_TEMP_OBJECTS = """
select 'table' as kind, table_name as name from duckdb_tables() where temporary
union all
select 'view', view_name from duckdb_views() where temporary and not internal
union all
select 'macro', function_name from duckdb_functions()
where database_name = 'temp' and not internal
order by all
"""


class _Closing:
    """`with x:` closes x at the end (also when the block raises)."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class LakeSession(_Closing):
    """A DuckDB connection to the lake (owned: closed with the session) and the builds
    that make temp objects on it, one at a time."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self._build: LakeBuild | None = None

    @classmethod
    def connect(cls, path: str | Path | None = None, read_only: bool = False) -> LakeSession:
        """A session on the DuckDB file at `path` (None: an in-memory database)."""
        return cls(connect(path, read_only=read_only))

    def build(self) -> LakeBuild:
        """A new build (open from here; `with` ends it). Refused while another is open."""
        if self._build is not None:
            raise RuntimeError("a lake build is open on this session: end it first")
        left = self.con.sql(_TEMP_OBJECTS).fetchall()
        if left:
            names = ", ".join(f"{kind} {name}" for kind, name in left)
            raise RuntimeError(f"temp objects made outside a lake build are left: {names}")
        self._build = LakeBuild(self)
        return self._build

    def close(self) -> None:
        if self._build is not None:
            self._build.close()
        self.con.close()

    def _ended(self, build: LakeBuild) -> None:
        if self._build is build:
            self._build = None


class LakeBuild(_Closing):
    """The temp objects one computation makes on its session's connection, dropped
    together when it ends. Queries go through :meth:`execute` and :meth:`sql` (those of
    the connection)."""

    def __init__(self, session: LakeSession) -> None:
        self.session = session
        self.con = session.con
        self._made: dict[str, str] = {}  # name -> kind, in the order made
        self._arrow: list[str] = []
        self.closed = False

    def _make(self, kind: str, name: str) -> None:
        if self.closed:
            raise RuntimeError(f"the lake build has ended: cannot make {kind} {name}")
        if not name.isidentifier():
            raise ValueError(f"temp {kind} name {name!r} is not a plain identifier")
        made = self._made.get(name)
        if made is not None and made != kind:
            raise ValueError(f"{name} is already a temp {made} of this build, not a {kind}")
        self._made[name] = kind

    def table(self, name: str, query: str, params: Any = None) -> None:
        """`create or replace temp table <name> as <query>`."""
        self._make("table", name)
        self.con.execute(f"create or replace temp table {name} as {query}", params)

    def empty_table(self, name: str, columns: str) -> None:
        """`create or replace temp table <name> (<columns>)`."""
        self._make("table", name)
        self.con.execute(f"create or replace temp table {name} ({columns})")

    def view(self, name: str, query: str, params: Any = None) -> None:
        """`create or replace temp view <name> as <query>`."""
        self._make("view", name)
        self.con.execute(f"create or replace temp view {name} as {query}", params)

    def macro(self, name: str, statement: str) -> None:
        """Run `statement`, a `create or replace temp macro <name>(...)`."""
        self._make("macro", name)
        self.con.execute(statement)

    def made_by_duckdb(self, name: str) -> None:
        """Own the temp table `name` that a DuckDB statement creates itself (the rejects
        tables of read_csv): dropped now if left, and when the build ends."""
        self._make("table", name)
        self.con.execute(f"drop table if exists temp.main.{name}")

    def arrow(self, name: str, data: Any) -> None:
        """Register an Arrow table (or a dict of arrays) as the view `name`."""
        if self.closed:
            raise RuntimeError(f"the lake build has ended: cannot register {name}")
        self.con.register(name, data)
        self._arrow.append(name)

    def execute(self, query: str, params: Any = None) -> duckdb.DuckDBPyConnection:
        return self.con.execute(query, params)

    def executemany(self, query: str, rows: Any) -> duckdb.DuckDBPyConnection:
        return self.con.executemany(query, rows)

    def sql(self, query: str, params: Any = None) -> duckdb.DuckDBPyRelation:
        return self.con.sql(query, params=params)

    def names(self) -> list[str]:
        """The temp objects this build has made, in order."""
        return list(self._made) + self._arrow

    def close(self) -> None:
        """Drop every temp object of the build (last made first); idempotent."""
        if self.closed:
            return
        self.closed = True
        try:
            for name in reversed(self._arrow):
                self.con.unregister(name)
            for name, kind in reversed(self._made.items()):
                self.con.execute(f"drop {kind} if exists temp.main.{name}")
        finally:
            self._made.clear()
            self._arrow.clear()
            self.session._ended(self)
