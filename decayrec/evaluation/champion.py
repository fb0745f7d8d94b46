"""Model registry and the champion/challenger gate.

Every trained model is kept under ``<data_dir>/models/<model_id>/`` (the run's own
``runs/<run_id>/model.pt`` is moved there: one copy of each model): ``model.pt`` and
``meta.json`` (model name, the whole configuration, the data snapshot id, the backtest
metrics, the code version — git commit when the code is a git checkout, else the
package version — and the creation time). ``<data_dir>/models/champion.json`` points
at the model whose lists are published; ``champion_history.jsonl`` keeps every change.

The gate: the challenger (tonight's model) is published only if, on the same backtest
(the first configured protocol, the same split of the same lake, the same as-of time)
it is not worse than the champion by more than ``model.gate_tolerance`` in
``model.gate_metric``. The champion's configuration is backtested again on tonight's
data (its saved model was fitted on data that overlaps the backtest's test window, so
the saved weights cannot be scored on it); when its model and decay settings equal the
challenger's, the backtest would be identical and is not run twice. Otherwise the run
publishes the champion's saved model, re-scored on tonight's snapshot.

The floor: a challenger whose backtest is below decayed popularity's on the same backtest
is never published. The champion is published instead if it clears the floor, else the
popularity lists themselves; the decision carries a `warning` the run records and shows.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from decayrec.config import DecayrecConfig
from decayrec.models.record import ModelRecord

log = logging.getLogger(__name__)

CHAMPION = "champion.json"
HISTORY = "champion_history.jsonl"
PROMOTE = "promote"
KEEP = "keep_champion"
POPULARITY = "publish_popularity"  # below the popularity floor, and no usable champion


@cache
def code_version() -> str:
    """The git commit of the code (with '-dirty' when it has uncommitted changes), else
    the installed package version."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
        if commit.returncode == 0 and commit.stdout.strip():
            dirty = subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no", "--", "decayrec"],
                cwd=root,
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
            return "git:" + commit.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    from importlib.metadata import PackageNotFoundError, version

    try:
        return "decayrec " + version("decayrec")
    except PackageNotFoundError:
        return "unknown"


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)  # atomic: a reader sees the old or the new file


class Registry:
    def __init__(self, data_dir: str | Path) -> None:
        self.root = Path(data_dir) / "models"
        self.warnings: list[str] = []  # champion pointers set aside, for the run's log

    def register(
        self,
        model_id: str,
        model_path: str | Path,
        config: DecayrecConfig,
        snapshot_id: str | None,
        metrics: dict[str, Any] | None,
        move: bool = False,
    ) -> ModelRecord:
        """Put a saved model into the registry with its metadata: copied, or moved when
        `move` (a run's own runs/<run_id>/model.pt: each model is stored once, here)."""
        directory = self.root / model_id
        directory.mkdir(parents=True, exist_ok=True)
        if move:
            shutil.move(model_path, directory / "model.pt")
        else:
            shutil.copyfile(model_path, directory / "model.pt")
        meta = {
            "model_id": model_id,
            "name": str(config.model.name),
            "config": config.model_dump(mode="json"),
            "snapshot_id": snapshot_id,
            "metrics": metrics,
            "code_version": code_version(),
            "created_at": datetime.now(UTC).isoformat(),
        }
        _write_json(directory / "meta.json", meta)
        return ModelRecord(model_id, directory, meta)

    def get(self, model_id: str) -> ModelRecord:
        directory = self.root / model_id
        meta = json.loads((directory / "meta.json").read_text())
        return ModelRecord(model_id, directory, meta)

    def champion(self) -> ModelRecord | None:
        """The published model, or None. A champion.json that cannot be read (garbage,
        empty, no model_id) or that points at a model whose meta.json is missing or
        unreadable is set aside as champion.json.corrupt-<UTC time> with a warning (also
        kept in `self.warnings`): tonight's challenger is then judged against popularity
        only, instead of every night failing on the same file."""
        pointer = self.root / CHAMPION
        if not pointer.exists():
            return None
        try:
            entry = json.loads(pointer.read_text())
            model_id = entry["model_id"] if isinstance(entry, dict) else None
            if (
                not isinstance(model_id, str)
                or model_id in ("", ".", "..")
                or (Path(model_id).name != model_id)
            ):
                raise ValueError(f"no model id in it: {str(entry)[:100]!r}")
        except (OSError, UnicodeDecodeError, ValueError, KeyError) as exc:
            return self._set_aside(pointer, f"it cannot be read ({type(exc).__name__}: {exc})")
        meta_path = self.root / model_id / "meta.json"
        try:
            record = self.get(model_id)
            if not isinstance(record.meta, dict) or not {"name", "config"} <= set(record.meta):
                raise ValueError("no model name and config in it")
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            why = f"its model's {meta_path} cannot be read ({type(exc).__name__}: {exc})"
            return self._set_aside(pointer, why)
        return record

    def set_aside_champion(self, why: str) -> str:
        """Set the champion pointer aside (its model cannot be used: `why`); the warning."""
        self._set_aside(self.root / CHAMPION, why)
        return self.warnings[-1]

    def _set_aside(self, pointer: Path, why: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        aside = pointer.with_name(f"{pointer.name}.corrupt-{stamp}")
        os.replace(pointer, aside)
        message = (
            f"champion pointer {pointer} was set aside as {aside}: {why}. "
            "Tonight's model is judged against decayed popularity only and becomes the "
            "champion if it clears that floor; promote another model to restore one."
        )
        message = " ".join(message.split())
        log.warning(message)
        self.warnings.append(message)
        return None

    def promote(self, model_id: str, reason: str) -> None:
        self.get(model_id)  # it must exist
        entry = {
            "model_id": model_id,
            "promoted_at": datetime.now(UTC).isoformat(),
            "reason": reason,
        }
        _write_json(self.root / CHAMPION, entry)
        with open(self.root / HISTORY, "a") as history:
            history.write(json.dumps(entry) + "\n")


def _same_model(a: DecayrecConfig, b: DecayrecConfig) -> bool:
    return a.model == b.model and a.decay == b.decay


def gate(
    config: DecayrecConfig,
    as_of_time: datetime,
    challenger_metrics: dict[str, Any],
    champion: ModelRecord | None,
) -> dict[str, Any]:
    """Decide whether the challenger (trained with `config`, backtested into
    `challenger_metrics` = evaluate_all's result) replaces `champion`."""
    protocol = config.evaluation.protocols[0]
    metric = config.model.gate_metric
    tolerance = config.model.gate_tolerance
    decision: dict[str, Any] = {
        "protocol": protocol,
        "metric": metric,
        "tolerance": tolerance,
        "champion_id": champion.model_id if champion else None,
    }
    backtest_result = challenger_metrics.get(protocol, {})
    challenger_value = backtest_result.get("model", {}).get(metric)
    popularity_value = backtest_result.get("popularity", {}).get(metric)
    decision["challenger"] = challenger_value
    decision["popularity"] = popularity_value
    below_floor = (
        challenger_value is not None
        and popularity_value is not None
        and challenger_value < popularity_value
    )
    if below_floor:
        return _floor(config, as_of_time, decision, champion, challenger_value, popularity_value)
    if champion is None:
        return {**decision, "decision": PROMOTE, "reason": "no champion yet"}
    if challenger_value is None:
        return {**decision, "decision": PROMOTE, "reason": f"no {protocol} {metric} to compare"}
    try:
        champion_value = _champion_value(config, as_of_time, champion, challenger_value, decision)
    except Exception as exc:  # a champion that cannot be evaluated any more is replaced
        return {**decision, "decision": PROMOTE, "reason": f"champion unusable: {exc}"[:500]}
    decision["champion"] = champion_value
    if champion_value is None:
        return {**decision, "decision": PROMOTE, "reason": "champion has no backtest value"}
    delta = challenger_value - champion_value
    decision["delta"] = delta
    if delta >= -tolerance:
        reason = (
            f"challenger {metric} {challenger_value:.4f} vs champion {champion_value:.4f}: "
            f"not worse by more than {tolerance:g}"
        )
        return {**decision, "decision": PROMOTE, "reason": reason}
    reason = (
        f"challenger {metric} {challenger_value:.4f} is worse than champion "
        f"{champion_value:.4f} by {-delta:.4f} > {tolerance:g}: champion kept"
    )
    return {**decision, "decision": KEEP, "reason": reason}


def _champion_value(
    config: DecayrecConfig,
    as_of_time: datetime,
    champion: ModelRecord,
    challenger_value: float | None,
    decision: dict[str, Any],
) -> float | None:
    """The champion's settings backtested on tonight's data (the same protocol)."""
    from decayrec.evaluation.backtest import backtest

    champion_config = champion.config(config)
    if _same_model(champion_config, config):
        decision["champion_backtest"] = "same configuration: same backtest"
        return challenger_value
    result = backtest(champion_config, as_of_time, decision["protocol"])
    return result.get("model", {}).get(decision["metric"])


def _floor(
    config: DecayrecConfig,
    as_of_time: datetime,
    decision: dict[str, Any],
    champion: ModelRecord | None,
    challenger_value: float,
    popularity_value: float,
) -> dict[str, Any]:
    """The challenger is below decayed popularity: the champion if it clears the floor,
    else the popularity lists."""
    metric = decision["metric"]
    below = (
        f"challenger {metric} {challenger_value:.4f} is below decayed popularity's "
        f"{popularity_value:.4f} on the same backtest"
    )
    champion_value = None
    if champion is not None:
        try:
            champion_value = _champion_value(
                config, as_of_time, champion, challenger_value, decision
            )
        except Exception as exc:
            decision["champion_error"] = str(exc)[:500]
        decision["champion"] = champion_value
    if champion_value is not None and champion_value >= popularity_value:
        reason = f"{below}: the champion ({champion_value:.4f}) is published instead"
        return {**decision, "decision": KEEP, "reason": reason, "warning": reason}
    why = "no champion" if champion is None else "the champion does not clear it either"
    reason = f"{below} and {why}: the popularity lists are published instead"
    return {**decision, "decision": POPULARITY, "reason": reason, "warning": reason}
