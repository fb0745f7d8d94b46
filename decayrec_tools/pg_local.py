"""A throwaway PostgreSQL server for tests, benchmarks and trying decayrec out.

    with LocalPostgres() as pg:
        url = pg.create_database("decayrec")   # postgresql://decayrec:<password>@127.0.0.1:<port>/decayrec

`initdb` into a fresh temporary directory, `pg_ctl start` listening on 127.0.0.1 at a
free port with its unix socket in that directory, a login role with a random password;
stopped and deleted on exit. PostgreSQL refuses to run as root, so as root the server runs
as the `postgres` user (runuser). The binaries are found on PATH, else in
/usr/lib/postgresql/<version>/bin (Debian's package: `apt-get install postgresql`).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

ROLE = "decayrec"


class LocalPostgresError(RuntimeError):
    pass


def postgres_bindir() -> Path:
    """The directory holding initdb and pg_ctl."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(os.path.realpath(on_path)).parent
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if versions:
        return versions[-1].parent
    raise LocalPostgresError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH nor in "
        "/usr/lib/postgresql/*/bin: install them with `apt-get install -y postgresql` "
        "(scripts/setup.sh does)"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalPostgres:
    def __init__(self, fast: bool = True) -> None:
        """`fast` turns off fsync and synchronous commit (fine for throwaway data)."""
        self.fast = fast
        self.password = "pw-" + secrets.token_hex(12)
        self.port = 0
        self.dir: Path | None = None
        self._started = False

    # as root, the server and its tools run as the postgres user
    def _as_server_user(self, argv: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return argv
        runuser = shutil.which("runuser")
        if runuser:
            return [runuser, "-u", "postgres", "--", *argv]
        return ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(map(_shell_quote, argv))]

    def _run(self, argv: list[str], timeout: float = 120) -> None:
        result = subprocess.run(
            self._as_server_user(argv), capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            log = ""
            if self.dir and (self.dir / "server.log").exists():
                log = (self.dir / "server.log").read_text()[-2000:]
            raise LocalPostgresError(
                f"{' '.join(argv[:2])} failed ({result.returncode}): "
                f"{(result.stderr or result.stdout)[-2000:]}{log}"
            )

    def start(self) -> LocalPostgres:
        bindir = postgres_bindir()
        base = tempfile.gettempdir()
        if os.geteuid() == 0 and not _world_traversable(Path(base)):
            base = "/tmp"  # the postgres user must reach the data and socket directory
        self.dir = Path(tempfile.mkdtemp(prefix="decayrec-pg-", dir=base))
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        data = self.dir / "data"
        pwfile = self.dir / "superuser.pw"
        pwfile.write_text(self.password + "\n")
        if os.geteuid() == 0:
            shutil.chown(pwfile, "postgres", "postgres")
        self._run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--no-locale",
            ]
        )
        pwfile.unlink()
        self.port = free_port()
        options = [
            f"-p {self.port}",
            f"-k {self.dir}",
            "-c listen_addresses=127.0.0.1",
            "-c max_connections=50",
        ]
        if self.fast:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._run(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(self.dir / "server.log"),
                "-o",
                " ".join(options),
                "-w",
                "-t",
                "60",
                "start",
            ]
        )
        self._started = True
        from psycopg import sql

        # utility statements take no bound parameters: psycopg quotes the literal
        self._admin(
            sql.SQL("create role {} login createdb password {}").format(
                sql.Identifier(ROLE), sql.Literal(self.password)
            )
        )
        return self

    def _admin(self, statement, dbname: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(
            host=str(self.dir), port=self.port, user="postgres", dbname=dbname, autocommit=True
        ) as con:
            con.execute(statement)

    def url(self, database: str) -> str:
        return f"postgresql://{ROLE}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new empty database owned by the decayrec role; its URL (with the password)."""
        from decayrec.config import check_identifier

        check_identifier(name, "database name")
        self._admin(f'create database "{name}" owner {ROLE}')
        return self.url(name)

    def stop(self) -> None:
        if self._started and self.dir is not None:
            try:
                self._run(
                    [
                        str(postgres_bindir() / "pg_ctl"),
                        "-D",
                        str(self.dir / "data"),
                        "-m",
                        "fast",
                        "-w",
                        "stop",
                    ],
                    timeout=60,
                )
            finally:
                self._started = False
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> LocalPostgres:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _world_traversable(path: Path) -> bool:
    path = path.resolve()
    return all(os.stat(p).st_mode & 0o001 for p in [path, *path.parents])


def _shell_quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\\''") + "'"
