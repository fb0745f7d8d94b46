#!/usr/bin/env bash
# Sets up decayrec from scratch: a virtual environment in .venv with the project and its
# test tools installed. Idempotent: a second call only checks what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

# PostgreSQL server binaries (initdb, pg_ctl): the warehouse tests start a throwaway server
# (decayrec_tools/pg_local.py). Installed from Debian's packages only when missing.
if ! command -v pg_ctl >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    else
        echo "setup.sh: PostgreSQL is missing; install it (apt-get install -y postgresql)" >&2
    fi
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch first and pinned: an unpinned install would pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[dev]"
