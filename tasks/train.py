from prefect import get_run_logger, task

from decayrec.config import DecayrecConfig
from decayrec.lake.matrix import Snapshot
from decayrec.scoring.lists import TrainedLists, train_and_score
from tasks import TIMEOUTS
from tasks.ops import maybe_inject_train_fault, training_slot


@task(name="train", timeout_seconds=TIMEOUTS["train"])
def train(config: DecayrecConfig, snapshot: Snapshot, run_id: str) -> TrainedLists:
    """Fit the model on the snapshot (CUDA when available) and score every user."""
    logger = get_run_logger()
    logger.info(
        "training %s on %d users x %d items (%d entries)",
        config.model.name,
        snapshot.n_users,
        snapshot.n_items,
        snapshot.n_nonzero,
    )
    with training_slot(config):
        maybe_inject_train_fault(config, snapshot)
        trained = train_and_score(config, snapshot, run_id)
    logger.info(
        "trained in %.1f s, scored %d users in %.1f s",
        trained.train_seconds,
        trained.n_users,
        trained.score_seconds,
    )
    return trained
