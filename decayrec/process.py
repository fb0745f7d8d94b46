"""The CLI's process hygiene: a temporary Prefect server that never outlives the CLI, and
SIGTERM handled like Ctrl-C (the run unwinds, the server is stopped).

Without PREFECT_API_URL Prefect starts a temporary server itself
(prefect.server.api.server.SubprocessASGIServer: uvicorn in a child process, stopped by
an atexit hook). atexit does not run on SIGTERM (Python's default action) nor on SIGKILL,
so that server was left running as an orphan. The CLI now starts the same server itself,
as a child that gets SIGTERM from the kernel when the CLI dies however it dies
(PR_SET_PDEATHSIG on Linux), and stops it when the command ends."""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

_TEMPORARY_API_URL: str | None = None
_PR_SET_PDEATHSIG = 1


def temporary_api_url() -> str | None:
    """The API URL of the temporary server this process started, if any."""
    return _TEMPORARY_API_URL


def _die_with_parent(parent: int) -> Any:
    def set_pdeathsig() -> None:  # runs in the child between fork and exec
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return set_pdeathsig if sys.platform.startswith("linux") else None


def _free_port() -> int:
    for _ in range(50):
        port = random.randrange(8000, 9000)
        with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 8000-8999 for the temporary Prefect server")


def _start_server(port: int) -> subprocess.Popen[bytes]:
    """The command and environment of prefect's SubprocessASGIServer."""
    import prefect
    from prefect.settings import get_current_settings

    env = {
        **os.environ,
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
        **get_current_settings().to_environment_variables(exclude_unset=True),
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--app-dir",
            str(prefect.__module_path__.parent),
            "--factory",
            "prefect.server.api.server:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "error",
            "--lifespan",
            "on",
        ],
        env=env,
        preexec_fn=_die_with_parent(os.getpid()),  # noqa: PLW1509 - no threads yet
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def prefect_api(enabled: bool = True) -> Iterator[str | None]:
    """The Prefect API for this command: PREFECT_API_URL when set, else a temporary server
    started here and stopped (terminated, then killed) when the block ends."""
    global _TEMPORARY_API_URL
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        get_current_settings,
        temporary_settings,
    )

    if not enabled or get_current_settings().api.url:
        yield get_current_settings().api.url
        return
    import httpx

    timeout = max(float(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()), 60.0)
    port = _free_port()
    proc = _start_server(port)
    try:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{port}/api"
        while True:
            if proc.poll() is not None:
                if proc.returncode != 3:  # 3: the port was taken meanwhile
                    raise RuntimeError(f"the temporary Prefect server exited ({proc.returncode})")
                port = _free_port()
                proc = _start_server(port)
                url = f"http://127.0.0.1:{port}/api"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the temporary Prefect server on {url} did not start")
            time.sleep(0.2)
        print(f"temporary Prefect server on {url} (pid {proc.pid})", file=sys.stderr, flush=True)
        _TEMPORARY_API_URL = url
        with temporary_settings({PREFECT_API_URL: url}):
            yield url
    finally:
        _drain_prefect_workers()
        _TEMPORARY_API_URL = None
        _stop(proc)


def _drain_prefect_workers(timeout: float = 10.0) -> None:
    """Send the logs and events still queued to the server before it stops (else Prefect
    retries them against a closed port at interpreter exit)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):
            worker.drain_all(timeout=timeout)


class Terminated(SystemExit):
    """SIGTERM received: unwind like Ctrl-C, with exit status 128 + 15."""


@contextlib.contextmanager
def exit_on_sigterm() -> Iterator[None]:
    """SIGTERM raises Terminated in the main thread, so finally blocks and context
    managers (the temporary server's shutdown among them) run."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
