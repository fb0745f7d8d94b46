from prefect import task

from decayrec.config import DecayrecConfig
from decayrec.features import Snapshot
from decayrec.train import TrainedLists, train_and_score


@task(name="train")
def train(config: DecayrecConfig, snapshot: Snapshot, run_id: str) -> TrainedLists:
    """Fit the model on the snapshot (CUDA when available) and score every user."""
    return train_and_score(config, snapshot, run_id)
