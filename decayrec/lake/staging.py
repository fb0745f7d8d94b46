"""What ingestion hands to validation: a staged batch (decayrec.lake.ingest stages it,
decayrec.lake.validate judges it), and the SHA-256 a file is known by (a loaded file
is skipped by it; snapshot and catalogue files are checked against it)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path


def sha256_of(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class StagedBatch:
    """A source file read into `staged_rows` (all fields as text), not yet in `events`."""

    batch_id: str
    source: str
    file: str
    sha256: str
    rows_read: int
    default_event_type: str | None
    timestamp_unit: str
    # Parquet batches stage no `raw` per row: a quarantined row's raw (JSON of its columns)
    # is read back from the file by its row number (decayrec.lake.validate.fill_deferred_raw).
    raw_from_file: bool = False
