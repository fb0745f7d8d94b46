import dataclasses
from datetime import datetime
from typing import Any

from prefect import get_run_logger, task

from decayrec.config import DecayrecConfig
from decayrec.evaluation.champion import KEEP, POPULARITY, PROMOTE, Registry, gate
from decayrec.lake.matrix import Snapshot
from decayrec.models.files import ModelFileError
from decayrec.scoring.lists import TrainedLists, popularity_lists, score_saved_model


@task(name="gate")
def champion_gate(
    config: DecayrecConfig,
    as_of_time: datetime,
    snapshot: Snapshot,
    trained: TrainedLists,
    metrics: dict[str, Any],
    run_id: str,
) -> tuple[TrainedLists, dict[str, Any]]:
    """Register tonight's model; return the lists to publish (the challenger's, or the
    champion's re-scored on tonight's snapshot) and the gate decision."""
    registry = Registry(config.data_dir)
    champion = registry.champion()
    # the run's model file moves into the registry: each model is stored once
    challenger = registry.register(
        run_id, trained.model_path, config, snapshot.snapshot_id, metrics, move=True
    )
    trained = dataclasses.replace(trained, model_path=str(challenger.model_path))
    decision = gate(config, as_of_time, metrics, champion)
    decision["challenger_id"] = challenger.model_id
    logger = get_run_logger()
    for warning in registry.warnings:
        logger.warning("gate: %s", warning)
        decision["champion_set_aside"] = warning
    if "warning" in decision:
        logger.warning("gate: %s (%s)", decision["decision"], decision["warning"])
    else:
        logger.info("gate: %s (%s)", decision["decision"], decision["reason"])
    if decision["decision"] == KEEP and champion is not None:
        try:
            return score_saved_model(config, champion, snapshot, run_id), decision
        except ModelFileError as exc:
            # a champion whose model file cannot be loaded (corrupted, or a pickle that
            # would run code) is set aside like a broken champion.json: the challenger is
            # judged against popularity alone
            warning = registry.set_aside_champion(str(exc))
            logger.warning("gate: %s", warning)
            decision = {
                **gate(config, as_of_time, metrics, None),
                "challenger_id": challenger.model_id,
                "champion_set_aside": warning,
            }
            logger.warning("gate: %s (%s)", decision["decision"], decision["reason"])
    if decision["decision"] == POPULARITY:
        return popularity_lists(config, snapshot, run_id), decision
    return trained, decision


@task(name="promote")
def promote(config: DecayrecConfig, decision: dict[str, Any]) -> None:
    """After a successful export: point the champion at the challenger it promoted."""
    if decision["decision"] == PROMOTE:
        Registry(config.data_dir).promote(decision["challenger_id"], decision["reason"])
