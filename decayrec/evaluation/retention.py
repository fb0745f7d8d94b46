"""What stays in the data directory: the files of the last `retention.keep_runs` runs and
of the runs something live needs; older runs' files are deleted after a successful publish.

A run's files: ``runs/<run_id>/`` (lists, plots), ``models/<run_id>/`` (its model, moved
there by the gate: stored once), ``validation/<run_id>/``. Snapshots
(``snapshots/<snapshot_id>/``) are kept while a kept run or the champion uses them.

Kept, always:
- the newest `keep_runs` runs the warehouse recorded (any status) and the run in progress;
- the champion's model, its run and its snapshot (the gate re-scores it);
- the run whose lists are live (recommendations_latest) and its snapshot (reexport);
- anything not recorded in the warehouse (another tool's, a run recorded elsewhere), and
  anything written since the current run started (a concurrent build).

Deleted: the files of every other recorded run, snapshots no kept run uses, incomplete
snapshot directories older than a day, and training checkpoints older than the current
run (a finished training deletes its own; what is left belongs to a killed one).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from decayrec.evaluation.champion import CHAMPION
from decayrec.lake.matrix import SNAPSHOT_META, SNAPSHOTS

log = logging.getLogger(__name__)

RUN_DIRS = ("runs", "models", "validation")
CHECKPOINTS = "checkpoints"
INCOMPLETE_GRACE_SECONDS = 24 * 3600


@dataclass(frozen=True)
class RunFiles:
    """A recorded run, as retention sees it (a row of sql/ops/run_files.sql)."""

    run_id: str
    snapshot_id: str | None = None
    live: bool = False  # its lists are the published ones


@dataclass
class Pruned:
    """What one pruning deleted, by kind, and the bytes it freed."""

    runs: list[str] = field(default_factory=list)
    snapshots: list[str] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)
    bytes_freed: int = 0
    kept_runs: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"pruned {len(self.runs)} runs, {len(self.snapshots)} snapshots and "
            f"{len(self.checkpoints)} checkpoints ({self.bytes_freed / 1e6:.1f} MB); kept the "
            f"files of runs {', '.join(r[:8] for r in self.kept_runs)}"
        )


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def champion_model(data_dir: str | Path) -> tuple[str | None, str | None]:
    """(model id, snapshot id) of the champion, read without side effects; raises
    ValueError when the pointer or its meta.json cannot be read (then nothing is pruned:
    the next gate sets a broken pointer aside)."""
    models = Path(data_dir) / "models"
    pointer = models / CHAMPION
    if not pointer.exists():
        return None, None
    try:
        model_id = json.loads(pointer.read_text())["model_id"]
        meta = json.loads((models / model_id / "meta.json").read_text())
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"the champion pointer {pointer} cannot be read: {exc}") from exc
    return str(model_id), meta.get("snapshot_id")


def kept_runs(
    runs: Sequence[RunFiles], keep_runs: int, current_run: str, champion_id: str | None
) -> list[RunFiles]:
    """The runs whose files stay: the newest `keep_runs` (runs: newest first), the
    current run, the champion's and the live lists' run."""
    protected = {current_run, champion_id}
    return [r for i, r in enumerate(runs) if i < keep_runs or r.run_id in protected or r.live]


def prune(
    data_dir: str | Path,
    runs: Sequence[RunFiles],
    keep_runs: int,
    current_run: str,
    current_snapshot: str | None,
    started: float | None = None,
) -> Pruned:
    """Delete what the policy above does not keep. `runs`: every run the warehouse
    recorded, newest first; `started`: when the current run started (epoch seconds;
    files written since are kept); default now."""
    data_dir = Path(data_dir)
    started = time.time() if started is None else started
    champion_id, champion_snapshot = champion_model(data_dir)
    kept = kept_runs(runs, keep_runs, current_run, champion_id)
    kept_ids = {r.run_id for r in kept} | {current_run}
    pruned = Pruned(kept_runs=[r.run_id for r in kept])
    for run in runs:
        if run.run_id in kept_ids or not _plain_name(run.run_id):
            continue
        removed = _remove(data_dir / kind / run.run_id for kind in RUN_DIRS)
        if removed:
            pruned.runs.append(run.run_id)
            pruned.bytes_freed += removed
    snapshots_kept = {r.snapshot_id for r in kept} | {current_snapshot, champion_snapshot}
    for directory in _children(data_dir / SNAPSHOTS):
        if directory.name in snapshots_kept or _newer(directory, started):
            continue
        complete = (directory / SNAPSHOT_META).exists()
        if complete or directory.stat().st_mtime < started - INCOMPLETE_GRACE_SECONDS:
            pruned.bytes_freed += _remove([directory])
            pruned.snapshots.append(directory.name)
    for checkpoint in _children(data_dir / CHECKPOINTS, dirs=False):
        if not _newer(checkpoint, started):
            pruned.bytes_freed += _remove([checkpoint])
            pruned.checkpoints.append(checkpoint.name)
    return pruned


def _plain_name(name: str) -> bool:
    return bool(name) and Path(name).name == name and name not in (".", "..")


def _children(directory: Path, dirs: bool = True) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_dir() == dirs)


def _newer(path: Path, started: float) -> bool:
    """Written since `started`: the directory itself or anything in it."""
    paths = [path, *path.rglob("*")] if path.is_dir() else [path]
    return any(p.stat().st_mtime >= started for p in paths)


def _remove(paths: Iterable[Path]) -> int:
    freed = 0
    for path in paths:
        if not path.exists():
            continue
        size = _size(path)
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
        freed += size
    return freed
